/*
 * refresh.c
 *		provider_refresh_tokens: replace an active connection's credentials;
 *		provider_record_refresh_failure (1.4 on): count a failed refresh.
 *
 * A worker claims a connection (provider_claim_expiring), calls the
 * provider, and then records the outcome with the claim's lease token:
 * new credentials, or a failure. Either ends the lease; a token that is no
 * longer in force (pc_check_lease) gives lease_lost and changes nothing,
 * so a worker that outlived its lease cannot overwrite what the worker
 * that claimed the connection after it stored. Failures are counted:
 * each one sets when the connection may be claimed again
 * (refresh_policy.c), and after max_refresh_attempts in a row it is not
 * claimed any more and the event asks for the user. A successful refresh,
 * like a re-authentication (connect.c), starts the count again.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#include "postgres.h"

#include "access/detoast.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "command.h"
#include "crypto.h"
#include "catalog/pg_type.h"
#include "plans.h"
#include "clock.h"
#include "events.h"
#include "keys.h"
#include "refresh_policy.h"

typedef struct RefreshArgs
{
	const pg_uuid_t *connection_id;
	const pg_uuid_t *user_id;	/* its owner */
	bytea	   *credentials;
	Datum		expires_at;
	bool		expires_at_null;
	const char *credential_type;
	const pg_uuid_t *lease_token;
	/* The fast path (RefreshById): the row, once the UPDATE or a read found it. */
	PcConnectionRow *row;
	bool		row_found;
} RefreshArgs;

/* The refresh UPDATE's parameters, by position. */
enum
{
	Anum_pc_refresh_id = 1,
	Anum_pc_refresh_credentials,
	Anum_pc_refresh_expires_at,
	Anum_pc_refresh_credential_type,
	Anum_pc_refresh_now,
	Anum_pc_refresh_user_id,
	Natts_pc_refresh = Anum_pc_refresh_user_id
};

/*
 * Rechecks status on the newest row version after a lock wait. From 1.3 on
 * a refresh also ends the row's claim lease (provider_claim_expiring), from
 * 1.4 on also its count of failed attempts and their backoff.
 */
#define PC_REFRESH_SQL(lease) \
	"UPDATE %1$s.provider_connections SET encrypted_credentials = $2," \
	" credentials_expires_at = $3," \
	" credential_type = COALESCE($4, credential_type), updated_at = $5" lease \
	" WHERE id OPERATOR(pg_catalog.=) $1 AND user_id OPERATOR(pg_catalog.=) $6" \
	" AND status OPERATOR(pg_catalog.=) 'active'::%1$s.provider_connection_status"

static PcStatement pc_refresh_1_2 = {
	PC_REFRESH_SQL(""),
	Natts_pc_refresh, {UUIDOID, BYTEAOID, TIMESTAMPTZOID, TEXTOID, TIMESTAMPTZOID, UUIDOID}
};

static PcStatement pc_refresh_1_3 = {
	PC_REFRESH_SQL(", lease_until = NULL"),
	Natts_pc_refresh, {UUIDOID, BYTEAOID, TIMESTAMPTZOID, TEXTOID, TIMESTAMPTZOID, UUIDOID}
};

static PcStatement pc_refresh = {
	PC_REFRESH_SQL(", lease_until = NULL, refresh_failures = 0, next_refresh_at = NULL"),
	Natts_pc_refresh, {UUIDOID, BYTEAOID, TIMESTAMPTZOID, TEXTOID, TIMESTAMPTZOID, UUIDOID}
};

/*
 * The fast path's UPDATE (RefreshById): by id alone, on one node, from 1.4
 * on, returning the facts the call's events need, which the row's guard
 * keeps from changing (identity columns): what pc_find_connection would
 * have read first.
 */
static PcStatement pc_refresh_returning = {
	"UPDATE %1$s.provider_connections SET encrypted_credentials = $2,"
	" credentials_expires_at = $3,"
	" credential_type = COALESCE($4, credential_type), updated_at = $5,"
	" lease_until = NULL, refresh_failures = 0, next_refresh_at = NULL"
	" WHERE id OPERATOR(pg_catalog.=) $1"
	" AND status OPERATOR(pg_catalog.=) 'active'::%1$s.provider_connection_status"
	" RETURNING user_id, provider_id, provider_slug::pg_catalog.text",
	Natts_pc_refresh - 1, {UUIDOID, BYTEAOID, TIMESTAMPTZOID, TEXTOID, TIMESTAMPTZOID}
};

