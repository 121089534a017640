/*
 * refresh.c
 *		provider_refresh_tokens: replace an active connection's credentials.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "command.h"
#include "crypto.h"
#include "catalog/pg_type.h"
#include "plans.h"
#include "clock.h"

typedef struct RefreshArgs
{
	const pg_uuid_t *connection_id;
	bytea	   *credentials;
	Datum		expires_at;
	bool		expires_at_null;
	const char *credential_type;
} RefreshArgs;

/* The refresh UPDATE's parameters, by position. */
enum
{
	Anum_pc_refresh_id = 1,
	Anum_pc_refresh_credentials,
	Anum_pc_refresh_expires_at,
	Anum_pc_refresh_credential_type,
	Anum_pc_refresh_now,
	Natts_pc_refresh = Anum_pc_refresh_now
};

/*
 * Rechecks status on the newest row version after a lock wait. From 1.3 on
 * a refresh also ends the row's claim lease (provider_claim_expiring).
 */
#define PC_REFRESH_SQL(lease) \
	"UPDATE %1$s.provider_connections SET encrypted_credentials = $2," \
	" credentials_expires_at = $3," \
	" credential_type = COALESCE($4, credential_type), updated_at = $5" lease \
	" WHERE id OPERATOR(pg_catalog.=) $1" \
	" AND status OPERATOR(pg_catalog.=) 'active'::%1$s.provider_connection_status"

static PcStatement pc_refresh_1_2 = {
	PC_REFRESH_SQL(""),
	Natts_pc_refresh, {UUIDOID, BYTEAOID, TIMESTAMPTZOID, TEXTOID, TIMESTAMPTZOID}
};

static PcStatement pc_refresh = {
	PC_REFRESH_SQL(", lease_until = NULL"),
	Natts_pc_refresh, {UUIDOID, BYTEAOID, TIMESTAMPTZOID, TEXTOID, TIMESTAMPTZOID}
};

/* Record not_active: the user must connect again. */
static void
FailNotActive(PcCall *call)
{
	pc_call_fail(call, PC_RESULT_NOT_ACTIVE, NULL);
	call->event.needs_user_action = true;
}

/*
 * Inside the guarded subtransaction. The UPDATE only touches an active row;
 * after waiting for a lock it re-checks the newest version, so a refresh
 * that loses to a concurrent disconnect updates nothing.
 */
static void
StoreCredentials(PcCall *call, void *arg)
{
	RefreshArgs *a = (RefreshArgs *) arg;
	Datum		values[Natts_pc_refresh];
	char		nulls[Natts_pc_refresh];
	PcConnectionRow row;

	memset(nulls, ' ', sizeof(nulls));
	values[Anum_pc_refresh_id - 1] = UUIDPGetDatum(a->connection_id);
	values[Anum_pc_refresh_credentials - 1] = PointerGetDatum(pc_seal(a->credentials));
	values[Anum_pc_refresh_expires_at - 1] = a->expires_at;
	nulls[Anum_pc_refresh_expires_at - 1] = a->expires_at_null ? 'n' : ' ';
	values[Anum_pc_refresh_credential_type - 1] =
		a->credential_type ? CStringGetTextDatum(a->credential_type) : (Datum) 0;
	nulls[Anum_pc_refresh_credential_type - 1] = a->credential_type ? ' ' : 'n';
	values[Anum_pc_refresh_now - 1] = TimestampTzGetDatum(pc_now());

	if (SPI_execute_plan(pc_statement_plan(pc_schema_level() >= PC_SCHEMA_1_3 ? &pc_refresh : &pc_refresh_1_2),
						 values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update provider connection");
	if (SPI_processed > 0)
		return;
	if (pc_find_connection(a->connection_id, &row))
		FailNotActive(call);
	else
		pc_call_fail(call, PC_RESULT_CONNECTION_NOT_FOUND, NULL);
}

/* SQL function: provider_refresh_tokens(connection_id, credentials, expires_at, credential_type) */
PG_FUNCTION_INFO_V1(provider_refresh_tokens);

/*
 * Store new credentials for an active connection, with their expiry
 * (NULL: they do not expire) and, when given, a new credential type.
 * A connection that is not active fails with needs_user_action = true:
 * the user must connect again.
 */
Datum
provider_refresh_tokens(PG_FUNCTION_ARGS)
{
	PcCall		call;
	RefreshArgs a;
	PcConnectionRow row;
	bool		found = false;

	memset(&a, 0, sizeof(a));
	a.connection_id = pc_arg_uuid(fcinfo, 0);
	a.expires_at = PG_GETARG_DATUM(2);
	a.expires_at_null = PG_ARGISNULL(2);
	a.credential_type = pc_arg_text(fcinfo, 3);

	pc_call_begin(&call, fcinfo, PC_CMD_REFRESH);
	if (a.connection_id != NULL)
		found = pc_find_connection(a.connection_id, &row);

	pc_call_describe(&call, found ? &row : NULL);
	call.event.connection_id = a.connection_id;
	call.result_connection_id = a.connection_id;
	pc_call_attempted(&call);

	if (a.connection_id == NULL)
		pc_call_fail_null(&call, "connection_id");
	else if (!found)
		pc_call_fail(&call, PC_RESULT_CONNECTION_NOT_FOUND, NULL);
	else if (pc_check_credentials(&call, fcinfo, 1) &&
			 (a.credential_type == NULL ||
			  pc_check_credential_type(&call, a.credential_type)) &&
			 pc_check_expires_at(&call, fcinfo, 2, false))
	{
		/* Refreshing keeps the status: not a transition, but only while active. */
		if (row.status != PC_STATUS_ACTIVE)
			FailNotActive(&call);
		else if (pc_check_key(&call))
		{
			a.credentials = PG_GETARG_BYTEA_PP(1);
			pc_guarded_write(&call, StoreCredentials, &a);
		}
	}

	return pc_call_finish(&call, fcinfo);
}
