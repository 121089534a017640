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

/*
 * Disconnect connection $1 of user $3 at $2; from 1.4 on the row names the
 * call ($4), as in lifecycle.c's marks.
 */
#define PC_DISCONNECT_SQL(call) \
	"UPDATE %1$s.provider_connections SET status = 'disconnected'," \
	" encrypted_credentials = NULL, credential_type = NULL," \
	" credentials_expires_at = NULL, updated_at = $2" call \
	" WHERE id OPERATOR(pg_catalog.=) $1 AND user_id OPERATOR(pg_catalog.=) $3"

static PcStatement pc_disconnect_1_3 = {
	PC_DISCONNECT_SQL(""), 3, {UUIDOID, TIMESTAMPTZOID, UUIDOID}
};

static PcStatement pc_disconnect = {
	PC_DISCONNECT_SQL(", last_call_id = $4"), 4, {UUIDOID, TIMESTAMPTZOID, UUIDOID, UUIDOID}
};

/* Inside the guarded subtransaction: waits for the row lock if held. arg: the row read. */
static void
MarkDisconnected(PcCall *call, void *arg)
{
	PcConnectionRow *row = (PcConnectionRow *) arg;
	Datum		values[4];

	values[0] = UUIDPGetDatum(call->result_connection_id);
	values[1] = TimestampTzGetDatum(pc_now());
	values[2] = UUIDPGetDatum(&row->user_id);
	values[3] = UUIDPGetDatum(&call->call_id);
	if (SPI_execute_plan(pc_statement_plan(pc_schema_level() >= PC_SCHEMA_1_4 ? &pc_disconnect : &pc_disconnect_1_3),
						 values, NULL, false, 0) != SPI_OK_UPDATE)
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
	bool		others = false;

	pc_call_begin(&call, fcinfo, PC_CMD_DISCONNECT);
	if (connection_id != NULL && user_id != NULL)
		found = pc_find_connection(connection_id, user_id, &row);
	/* Another user's (by id alone, on this failure path only), or none. */
	if (connection_id != NULL && !found)
		others = pc_find_connection(connection_id, NULL, &row);

	pc_call_describe(&call, found || others ? &row : NULL);
	/* The caller's user, who may not be the owner (not_owned_by_user). */
	call.event.user_id = user_id;
	call.event.connection_id = connection_id;
	call.result_connection_id = connection_id;
	pc_call_attempted(&call);

	if (!pc_check_user(&call, user_id))
		;						/* its failure is recorded */
	else if (connection_id == NULL)
		pc_call_fail_null(&call, "connection_id");
	else if (others)
		pc_call_fail(&call, PC_RESULT_NOT_OWNED_BY_USER, NULL);
	else if (!found)
		pc_call_fail(&call, PC_RESULT_CONNECTION_NOT_FOUND, NULL);
	else if (!pc_transition_allowed(row.status, PC_STATUS_DISCONNECTED))
		pc_call_fail_transition(&call, row.status, PC_STATUS_DISCONNECTED);
	else
		pc_guarded_write(&call, MarkDisconnected, &row);

	return pc_call_finish(&call, fcinfo);
}