/* The refresh UPDATE for the schema's version. */
static PcStatement *
RefreshStatement(void)
{
	PcSchemaLevel level = pc_schema_level();

	return level >= PC_SCHEMA_1_4 ? &pc_refresh :
		level >= PC_SCHEMA_1_3 ? &pc_refresh_1_3 : &pc_refresh_1_2;
}

/* Record not_active: the user must connect again. */
static void
FailNotActive(PcCall *call)
{
	pc_call_fail(call, PC_RESULT_NOT_ACTIVE, NULL);
	call->event.needs_user_action = true;
}

/*
 * The refresh UPDATE's parameters but the user (the last, which the
 * by-id statement does not take): the id, the new credentials sealed, their
 * expiry and type, and the clock.
 */
static void
SealRefreshParams(RefreshArgs *a, Datum *values, char *nulls)
{
	memset(nulls, ' ', Natts_pc_refresh - 1);
	values[Anum_pc_refresh_id - 1] = UUIDPGetDatum(a->connection_id);
	values[Anum_pc_refresh_credentials - 1] = PointerGetDatum(pc_seal(a->credentials));
	values[Anum_pc_refresh_expires_at - 1] = a->expires_at;
	nulls[Anum_pc_refresh_expires_at - 1] = a->expires_at_null ? 'n' : ' ';
	values[Anum_pc_refresh_credential_type - 1] =
		a->credential_type ? CStringGetTextDatum(a->credential_type) : (Datum) 0;
	nulls[Anum_pc_refresh_credential_type - 1] = a->credential_type ? ' ' : 'n';
	values[Anum_pc_refresh_now - 1] = TimestampTzGetDatum(pc_now());
}

/*
 * Inside the guarded subtransaction. With a lease token, the fence first.
 * The UPDATE only touches an active row; after waiting for a lock it
 * re-checks the newest version, so a refresh that loses to a concurrent
 * disconnect updates nothing.
 */
