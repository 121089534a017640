/*
 * disconnect.c
 *		provider_disconnect: end a connection and drop its credentials.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "command.h"
#include "catalog/pg_type.h"
#include "plans.h"
#include "clock.h"

static PcStatement pc_disconnect = {
	"UPDATE %1$s.provider_connections SET status = 'disconnected',"
	" encrypted_credentials = NULL, credential_type = NULL,"
	" credentials_expires_at = NULL, updated_at = $2"
	" WHERE id OPERATOR(pg_catalog.=) $1",
	2, {UUIDOID, TIMESTAMPTZOID}
};

/* Inside the guarded subtransaction: waits for the row lock if held. */
static void
MarkDisconnected(PcCall *call, void *arg)
{
	Datum		values[2];

	values[0] = UUIDPGetDatum((pg_uuid_t *) arg);
	values[1] = TimestampTzGetDatum(pc_now());
	if (SPI_execute_plan(pc_statement_plan(&pc_disconnect), values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update provider connection");
	/* Deleted by someone else while we waited. */
	if (SPI_processed == 0)
		pc_call_fail(call, PC_RESULT_CONNECTION_NOT_FOUND, NULL);
}

/* SQL function: provider_disconnect(user_id, connection_id) */
PG_FUNCTION_INFO_V1(provider_disconnect);

/*
 * Disconnect connection_id on behalf of user_id, who must own it: status
 * disconnected, credentials, their type and expiry cleared, the row kept
 * for the audit trail. Disconnecting twice succeeds twice.
 */
Datum
provider_disconnect(PG_FUNCTION_ARGS)
{
	PcCall		call;
	pg_uuid_t  *user_id = pc_arg_uuid(fcinfo, 0);
	pg_uuid_t  *connection_id = pc_arg_uuid(fcinfo, 1);
	PcConnectionRow row;
	bool		found = false;

	pc_call_begin(&call, fcinfo, PC_CMD_DISCONNECT);
	if (connection_id != NULL)
		found = pc_find_connection(connection_id, &row);

	pc_call_describe(&call, found ? &row : NULL);
	/* The caller's user, who may not be the owner (not_owned_by_user). */
	call.event.user_id = user_id;
	call.event.connection_id = connection_id;
	call.result_connection_id = connection_id;
	pc_call_attempted(&call);

	if (user_id == NULL)
		pc_call_fail_null(&call, "user_id");
	else if (connection_id == NULL)
		pc_call_fail_null(&call, "connection_id");
	else if (!found)
		pc_call_fail(&call, PC_RESULT_CONNECTION_NOT_FOUND, NULL);
	else if (memcmp(&row.user_id, user_id, sizeof(pg_uuid_t)) != 0)
		pc_call_fail(&call, PC_RESULT_NOT_OWNED_BY_USER, NULL);
	else if (!pc_transition_allowed(row.status, PC_STATUS_DISCONNECTED))
		pc_call_fail_transition(&call, row.status, PC_STATUS_DISCONNECTED);
	else
		pc_guarded_write(&call, MarkDisconnected, connection_id);

	return pc_call_finish(&call, fcinfo);
}
