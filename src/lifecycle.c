/*
 * lifecycle.c
 *		The rest of the state machine: provider_begin_connect,
 *		provider_mark_failed, provider_mark_expired, provider_mark_revoked,
 *		provider_record_sync and provider_expire_overdue (1.3 on),
 *		provider_fail_abandoned (1.4 on).
 *
 * Each is a command like provider_connect (command.c): an Attempted event,
 * its checks, the change in a guarded subtransaction, exactly one outcome
 * event, a provider_result. The statuses they may move a connection
 * between are those of the transition table (status.c), and each UPDATE
 * names the status it moves from, so a change that lost a race updates
 * nothing and is reported as the refused transition it has become.
 * provider_record_sync is the exception in one way: syncs are frequent, so
 * a successful one writes no events (a failed one does).
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "clock.h"
#include "command.h"
#include "events.h"
#include "plans.h"
#include "replication.h"
#include "uuid7.h"

/* Connections provider_expire_overdue and provider_fail_abandoned handle per SELECT. */
#define PC_MARK_BATCH 500

/* The pending row's columns, in the order the INSERT binds them. */
enum
{
	Anum_pc_pending_id = 1,
	Anum_pc_pending_user_id,
	Anum_pc_pending_provider_id,
	Anum_pc_pending_provider_slug,
	Anum_pc_pending_alias,
	Anum_pc_pending_credential_type,
	Anum_pc_pending_now,
	Natts_pc_pending = Anum_pc_pending_now
};

static PcStatement pc_insert_pending = {
	"INSERT INTO %1$s.provider_connections (id, user_id, provider_id, provider_slug, status,"
	" alias, credential_type, created_at, updated_at)"
	" VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $7)",
	Natts_pc_pending, {UUIDOID, UUIDOID, UUIDOID, TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID}
};

/* A status change's parameters, by position. */
enum
{
	Anum_pc_mark_id = 1,
	Anum_pc_mark_to,
	Anum_pc_mark_clear,
	Anum_pc_mark_now,
	Anum_pc_mark_from,
	Natts_pc_mark = Anum_pc_mark_from
};

/* Move connection $1 from status $5 to $2; $3: drop its credentials. Ends any lease. */
static PcStatement pc_mark = {
	"UPDATE %1$s.provider_connections"
	" SET status = $2::pg_catalog.text::%1$s.provider_connection_status,"
	" encrypted_credentials = CASE WHEN $3 THEN NULL ELSE encrypted_credentials END,"
	" credentials_expires_at = CASE WHEN $3 THEN NULL ELSE credentials_expires_at END,"
	" lease_until = NULL, updated_at = $4"
	" WHERE id OPERATOR(pg_catalog.=) $1"
	" AND status OPERATOR(pg_catalog.=) $5::pg_catalog.text::%1$s.provider_connection_status",
	Natts_pc_mark, {UUIDOID, TEXTOID, BOOLOID, TIMESTAMPTZOID, TEXTOID}
};

static PcStatement pc_record_sync = {
	"UPDATE %1$s.provider_connections SET last_sync_at = $2"
	" WHERE id OPERATOR(pg_catalog.=) $1"
	" AND status OPERATOR(pg_catalog.=) 'active'::%1$s.provider_connection_status",
	2, {UUIDOID, TIMESTAMPTZOID}
};

/*
 * Active connections whose credentials expired before $1, after the
 * (expiry, id) pair ($2, $3) in that order, at most $4, locked; rows
 * another transaction holds are skipped (the next run takes them).
 */
static PcStatement pc_overdue = {
	"SELECT id, credentials_expires_at FROM %1$s.provider_connections"
	" WHERE status OPERATOR(pg_catalog.=) 'active'::%1$s.provider_connection_status"
	" AND credentials_expires_at IS NOT NULL"
	" AND credentials_expires_at OPERATOR(pg_catalog.<) $1"
	" AND credentials_expires_at OPERATOR(pg_catalog.>=) $2"
	" AND (credentials_expires_at, id) OPERATOR(pg_catalog.>) ($2, $3)"
	" ORDER BY credentials_expires_at, id LIMIT $4 FOR UPDATE SKIP LOCKED",
	4, {TIMESTAMPTZOID, TIMESTAMPTZOID, UUIDOID, INT4OID}
};