static void
StoreCredentials(PcCall *call, void *arg)
{
	RefreshArgs *a = (RefreshArgs *) arg;
	Datum		values[Natts_pc_refresh];
	char		nulls[Natts_pc_refresh];
	PcConnectionRow row;

	if (!pc_check_lease(call, a->connection_id, a->user_id, a->lease_token))
		return;
	SealRefreshParams(a, values, nulls);
	values[Anum_pc_refresh_user_id - 1] = UUIDPGetDatum(a->user_id);
	nulls[Anum_pc_refresh_user_id - 1] = ' ';

	if (SPI_execute_plan(pc_statement_plan(RefreshStatement()), values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update provider connection");
	if (SPI_processed > 0)
		return;
	if (pc_find_connection(a->connection_id, a->user_id, &row))
		FailNotActive(call);
	else
		pc_call_fail(call, PC_RESULT_CONNECTION_NOT_FOUND, NULL);
}

/*
 * Inside the guarded subtransaction, for RefreshById: seal, then update the
 * row if it is active, taking its facts from the UPDATE; if it updated
 * nothing, read the row for them and record why, as StoreCredentials does.
 */
static void
StoreCredentialsById(PcCall *call, void *arg)
{
	RefreshArgs *a = (RefreshArgs *) arg;
	Datum		values[Natts_pc_refresh - 1];
	char		nulls[Natts_pc_refresh - 1];
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;

	SealRefreshParams(a, values, nulls);

	if (SPI_execute_plan(pc_statement_plan(&pc_refresh_returning), values, nulls, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not update provider connection");
	if (SPI_processed > 0)
	{
		tup = SPI_tuptable->vals[0];
		desc = SPI_tuptable->tupdesc;
		memcpy(&a->row->user_id, DatumGetUUIDP(SPI_getbinval(tup, desc, 1, &isnull)), sizeof(pg_uuid_t));
		memcpy(&a->row->provider_id, DatumGetUUIDP(SPI_getbinval(tup, desc, 2, &isnull)), sizeof(pg_uuid_t));
		a->row->provider_slug = SPI_getvalue(tup, desc, 3);
		a->row->status = PC_STATUS_ACTIVE;
		a->row_found = true;
		return;
	}
	a->row_found = pc_find_connection(a->connection_id, NULL, a->row);
	if (a->row_found)
		FailNotActive(call);
	else
		pc_call_fail(call, PC_RESULT_CONNECTION_NOT_FOUND, NULL);
}

/*
 * Whether a refresh can take the fast path (RefreshById): by connection id,
 * no lease token, one node (distributed, the UPDATE must name the owner to
 * reach the row's shard), the 1.4 schema, every argument valid and the key
 * usable. It records nothing: when any check fails, the usual path runs,
 * reads the row first and records the first failure in its order.
 */
static bool
RefreshFastPathApplies(FunctionCallInfo fcinfo, bool by_user, const RefreshArgs *a)
{
	Size		size;

	if (by_user || a->lease_token != NULL || a->connection_id == NULL)
		return false;
	if (pc_schema_level() < PC_SCHEMA_1_4 || pc_citus_distributed())
		return false;
	if (PG_ARGISNULL(1))
		return false;
	size = toast_raw_datum_size(PG_GETARG_DATUM(1)) - VARHDRSZ;
	if (size == 0 || size > PC_MAX_CREDENTIAL_BYTES)
		return false;
	if (a->credential_type != NULL && !pc_credential_type_valid(a->credential_type))
		return false;
	if (!PG_ARGISNULL(2) && TIMESTAMP_IS_NOBEGIN(PG_GETARG_TIMESTAMPTZ(2)))
		return false;
	return pc_key_problem() == NULL;
}

/*
 * The fast path of a refresh by connection id (RefreshFastPathApplies):
 * the same events and result as RefreshTokens, one statement fewer. The
 * usual path reads the row, for the Attempted event's facts and its
 * status, then updates it if active; here the guarded UPDATE goes first
 * and returns those facts, and only a refresh that updated nothing (or
 * failed) reads the row, to say why and to describe its events. The
 * Attempted event is stamped (id, time) before the UPDATE, as before; its
 * facts are filled in once known, before any event is written.
 */
static Datum
RefreshById(FunctionCallInfo fcinfo, PcCall *call, RefreshArgs *a)
{
	PcConnectionRow row;

	call->event.connection_id = a->connection_id;
	call->result_connection_id = a->connection_id;
	pc_call_attempted(call);

	a->credentials = PG_GETARG_BYTEA_PP(1);
	a->row = &row;
	a->row_found = false;
	/* A database error rolled the UPDATE back: read the row for the facts. */
	if (!pc_guarded_write(call, StoreCredentialsById, a))
		a->row_found = pc_find_connection(a->connection_id, NULL, &row);
	if (a->row_found)
		pc_call_describe_attempted(call, &row);
	return pc_call_finish(call, fcinfo);
}

/*
 * The arguments of both forms: by connection id (1.3), and with the owner
 * first (1.4), which finds the connection among that user's only (on Citus:
 * in that user's shard). Argument n of the first is argument n + 1 of the
 * second.
 */
#define PC_ARG(n) PC_FORM_ARG(by_user, n)

/*
 * provider_refresh_tokens, both forms: store new credentials for an active
 * connection, with their expiry (NULL: they do not expire) and, when given,
 * a new credential type. A connection that is not active fails with
 * needs_user_action = true: the user must connect again. With a lease
 * token (1.4), only while that lease is in force.
 */
static Datum
RefreshTokens(FunctionCallInfo fcinfo, bool by_user)
{
	PcCall		call;
	RefreshArgs a;
	PcConnectionRow row;
	bool		found = false;
	const pg_uuid_t *user_id = by_user ? pc_arg_uuid(fcinfo, 0) : NULL;

	memset(&a, 0, sizeof(a));
	a.connection_id = pc_arg_uuid(fcinfo, PC_ARG(0));
	a.expires_at = PG_GETARG_DATUM(PC_ARG(2));
	a.expires_at_null = PG_ARGISNULL(PC_ARG(2));
	a.credential_type = pc_arg_text(fcinfo, PC_ARG(3));
	a.lease_token = PG_NARGS() > PC_ARG(4) ? pc_arg_uuid(fcinfo, PC_ARG(4)) : NULL;

	pc_call_begin(&call, fcinfo, PC_CMD_REFRESH);
	if (RefreshFastPathApplies(fcinfo, by_user, &a))
		return RefreshById(fcinfo, &call, &a);
	found = pc_call_find_connection(&call, by_user, user_id, a.connection_id, &row);
	pc_call_attempted(&call);

	if (by_user && !pc_check_user(&call, user_id))
		;						/* its failure is recorded */
	else if (a.connection_id == NULL)
		pc_call_fail_null(&call, "connection_id");
	else if (!found)
		pc_call_fail(&call, PC_RESULT_CONNECTION_NOT_FOUND, NULL);
	else if (pc_check_credentials(&call, fcinfo, PC_ARG(1)) &&
			 (a.credential_type == NULL ||
			  pc_check_credential_type(&call, a.credential_type)) &&
			 pc_check_expires_at(&call, fcinfo, PC_ARG(2), false))
	{
		/* Refreshing keeps the status: not a transition, but only while active. */
		if (row.status != PC_STATUS_ACTIVE)
			FailNotActive(&call);
		else if (pc_check_key(&call))
		{
			a.credentials = PG_GETARG_BYTEA_PP(PC_ARG(1));
			a.user_id = &row.user_id;
			pc_guarded_write(&call, StoreCredentials, &a);
		}
	}

	return pc_call_finish(&call, fcinfo);
}

/* SQL function: provider_refresh_tokens(connection_id, credentials, expires_at, credential_type, lease_token) */
PG_FUNCTION_INFO_V1(provider_refresh_tokens);

/* provider_refresh_tokens by connection id (RefreshTokens). */
Datum
provider_refresh_tokens(PG_FUNCTION_ARGS)
{
	return RefreshTokens(fcinfo, false);
}

/* SQL function: provider_refresh_tokens(user_id, connection_id, credentials, expires_at, credential_type, lease_token) */
PG_FUNCTION_INFO_V1(provider_refresh_tokens_of_user);

/* provider_refresh_tokens by owner and connection id (RefreshTokens). */
Datum
provider_refresh_tokens_of_user(PG_FUNCTION_ARGS)
{
	return RefreshTokens(fcinfo, true);
}

/* The failure's row: locked, with its status and count so far. */
static PcStatement pc_failure_row = {
	"SELECT status OPERATOR(pg_catalog.=) 'active'::%1$s.provider_connection_status, refresh_failures"
	" FROM %1$s.provider_connections WHERE id OPERATOR(pg_catalog.=) $1"
	" AND user_id OPERATOR(pg_catalog.=) $2 FOR UPDATE",
	2, {UUIDOID, UUIDOID}
};

/* Count one more failure, end the lease, wait until $3 ($4: updated_at); $5 the owner. */
static PcStatement pc_record_failure = {
	"UPDATE %1$s.provider_connections SET refresh_failures = $2, next_refresh_at = $3,"
	" lease_until = NULL, updated_at = $4"
	" WHERE id OPERATOR(pg_catalog.=) $1 AND user_id OPERATOR(pg_catalog.=) $5",
	5, {UUIDOID, INT4OID, TIMESTAMPTZOID, TIMESTAMPTZOID, UUIDOID}
};

typedef struct FailureArgs
{
	const pg_uuid_t *connection_id;
	const pg_uuid_t *user_id;	/* its owner */
	const pg_uuid_t *lease_token;
	Interval   *retry_after;	/* NULL: the backoff */
} FailureArgs;

/*
 * Inside the guarded subtransaction: the fence, then the count on the
 * locked row, its backoff (or the provider's retry_after) and, at
 * max_refresh_attempts, exhaustion, told by the events' details.
 */
static void
CountFailure(PcCall *call, void *arg)
{
	FailureArgs *a = (FailureArgs *) arg;
	/* The claim compares the backoff with the clock, which test_clock does not pin. */
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz next;
	Datum		values[5];
	bool		isnull;
	int			attempt;
	bool		exhausted;
	StringInfoData details;
	MemoryContext old;
	int			utc = 0;

	if (!pc_check_lease(call, a->connection_id, a->user_id, a->lease_token))
		return;
	values[0] = UUIDPGetDatum(a->connection_id);
	values[1] = UUIDPGetDatum(a->user_id);
	if (SPI_execute_plan(pc_statement_plan(&pc_failure_row), values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not lock provider connection");
	if (SPI_processed == 0)
	{
		pc_call_fail(call, PC_RESULT_CONNECTION_NOT_FOUND, NULL);
		return;
	}
	if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
	{
		FailNotActive(call);
		return;
	}
	attempt = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)) + 1;
	exhausted = attempt >= pc_max_refresh_attempts();
	if (a->retry_after != NULL)
	{
		next = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
													   TimestampTzGetDatum(now),
													   IntervalPGetDatum(a->retry_after)));
		next = Min(next, pc_refresh_retry_limit(now));
	}
	else
		next = pc_refresh_backoff_until(now, attempt);

	values[1] = Int32GetDatum(attempt);
	values[2] = TimestampTzGetDatum(next);
	values[3] = TimestampTzGetDatum(pc_now());
	values[4] = UUIDPGetDatum(a->user_id);
	if (SPI_execute_plan(pc_statement_plan(&pc_record_failure), values, NULL, false, 0) != SPI_OK_UPDATE ||
		SPI_processed != 1)
		elog(ERROR, "could not update provider connection");

	old = MemoryContextSwitchTo(call->callcxt);
	initStringInfo(&details);
	appendStringInfo(&details, "\"attempt\":%d,\"max_attempts\":%d,\"exhausted\":%s",
					 attempt, pc_max_refresh_attempts(), exhausted ? "true" : "false");
	pc_json_text_member(&details, "next_attempt_at", exhausted ? NULL :
						JsonEncodeDateTime(NULL, TimestampTzGetDatum(next), TIMESTAMPTZOID, &utc));
	call->event.details = details.data;
	call->event.needs_user_action = exhausted;
	MemoryContextSwitchTo(old);
}

/*
 * provider_record_refresh_failure, both forms (by connection id, and with
 * the owner first): record that refreshing an active connection failed at
 * the provider (reason says how): its Attempted event and a
 * ProviderTokenRefreshFailed with the reason and, in the details, the
 * attempt number, the next attempt's time and whether refresh is exhausted
 * (then needs_user_action is true: the connection stays active until it
 * expires or new credentials arrive, but is no longer claimed). The result
 * is ok when the failure was recorded. With a lease token, only while that
 * lease is in force; it ends the lease either way it is recorded.
 */
static Datum
RecordRefreshFailure(FunctionCallInfo fcinfo, bool by_user)
{
	PcCall		call;
	FailureArgs a;
	PcConnectionRow row;
	bool		found = false;
	const pg_uuid_t *user_id = by_user ? pc_arg_uuid(fcinfo, 0) : NULL;
	const char *reason = pc_arg_text(fcinfo, PC_ARG(2));
	Interval	zero = {0};

	memset(&a, 0, sizeof(a));
	a.connection_id = pc_arg_uuid(fcinfo, PC_ARG(0));
	a.lease_token = pc_arg_uuid(fcinfo, PC_ARG(1));
	a.retry_after = PG_ARGISNULL(PC_ARG(3)) ? NULL : PG_GETARG_INTERVAL_P(PC_ARG(3));

	pc_call_begin(&call, fcinfo, PC_CMD_REFRESH);
	found = pc_call_find_connection(&call, by_user, user_id, a.connection_id, &row);
	pc_call_attempted(&call);

	if (by_user && !pc_check_user(&call, user_id))
		;						/* its failure is recorded */
	else if (a.connection_id == NULL)
		pc_call_fail_null(&call, "connection_id");
	else if (reason == NULL)
		pc_call_fail_null(&call, "reason");
	else if (a.retry_after != NULL &&
			 DatumGetBool(DirectFunctionCall2(interval_lt, IntervalPGetDatum(a.retry_after),
											  IntervalPGetDatum(&zero))))
		pc_call_fail(&call, PC_RESULT_INVALID_ARGUMENT, "retry_after cannot be negative");
	else if (!found)
		pc_call_fail(&call, PC_RESULT_CONNECTION_NOT_FOUND, NULL);
	else if (row.status != PC_STATUS_ACTIVE)
		FailNotActive(&call);
	else
	{
		a.user_id = &row.user_id;
		if (pc_guarded_write(&call, CountFailure, &a) && call.ok)
			call.recorded_failure = pc_clip(reason, PC_MAX_REASON_BYTES);
	}

	return pc_call_finish(&call, fcinfo);
}

/* SQL function: provider_record_refresh_failure(connection_id, lease_token, reason, retry_after) */
PG_FUNCTION_INFO_V1(provider_record_refresh_failure);

/* provider_record_refresh_failure by connection id (RecordRefreshFailure). */
Datum
provider_record_refresh_failure(PG_FUNCTION_ARGS)
{
	return RecordRefreshFailure(fcinfo, false);
}

/* SQL function: provider_record_refresh_failure(user_id, connection_id, lease_token, reason, retry_after) */
PG_FUNCTION_INFO_V1(provider_record_refresh_failure_of_user);

/* provider_record_refresh_failure by owner and connection id (RecordRefreshFailure). */
Datum
provider_record_refresh_failure_of_user(PG_FUNCTION_ARGS)
{
	return RecordRefreshFailure(fcinfo, true);
}
