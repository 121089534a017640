/*
 * connect.c
 *		provider_connect: create an active connection holding sealed
 *		credentials, or, given a connection id (1.3 on), make that
 *		connection active: complete a pending one, or re-authenticate an
 *		expired, revoked or failed one.
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
#include "status.h"
#include "crypto.h"
#include "catalog/pg_type.h"
#include "plans.h"
#include "clock.h"
#include "uuid7.h"

typedef struct ConnectArgs
{
	const pg_uuid_t *user_id;
	const pg_uuid_t *provider_id;
	const char *provider_slug;
	bytea	   *credentials;
	const char *credential_type;
	Datum		expires_at;
	bool		expires_at_null;
	const char *alias;
	pg_uuid_t	new_id;
	const pg_uuid_t *connection_id;	/* the connection to activate, or NULL */
	PcStatus	from;			/* its status when read */
} ConnectArgs;

/* The new row's columns, in the order the INSERT below binds them. */
enum
{
	Anum_pc_insert_id = 1,
	Anum_pc_insert_user_id,
	Anum_pc_insert_provider_id,
	Anum_pc_insert_provider_slug,
	Anum_pc_insert_alias,
	Anum_pc_insert_credential_type,
	Anum_pc_insert_credentials,
	Anum_pc_insert_expires_at,
	Anum_pc_insert_now,
	Natts_pc_insert = Anum_pc_insert_now
};

static PcStatement pc_insert_connection = {
	"INSERT INTO %1$s.provider_connections (id, user_id, provider_id, provider_slug, status,"
	" alias, credential_type, encrypted_credentials, credentials_expires_at,"
	" connected_at, created_at, updated_at)"
	" VALUES ($1, $2, $3, $4, 'active', $5, $6, $7, $8, $9, $9, $9)",
	Natts_pc_insert, {UUIDOID, UUIDOID, UUIDOID, TEXTOID, TEXTOID, TEXTOID, BYTEAOID,
	TIMESTAMPTZOID, TIMESTAMPTZOID}
};

/* Re-activation's parameters, by position. */
enum
{
	Anum_pc_activate_id = 1,
	Anum_pc_activate_credentials,
	Anum_pc_activate_credential_type,
	Anum_pc_activate_expires_at,
	Anum_pc_activate_alias,
	Anum_pc_activate_now,
	Anum_pc_activate_from,
	Anum_pc_activate_user_id,
	Anum_pc_activate_call_id,	/* 1.4 on: the row names the call (lifecycle.c) */
	Natts_pc_activate = Anum_pc_activate_call_id
};

/*
 * Make connection $1 of user $8 active with new credentials, from the status $7 it was
 * read in; connected_at is set on the first activation only. Ends any lease
 * and, from 1.4 on, the count of failed refreshes: the user re-authenticated.
 */
#define PC_ACTIVATE_SQL(reset) \
	"UPDATE %1$s.provider_connections SET status = 'active'," \
	" encrypted_credentials = $2, credential_type = $3, credentials_expires_at = $4," \
	" alias = COALESCE($5, alias), connected_at = COALESCE(connected_at, $6)," \
	" updated_at = $6, lease_until = NULL" reset \
	" WHERE id OPERATOR(pg_catalog.=) $1 AND user_id OPERATOR(pg_catalog.=) $8" \
	" AND status OPERATOR(pg_catalog.=) $7::pg_catalog.text::%1$s.provider_connection_status"

static PcStatement pc_activate_1_3 = {
	PC_ACTIVATE_SQL(""),
	Natts_pc_activate - 1, {UUIDOID, BYTEAOID, TEXTOID, TIMESTAMPTZOID, TEXTOID, TIMESTAMPTZOID, TEXTOID, UUIDOID}
};

static PcStatement pc_activate = {
	PC_ACTIVATE_SQL(", refresh_failures = 0, next_refresh_at = NULL, last_call_id = $9"),
	Natts_pc_activate, {UUIDOID, BYTEAOID, TEXTOID, TIMESTAMPTZOID, TEXTOID, TIMESTAMPTZOID, TEXTOID, UUIDOID, UUIDOID}
};