/*
 * Pending connections created before $1, after the (created_at, id) pair
 * ($2, $3) in that order, at most $4, locked, skipping rows others hold:
 * the same shape as pc_overdue, for the same batch loop.
 */
static PcStatement pc_abandoned = {
	"SELECT id, created_at FROM %1$s.provider_connections"
	" WHERE status OPERATOR(pg_catalog.=) 'pending'::%1$s.provider_connection_status"
	" AND created_at OPERATOR(pg_catalog.<) $1"
	" AND created_at OPERATOR(pg_catalog.>=) $2"
	" AND (created_at, id) OPERATOR(pg_catalog.>) ($2, $3)"
	" ORDER BY created_at, id LIMIT $4 FOR UPDATE SKIP LOCKED",
	4, {TIMESTAMPTZOID, TIMESTAMPTZOID, UUIDOID, INT4OID}
};

typedef struct PendingArgs
{
	const pg_uuid_t *user_id;
	const pg_uuid_t *provider_id;
	const char *provider_slug;
	const char *alias;
	const char *credential_type;
	pg_uuid_t	new_id;
} PendingArgs;

/* Inside the guarded subtransaction: insert the pending row. */
static void
InsertPending(PcCall *call, void *arg)
{
	PendingArgs *a = (PendingArgs *) arg;
	TimestampTz now = pc_now();
	Datum		values[Natts_pc_pending];
	char		nulls[Natts_pc_pending];

	pc_uuid7(&a->new_id, now, PC_SEED_CONNECTION | (uint64) call->attempted.audit_id);
	memset(nulls, ' ', sizeof(nulls));
	values[Anum_pc_pending_id - 1] = UUIDPGetDatum(&a->new_id);
	values[Anum_pc_pending_user_id - 1] = UUIDPGetDatum(a->user_id);
	values[Anum_pc_pending_provider_id - 1] = UUIDPGetDatum(a->provider_id);
	values[Anum_pc_pending_provider_slug - 1] = CStringGetTextDatum(a->provider_slug);
	values[Anum_pc_pending_alias - 1] = a->alias ? CStringGetTextDatum(a->alias) : (Datum) 0;
	nulls[Anum_pc_pending_alias - 1] = a->alias ? ' ' : 'n';
	values[Anum_pc_pending_credential_type - 1] = CStringGetTextDatum(a->credential_type);
	values[Anum_pc_pending_now - 1] = TimestampTzGetDatum(now);
	if (SPI_execute_plan(pc_statement_plan(&pc_insert_pending), values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not insert provider connection");
	call->event.connection_id = &a->new_id;
	call->result_connection_id = &a->new_id;
}

/* SQL function: provider_begin_connect(user_id, provider_id, provider_slug, alias, credential_type) */
PG_FUNCTION_INFO_V1(provider_begin_connect);

/*
 * Create a PENDING connection, holding no credentials, when an OAuth
 * redirect starts; provider_connect with its id completes it. The same
 * checks and error codes as provider_connect, credentials aside.
 */
Datum
provider_begin_connect(PG_FUNCTION_ARGS)
{
	PcCall		call;
	PendingArgs a;

	memset(&a, 0, sizeof(a));
	a.user_id = pc_arg_uuid(fcinfo, 0);
	a.provider_id = pc_arg_uuid(fcinfo, 1);
	a.provider_slug = pc_arg_text(fcinfo, 2);
	a.alias = pc_arg_text(fcinfo, 3);
	a.credential_type = pc_arg_text(fcinfo, 4);

	pc_call_begin(&call, fcinfo, PC_CMD_BEGIN_CONNECT);
	call.event.user_id = a.user_id;
	call.event.provider_id = a.provider_id;
	call.event.provider_slug = a.provider_slug;
	pc_call_attempted(&call);

	if (a.user_id == NULL)
		pc_call_fail_null(&call, "user_id");
	else if (a.provider_id == NULL)
		pc_call_fail_null(&call, "provider_id");
	else if (pc_check_slug(&call, a.provider_slug) &&
			 pc_check_alias(&call, a.alias) &&
			 pc_check_credential_type(&call, a.credential_type))
		pc_guarded_write(&call, InsertPending, &a);

	return pc_call_finish(&call, fcinfo);
}

typedef struct MarkArgs
{
	const pg_uuid_t *connection_id;
	const pg_uuid_t *lease_token;	/* NULL: no fence */
	PcStatus	from;
	PcStatus	to;
	bool		clear_credentials;
} MarkArgs;

/*
 * Inside the guarded subtransaction: with a lease token, the fence; then
 * the UPDATE from the status read before; if the row changed meanwhile,
 * the refusal its new status earns.
 */
static void
MoveStatus(PcCall *call, void *arg)
{
	MarkArgs   *a = (MarkArgs *) arg;
	Datum		values[Natts_pc_mark];
	PcConnectionRow row;

	if (!pc_check_lease(call, a->connection_id, a->lease_token))
		return;
	values[Anum_pc_mark_id - 1] = UUIDPGetDatum(a->connection_id);
	values[Anum_pc_mark_to - 1] = CStringGetTextDatum(pc_status_name(a->to));
	values[Anum_pc_mark_clear - 1] = BoolGetDatum(a->clear_credentials);
	values[Anum_pc_mark_now - 1] = TimestampTzGetDatum(pc_now());
	values[Anum_pc_mark_from - 1] = CStringGetTextDatum(pc_status_name(a->from));
	if (SPI_execute_plan(pc_statement_plan(&pc_mark), values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update provider connection");
	if (SPI_processed > 0)
		return;
	if (!pc_find_connection(a->connection_id, &row))
		pc_call_fail(call, PC_RESULT_CONNECTION_NOT_FOUND, NULL);
	else
		pc_call_fail_transition(call, row.status, a->to);
}

/* The "reason" detail of a mark, clipped like an event's reason; NULL for none. */
static const char *
ReasonDetails(const char *reason)
{
	StringInfoData buf;

	if (reason == NULL)
		return NULL;
	initStringInfo(&buf);
	pc_json_text_member(&buf, "reason", pc_clip(reason, PC_MAX_REASON_BYTES));
	return buf.data;
}

/*
 * One status change as a call in schema nsp (a new SPI connection): the
 * Attempted event, the checks, the change (fenced by lease_token when not
 * NULL), the outcome. Returns whether it succeeded; *result, when not NULL,
 * gets the provider_result datum.
 */
static bool
MarkCall(FunctionCallInfo fcinfo, Oid nsp, PcCommand command, const pg_uuid_t *id,
		 const pg_uuid_t *lease_token, PcStatus to, bool clear_credentials,
		 const char *reason, Datum *result)
{
	PcCall		call;
	PcConnectionRow row;
	bool		found = false;
	MarkArgs	a;

	if (fcinfo != NULL)
		pc_call_begin(&call, fcinfo, command);
	else
		pc_call_begin_in(&call, nsp, command);
	if (id != NULL)
		found = pc_find_connection(id, &row);
	pc_call_describe(&call, found ? &row : NULL);
	call.event.connection_id = id;
	call.event.details = ReasonDetails(reason);
	call.result_connection_id = id;
	pc_call_attempted(&call);

	if (id == NULL)
		pc_call_fail_null(&call, "connection_id");
	else if (!found)
		pc_call_fail(&call, PC_RESULT_CONNECTION_NOT_FOUND, NULL);
	else if (!pc_status_change_allowed(row.status, to))
		pc_call_fail_transition(&call, row.status, to);
	else
	{
		a.connection_id = id;
		a.lease_token = lease_token;
		a.from = row.status;
		a.to = to;
		a.clear_credentials = clear_credentials;
		pc_guarded_write(&call, MoveStatus, &a);
	}

	if (result != NULL)
		*result = pc_call_finish(&call, fcinfo);
	else
	{
		pc_call_record(&call);
		if (SPI_finish() != SPI_OK_FINISH)
			elog(ERROR, "SPI_finish failed");
	}
	return call.ok;
}

/* SQL function: provider_mark_failed(connection_id, reason) */
PG_FUNCTION_INFO_V1(provider_mark_failed);

/* A pending connection whose OAuth flow failed: pending to failed. */
Datum
provider_mark_failed(PG_FUNCTION_ARGS)
{
	Datum		result;

	(void) MarkCall(fcinfo, InvalidOid, PC_CMD_MARK_FAILED, pc_arg_uuid(fcinfo, 0), NULL,
					PC_STATUS_FAILED, false, pc_arg_text(fcinfo, 1), &result);
	return result;
}

/* SQL function: provider_mark_expired(connection_id, lease_token) */
PG_FUNCTION_INFO_V1(provider_mark_expired);

/*
 * Active to expired. The credentials stay sealed: a worker may still use a
 * refresh token among them to re-authenticate. With a lease token (1.4's
 * second argument), only while that lease is in force.
 */
Datum
provider_mark_expired(PG_FUNCTION_ARGS)
{
	Datum		result;

	(void) MarkCall(fcinfo, InvalidOid, PC_CMD_MARK_EXPIRED, pc_arg_uuid(fcinfo, 0),
					PG_NARGS() > 1 ? pc_arg_uuid(fcinfo, 1) : NULL,
					PC_STATUS_EXPIRED, false, NULL, &result);
	return result;
}

/* SQL function: provider_mark_revoked(connection_id, reason, lease_token) */
PG_FUNCTION_INFO_V1(provider_mark_revoked);

/*
 * Active to revoked (the provider withdrew access). The credentials and
 * their expiry are cleared: they are worthless, and still secret. With a
 * lease token (1.4's third argument), only while that lease is in force.
 */
Datum
provider_mark_revoked(PG_FUNCTION_ARGS)
{
	Datum		result;

	(void) MarkCall(fcinfo, InvalidOid, PC_CMD_MARK_REVOKED, pc_arg_uuid(fcinfo, 0),
					PG_NARGS() > 2 ? pc_arg_uuid(fcinfo, 2) : NULL,
					PC_STATUS_REVOKED, true, pc_arg_text(fcinfo, 1), &result);
	return result;
}

/* SQL function: provider_record_sync(connection_id) */
PG_FUNCTION_INFO_V1(provider_record_sync);

/*
 * Note that data was synchronised from an active connection: last_sync_at.
 * A success writes no events; a failure (not found, not_active) writes
 * Attempted and Failed like any other call.
 */
Datum
provider_record_sync(PG_FUNCTION_ARGS)
{
	PcCall		call;
	const pg_uuid_t *id = pc_arg_uuid(fcinfo, 0);
	PcConnectionRow row;
	bool		found = false;
	Datum		values[2];

	pc_call_begin(&call, fcinfo, PC_CMD_RECORD_SYNC);
	call.audit_success = false;
	call.result_connection_id = id;
	call.event.connection_id = id;
	if (id != NULL)
	{
		values[0] = UUIDPGetDatum(id);
		values[1] = TimestampTzGetDatum(pc_now());
		if (SPI_execute_plan(pc_statement_plan(&pc_record_sync), values, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not update provider connection");
		if (SPI_processed > 0)
			return pc_call_finish(&call, fcinfo);
		found = pc_find_connection(id, &row);
	}

	/* A failure: its events say what the connection was. */
	pc_call_describe(&call, found ? &row : NULL);
	pc_call_attempted(&call);
	if (id == NULL)
		pc_call_fail_null(&call, "connection_id");
	else if (!found)
		pc_call_fail(&call, PC_RESULT_CONNECTION_NOT_FOUND, NULL);
	else
		pc_call_fail(&call, PC_RESULT_NOT_ACTIVE, NULL);
	return pc_call_finish(&call, fcinfo);
}

/* How a batch job (MarkBatches) selects its rows and what it makes of them. */
typedef struct BatchJob
{
	const char *argname;		/* its interval argument, for the errors */
	const char *negative_detail;	/* why a negative one is refused */
	PcStatement *select;		/* shaped like pc_overdue */
	PcCommand	command;
	PcStatus	to;
	const char *reason;			/* of each mark, or NULL */
} BatchJob;

/*
 * The loop of the batch jobs: every connection job->select finds older
 * than now minus the interval argument goes to job->to, each as a call of
 * job->command with its events. Batches of PC_MARK_BATCH rows are locked
 * with SKIP LOCKED, so the job never waits for a caller holding a row
 * (that row is left for the next run) and no caller waits for rows the job
 * has not reached. Returns how many calls succeeded.
 */
static int64
MarkBatches(FunctionCallInfo fcinfo, const BatchJob *job)
{
	Oid			nsp = get_func_namespace(fcinfo->flinfo->fn_oid);
	Interval   *age;
	Interval	zero = {0};
	TimestampTz cutoff;
	Datum		args[4];
	pg_uuid_t	last_id;
	int64		marked = 0;
	MemoryContext rowcxt;
	MemoryContext oldcxt;

	/* Its calls are made from C (pc_call_begin_in): refuse them here. */
	pc_refuse_on_subscriber(fcinfo);
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s cannot be null", job->argname)));
	age = PG_GETARG_INTERVAL_P(0);
	if (DatumGetBool(DirectFunctionCall2(interval_lt, IntervalPGetDatum(age),
										 IntervalPGetDatum(&zero))))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be negative", job->argname),
				 errdetail_internal("%s", job->negative_detail)));
	cutoff = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
													 TimestampTzGetDatum(pc_now()),
													 IntervalPGetDatum(age)));
	memset(&last_id, 0, sizeof(last_id));
	args[0] = TimestampTzGetDatum(cutoff);
	args[1] = TimestampTzGetDatum(DT_NOBEGIN);
	args[2] = UUIDPGetDatum(&last_id);
	args[3] = Int32GetDatum(PC_MARK_BATCH);

	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "provider_connections batch row",
								   ALLOCSET_DEFAULT_SIZES);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	for (;;)
	{
		SPITupleTable *batch;
		uint64		n;
		uint64		i;
		bool		isnull;

		pc_plans_use_schema(nsp);
		if (SPI_execute_plan(pc_statement_plan(job->select), args, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read provider connections");
		batch = SPI_tuptable;
		n = SPI_processed;
		for (i = 0; i < n; i++)
		{
			pg_uuid_t	id;

			memcpy(&id, DatumGetUUIDP(SPI_getbinval(batch->vals[i], batch->tupdesc, 1, &isnull)),
				   sizeof(pg_uuid_t));
			oldcxt = MemoryContextSwitchTo(rowcxt);
			if (MarkCall(NULL, nsp, job->command, &id, NULL, job->to, false, job->reason, NULL))
				marked++;
			MemoryContextSwitchTo(oldcxt);
			MemoryContextReset(rowcxt);
			last_id = id;
			CHECK_FOR_INTERRUPTS();
		}
		if (n < PC_MARK_BATCH)
			break;
		args[1] = SPI_getbinval(batch->vals[n - 1], batch->tupdesc, 2, &isnull);
		SPI_freetuptable(batch);
	}
	SPI_finish();
	MemoryContextDelete(rowcxt);
	return marked;
}

/* SQL function: provider_expire_overdue(grace interval) */
PG_FUNCTION_INFO_V1(provider_expire_overdue);

/*
 * Move every active connection whose credentials expired more than grace
 * ago to expired, each as a provider_mark_expired call with its events
 * (MarkBatches). Returns how many connections were expired.
 */
Datum
provider_expire_overdue(PG_FUNCTION_ARGS)
{
	static const BatchJob job = {
		"grace",
		"A negative grace would expire connections whose credentials are still valid.",
		&pc_overdue, PC_CMD_MARK_EXPIRED, PC_STATUS_EXPIRED, NULL
	};

	PG_RETURN_INT64(MarkBatches(fcinfo, &job));
}

/* SQL function: provider_fail_abandoned(older_than interval) */
PG_FUNCTION_INFO_V1(provider_fail_abandoned);

/*
 * Move every pending connection created more than older_than ago (an OAuth
 * flow the user abandoned) to failed, each as a provider_mark_failed call
 * with reason "abandoned" and its events (MarkBatches). Returns how many.
 */
Datum
provider_fail_abandoned(PG_FUNCTION_ARGS)
{
	static const BatchJob job = {
		"older_than",
		"A negative older_than would fail OAuth flows that have only just begun.",
		&pc_abandoned, PC_CMD_MARK_FAILED, PC_STATUS_FAILED, "abandoned"
	};

	PG_RETURN_INT64(MarkBatches(fcinfo, &job));
}
