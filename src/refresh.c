/*
 * refresh.c
 *		provider_refresh_tokens: replace an active connection's credentials.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "command.h"
#include "crypto.h"
#include "plans.h"
#include "settings.h"

typedef struct RefreshArgs
{
	const pg_uuid_t *connection_id;
	bytea	   *credentials;
	Datum		expires_at;
	bool		expires_at_null;
	const char *credential_type;
} RefreshArgs;

static void
FailNotActive(PcCall *call)
{
	pc_call_fail(call, "not_active", "Connection is not active");
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
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	PcConnectionRow row;

	values[0] = UUIDPGetDatum(a->connection_id);
	values[1] = PointerGetDatum(pc_seal(a->credentials));
	values[2] = a->expires_at;
	nulls[2] = a->expires_at_null ? 'n' : ' ';
	values[3] = a->credential_type ? CStringGetTextDatum(a->credential_type) : (Datum) 0;
	nulls[3] = a->credential_type ? ' ' : 'n';
	values[4] = TimestampTzGetDatum(pc_now());

	if (SPI_execute_plan(pc_plan(PC_PLAN_REFRESH), values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update provider connection");
	if (SPI_processed > 0)
		return;
	if (pc_find_connection(a->connection_id, &row))
		FailNotActive(call);
	else
		pc_call_fail(call, "connection_not_found", "Connection not found");
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

	call.event.user_id = found ? &row.user_id : NULL;
	call.event.connection_id = a.connection_id;
	call.event.provider_id = found ? &row.provider_id : NULL;
	call.event.provider_slug = found ? row.provider_slug : NULL;
	call.result_connection_id = a.connection_id;
	pc_call_attempted(&call);

	if (a.connection_id == NULL)
		pc_call_fail(&call, "invalid_argument", "connection_id cannot be null");
	else if (!found)
		pc_call_fail(&call, "connection_not_found", "Connection not found");
	else if (pc_check_credentials(&call, fcinfo, 1) &&
			 (a.credential_type == NULL ||
			  pc_check_credential_type(&call, a.credential_type)) &&
			 pc_check_expires_at(&call, fcinfo, 2))
	{
		if (strcmp(row.status, "active") != 0)
			FailNotActive(&call);
		else if (pc_check_key(&call))
		{
			a.credentials = PG_GETARG_BYTEA_PP(1);
			pc_guarded_write(&call, StoreCredentials, &a);
		}
	}

	return pc_call_finish(&call, fcinfo);
}