/*
 * Inside the guarded subtransaction: seal and activate the existing row; if
 * it changed since it was read, the refusal its new status earns.
 */
static void
ActivateConnection(PcCall *call, void *arg)
{
	ConnectArgs *a = (ConnectArgs *) arg;
	Datum		values[Natts_pc_activate];
	char		nulls[Natts_pc_activate];
	PcConnectionRow row;

	memset(nulls, ' ', sizeof(nulls));
	values[Anum_pc_activate_id - 1] = UUIDPGetDatum(a->connection_id);
	values[Anum_pc_activate_credentials - 1] = PointerGetDatum(pc_seal(a->credentials));
	values[Anum_pc_activate_credential_type - 1] = CStringGetTextDatum(a->credential_type);
	values[Anum_pc_activate_expires_at - 1] = a->expires_at;
	nulls[Anum_pc_activate_expires_at - 1] = a->expires_at_null ? 'n' : ' ';
	values[Anum_pc_activate_alias - 1] = a->alias ? CStringGetTextDatum(a->alias) : (Datum) 0;
	nulls[Anum_pc_activate_alias - 1] = a->alias ? ' ' : 'n';
	values[Anum_pc_activate_now - 1] = TimestampTzGetDatum(pc_now());
	values[Anum_pc_activate_from - 1] = CStringGetTextDatum(pc_status_name(a->from));
	values[Anum_pc_activate_user_id - 1] = UUIDPGetDatum(a->user_id);
	values[Anum_pc_activate_call_id - 1] = UUIDPGetDatum(&call->call_id);
	if (SPI_execute_plan(pc_statement_plan(pc_schema_level() >= PC_SCHEMA_1_4 ? &pc_activate : &pc_activate_1_3),
						 values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update provider connection");
	if (SPI_processed > 0)
	{
		call->recovered = pc_status_needs_reauthentication(a->from);
		return;
	}
	if (!pc_find_connection(a->connection_id, a->user_id, &row))
		pc_call_fail(call, PC_RESULT_CONNECTION_NOT_FOUND, NULL);
	else
		pc_call_fail_transition(call, row.status, PC_STATUS_ACTIVE);
}

/*
 * Whether connection a->connection_id may be made active for this call:
 * it exists, the user owns it, it is of the same provider (id and slug:
 * the events would otherwise record a slug the row does not have), and it is not
 * already active or disconnected. Sets a->from.
 */
static bool
CheckActivation(PcCall *call, ConnectArgs *a)
{
	PcConnectionRow row;

	if (!pc_find_owned_connection(call, a->connection_id, a->user_id, &row))
		return false;
	if (memcmp(&row.provider_id, a->provider_id, sizeof(pg_uuid_t)) != 0)
		pc_call_fail(call, PC_RESULT_INVALID_ARGUMENT,
					 "provider_id does not match the connection's provider");
	else if (strcmp(row.provider_slug, a->provider_slug) != 0)
		pc_call_fail(call, PC_RESULT_INVALID_ARGUMENT,
					 "provider_slug does not match the connection's provider");
	else if (!pc_status_change_allowed(row.status, PC_STATUS_ACTIVE))
		pc_call_fail_transition(call, row.status, PC_STATUS_ACTIVE);
	else
	{
		a->from = row.status;
		return true;
	}
	return false;
}

/* Inside the guarded subtransaction: seal and insert. */
static void
InsertConnection(PcCall *call, void *arg)
{
	ConnectArgs *a = (ConnectArgs *) arg;
	TimestampTz now = pc_now();
	Datum		values[Natts_pc_insert];
	char		nulls[Natts_pc_insert];

	pc_uuid7(&a->new_id, now, PC_SEED_CONNECTION | (uint64) call->attempted.audit_id);

	memset(nulls, ' ', sizeof(nulls));
	values[Anum_pc_insert_id - 1] = UUIDPGetDatum(&a->new_id);
	values[Anum_pc_insert_user_id - 1] = UUIDPGetDatum(a->user_id);
	values[Anum_pc_insert_provider_id - 1] = UUIDPGetDatum(a->provider_id);
	values[Anum_pc_insert_provider_slug - 1] = CStringGetTextDatum(a->provider_slug);
	values[Anum_pc_insert_alias - 1] = a->alias ? CStringGetTextDatum(a->alias) : (Datum) 0;
	nulls[Anum_pc_insert_alias - 1] = a->alias ? ' ' : 'n';
	values[Anum_pc_insert_credential_type - 1] = CStringGetTextDatum(a->credential_type);
	values[Anum_pc_insert_credentials - 1] = PointerGetDatum(pc_seal(a->credentials));
	values[Anum_pc_insert_expires_at - 1] = a->expires_at;
	nulls[Anum_pc_insert_expires_at - 1] = a->expires_at_null ? 'n' : ' ';
	values[Anum_pc_insert_now - 1] = TimestampTzGetDatum(now);

	if (SPI_execute_plan(pc_statement_plan(&pc_insert_connection), values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not insert provider connection");

	call->event.connection_id = &a->new_id;
	call->result_connection_id = &a->new_id;
}

/*
 * SQL function: provider_connect(user_id, provider_id, provider_slug,
 * credentials, credential_type, expires_at, alias[, connection_id])
 */
PG_FUNCTION_INFO_V1(provider_connect);

/*
 * Create a connection for user_id to provider_id, active, with the given
 * credentials sealed under the current key; or, with a connection_id (the
 * 8-argument form, 1.3 on), make that connection of the user's active with
 * them, keeping its id and first connected_at (a ProviderConnectionRecovered
 * event follows when it needed re-authentication). Returns (true, id, NULL,
 * NULL), or a failure row; either way the Attempted event and exactly one
 * outcome event are written.
 */
Datum
provider_connect(PG_FUNCTION_ARGS)
{
	PcCall		call;
	ConnectArgs a;

	memset(&a, 0, sizeof(a));
	a.user_id = pc_arg_uuid(fcinfo, 0);
	a.provider_id = pc_arg_uuid(fcinfo, 1);
	a.provider_slug = pc_arg_text(fcinfo, 2);
	a.credential_type = pc_arg_text(fcinfo, 4);
	a.expires_at = PG_GETARG_DATUM(5);
	a.expires_at_null = PG_ARGISNULL(5);
	a.alias = pc_arg_text(fcinfo, 6);
	a.connection_id = PG_NARGS() > 7 ? pc_arg_uuid(fcinfo, 7) : NULL;

	pc_call_begin(&call, fcinfo, PC_CMD_CONNECT);
	call.event.user_id = a.user_id;
	call.event.provider_id = a.provider_id;
	call.event.provider_slug = a.provider_slug;
	call.event.connection_id = a.connection_id;
	call.result_connection_id = a.connection_id;
	pc_call_attempted(&call);

	if (!pc_check_user(&call, a.user_id))
		;						/* its failure is recorded */
	else if (a.provider_id == NULL)
		pc_call_fail_null(&call, "provider_id");
	else if (pc_check_credentials(&call, fcinfo, 3) &&
			 pc_check_slug(&call, a.provider_slug) &&
			 pc_check_alias(&call, a.alias) &&
			 pc_check_credential_type(&call, a.credential_type) &&
			 pc_check_expires_at(&call, fcinfo, 5, true) &&
			 pc_check_key(&call) &&
			 (a.connection_id == NULL || CheckActivation(&call, &a)))
	{
		a.credentials = PG_GETARG_BYTEA_PP(3);
		pc_guarded_write(&call, a.connection_id ? ActivateConnection : InsertConnection, &a);
	}

	return pc_call_finish(&call, fcinfo);
}
