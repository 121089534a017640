/*
 * connect.c
 *		provider_connect: create an active connection holding sealed
 *		credentials.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "command.h"
#include "crypto.h"
#include "catalog/pg_type.h"
#include "plans.h"
#include "clock.h"
#include "uuid7.h"

/* Under test_clock, connection ids are seeded apart from event ids. */
#define PC_CONNECTION_SEED_BIT (UINT64CONST(1) << 40)

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

/* Inside the guarded subtransaction: seal and insert. */
static void
InsertConnection(PcCall *call, void *arg)
{
	ConnectArgs *a = (ConnectArgs *) arg;
	TimestampTz now = pc_now();
	Datum		values[Natts_pc_insert];
	char		nulls[Natts_pc_insert];

	pc_uuid7(&a->new_id, now, PC_CONNECTION_SEED_BIT | (uint64) call->attempted.audit_id);

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

/* A provider slug: not NULL, not empty, at most PC_MAX_SLUG_CHARS characters. */
static bool
CheckSlug(PcCall *call, const char *slug)
{
	if (slug == NULL || slug[0] == '\0' ||
		pg_mbstrlen(slug) > PC_MAX_SLUG_CHARS)
	{
		pc_call_fail(call, PC_RESULT_INVALID_PROVIDER_SLUG, NULL);
		return false;
	}
	return true;
}

/* An alias: NULL, or at most PC_MAX_ALIAS_CHARS characters. */
static bool
CheckAlias(PcCall *call, const char *alias)
{
	if (alias != NULL && pg_mbstrlen(alias) > PC_MAX_ALIAS_CHARS)
	{
		pc_call_fail(call, PC_RESULT_INVALID_ALIAS, NULL);
		return false;
	}
	return true;
}

/* SQL function: provider_connect(user_id, provider_id, provider_slug, credentials, credential_type, expires_at, alias) */
PG_FUNCTION_INFO_V1(provider_connect);

/*
 * Create a connection for user_id to provider_id, active, with the given
 * credentials sealed under the current key. Returns (true, new id, NULL,
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

	pc_call_begin(&call, fcinfo, PC_CMD_CONNECT);
	call.event.user_id = a.user_id;
	call.event.provider_id = a.provider_id;
	call.event.provider_slug = a.provider_slug;
	pc_call_attempted(&call);

	if (a.user_id == NULL)
		pc_call_fail_null(&call, "user_id");
	else if (a.provider_id == NULL)
		pc_call_fail_null(&call, "provider_id");
	else if (pc_check_credentials(&call, fcinfo, 3) &&
			 CheckSlug(&call, a.provider_slug) &&
			 CheckAlias(&call, a.alias) &&
			 pc_check_credential_type(&call, a.credential_type) &&
			 pc_check_expires_at(&call, fcinfo, 5) &&
			 pc_check_key(&call))
	{
		a.credentials = PG_GETARG_BYTEA_PP(3);
		pc_guarded_write(&call, InsertConnection, &a);
	}

	return pc_call_finish(&call, fcinfo);
}
