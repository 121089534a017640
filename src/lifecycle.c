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
	Anum_pc_mark_user_id,
	Anum_pc_mark_call_id,
	Natts_pc_mark = Anum_pc_mark_call_id
};

/*
 * Move connection $1 of user $6 from status $5 to $2; $3: drop its
 * credentials. Ends any lease. From 1.4 on the row names the call ($7):
 * the guard then knows the change records its own events, also on a Citus
 * worker, where the call itself did not run.
 */
#define PC_MARK_SQL(call) \
	"UPDATE %1$s.provider_connections" \
	" SET status = $2::pg_catalog.text::%1$s.provider_connection_status," \
	" encrypted_credentials = CASE WHEN $3 THEN NULL ELSE encrypted_credentials END," \
	" credentials_expires_at = CASE WHEN $3 THEN NULL ELSE credentials_expires_at END," \
	" lease_until = NULL, updated_at = $4" call \
	" WHERE id OPERATOR(pg_catalog.=) $1 AND user_id OPERATOR(pg_catalog.=) $6" \
	" AND status OPERATOR(pg_catalog.=) $5::pg_catalog.text::%1$s.provider_connection_status"

static PcStatement pc_mark_1_3 = {
	PC_MARK_SQL(""), Natts_pc_mark - 1, {UUIDOID, TEXTOID, BOOLOID, TIMESTAMPTZOID, TEXTOID, UUIDOID}
};

static PcStatement pc_mark = {
	PC_MARK_SQL(", last_call_id = $7"), Natts_pc_mark,
	{UUIDOID, TEXTOID, BOOLOID, TIMESTAMPTZOID, TEXTOID, UUIDOID, UUIDOID}
};

/* last_sync_at of active connection $1 (of user $3, when not NULL) is now $2. */
#define PC_RECORD_SYNC_SQL \
	"UPDATE %1$s.provider_connections SET last_sync_at = $2" \
	" WHERE id OPERATOR(pg_catalog.=) $1" \
	" AND status OPERATOR(pg_catalog.=) 'active'::%1$s.provider_connection_status"

/* By id alone: one node only (on Citus the user is found first). */
static PcStatement pc_record_sync = {
	PC_RECORD_SYNC_SQL, 2, {UUIDOID, TIMESTAMPTZOID}
};

static PcStatement pc_record_sync_user = {
	PC_RECORD_SYNC_SQL " AND user_id OPERATOR(pg_catalog.=) $3", 3, {UUIDOID, TIMESTAMPTZOID, UUIDOID}
};

/*
 * Active connections whose credentials expired before $1, after the
 * (expiry, id) pair ($2, $3) in that order, at most $4, locked; rows
 * another transaction holds are skipped (the next run takes them).
 */
#define PC_OVERDUE_SQL \
	"SELECT id, credentials_expires_at, user_id FROM %1$s.provider_connections" \
	" WHERE status OPERATOR(pg_catalog.=) 'active'::%1$s.provider_connection_status" \
	" AND credentials_expires_at IS NOT NULL" \
	" AND credentials_expires_at OPERATOR(pg_catalog.<) $1" \
	" AND credentials_expires_at OPERATOR(pg_catalog.>=) $2" \
	" AND (credentials_expires_at, id) OPERATOR(pg_catalog.>) ($2, $3)" \
	" ORDER BY credentials_expires_at, id LIMIT $4"

static PcStatement pc_overdue = {
	PC_OVERDUE_SQL " FOR UPDATE SKIP LOCKED", 4, {TIMESTAMPTZOID, TIMESTAMPTZOID, UUIDOID, INT4OID}
};

/*
 * On Citus, which locks rows of one user's shard only (FOR UPDATE needs the
 * distribution column): unlocked, from every shard. Each mark then changes
 * its row only if it still has the status read (MoveStatus), waiting for a
 * caller that holds it instead of skipping it.
 */
static PcStatement pc_overdue_distributed = {
	PC_OVERDUE_SQL, 4, {TIMESTAMPTZOID, TIMESTAMPTZOID, UUIDOID, INT4OID}, .multi_shard = true
};

/*
 * Pending connections created before $1, after the (created_at, id) pair
 * ($2, $3) in that order, at most $4, locked, skipping rows others hold:
 * the same shape as pc_overdue, for the same batch loop.
 */
#define PC_ABANDONED_SQL \
	"SELECT id, created_at, user_id FROM %1$s.provider_connections" \
	" WHERE status OPERATOR(pg_catalog.=) 'pending'::%1$s.provider_connection_status" \
	" AND created_at OPERATOR(pg_catalog.<) $1" \
	" AND created_at OPERATOR(pg_catalog.>=) $2" \
	" AND (created_at, id) OPERATOR(pg_catalog.>) ($2, $3)" \
	" ORDER BY created_at, id LIMIT $4"

static PcStatement pc_abandoned = {
	PC_ABANDONED_SQL " FOR UPDATE SKIP LOCKED", 4, {TIMESTAMPTZOID, TIMESTAMPTZOID, UUIDOID, INT4OID}
};

/* On Citus: as pc_overdue_distributed. */
static PcStatement pc_abandoned_distributed = {
	PC_ABANDONED_SQL, 4, {TIMESTAMPTZOID, TIMESTAMPTZOID, UUIDOID, INT4OID}, .multi_shard = true
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

	if (!pc_check_user(&call, a.user_id))
		;						/* its failure is recorded */
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
	const pg_uuid_t *user_id;	/* its owner */
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

	if (!pc_check_lease(call, a->connection_id, a->user_id, a->lease_token))
		return;
	values[Anum_pc_mark_id - 1] = UUIDPGetDatum(a->connection_id);
	values[Anum_pc_mark_user_id - 1] = UUIDPGetDatum(a->user_id);
	values[Anum_pc_mark_call_id - 1] = UUIDPGetDatum(&call->call_id);
	values[Anum_pc_mark_to - 1] = CStringGetTextDatum(pc_status_name(a->to));
	values[Anum_pc_mark_clear - 1] = BoolGetDatum(a->clear_credentials);
	values[Anum_pc_mark_now - 1] = TimestampTzGetDatum(pc_now());
	values[Anum_pc_mark_from - 1] = CStringGetTextDatum(pc_status_name(a->from));
	if (SPI_execute_plan(pc_statement_plan(pc_schema_level() >= PC_SCHEMA_1_4 ? &pc_mark : &pc_mark_1_3),
						 values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update provider connection");
	if (SPI_processed > 0)
		return;
	if (!pc_find_connection(a->connection_id, a->user_id, &row))
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
 * NULL), the outcome. by_user: the call names the connection's owner,
 * user_id (the forms that take it first; the batches), and finds it among
 * that user's connections only. Returns whether it succeeded; *result,
 * when not NULL, gets the provider_result datum.
 */
static bool
MarkCall(FunctionCallInfo fcinfo, Oid nsp, PcCommand command, bool by_user, const pg_uuid_t *user_id,
		 const pg_uuid_t *id, const pg_uuid_t *lease_token, PcStatus to, bool clear_credentials,
		 const char *reason, Datum *result)
{
	PcCall		call;
	PcConnectionRow row;
	bool		found;
	MarkArgs	a;

	if (fcinfo != NULL)
		pc_call_begin(&call, fcinfo, command);
	else
		pc_call_begin_in(&call, nsp, command);
	found = pc_call_find_connection(&call, by_user, user_id, id, &row);
	call.event.details = ReasonDetails(reason);
	pc_call_attempted(&call);

	/* A batch's owner is read from the row (a 1.3 install may hold the nil UUID there). */
	if (by_user && fcinfo != NULL && !pc_check_user(&call, user_id))
		;						/* its failure is recorded */
	else if (id == NULL)
		pc_call_fail_null(&call, "connection_id");
	else if (!found)
		pc_call_fail(&call, PC_RESULT_CONNECTION_NOT_FOUND, NULL);
	else if (!pc_status_change_allowed(row.status, to))
		pc_call_fail_transition(&call, row.status, to);
	else
	{
		a.connection_id = id;
		a.user_id = &row.user_id;
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

/*
 * The arguments of the mark functions, in both forms: the 1.3 form by
 * connection id (its owner is found by id alone: on Citus a read of every
 * shard), and the 1.4 form with the owner first, which finds the connection
 * among that user's only (on Citus: in that user's shard). Argument n of
 * the 1.3 form is argument n + 1 of the 1.4 form.
 */
#define PC_ARG(n) PC_FORM_ARG(by_user, n)

/* provider_mark_failed, both forms: a pending connection whose OAuth flow failed. */
static Datum
MarkFailed(FunctionCallInfo fcinfo, bool by_user)
{
	Datum		result;

	(void) MarkCall(fcinfo, InvalidOid, PC_CMD_MARK_FAILED, by_user,
					by_user ? pc_arg_uuid(fcinfo, 0) : NULL, pc_arg_uuid(fcinfo, PC_ARG(0)), NULL,
					PC_STATUS_FAILED, false, pc_arg_text(fcinfo, PC_ARG(1)), &result);
	return result;
}

/*
 * provider_mark_expired, both forms: active to expired. The credentials
 * stay sealed: a worker may still use a refresh token among them to
 * re-authenticate. With a lease token (1.4), only while that lease is in
 * force.
 */
static Datum
MarkExpired(FunctionCallInfo fcinfo, bool by_user)
{
	Datum		result;

	(void) MarkCall(fcinfo, InvalidOid, PC_CMD_MARK_EXPIRED, by_user,
					by_user ? pc_arg_uuid(fcinfo, 0) : NULL, pc_arg_uuid(fcinfo, PC_ARG(0)),
					PG_NARGS() > PC_ARG(1) ? pc_arg_uuid(fcinfo, PC_ARG(1)) : NULL,
					PC_STATUS_EXPIRED, false, NULL, &result);
	return result;
}

/*
 * provider_mark_revoked, both forms: active to revoked (the provider
 * withdrew access). The credentials and their expiry are cleared: they are
 * worthless, and still secret. With a lease token (1.4), only while that
 * lease is in force.
 */
static Datum
MarkRevoked(FunctionCallInfo fcinfo, bool by_user)
{
	Datum		result;

	(void) MarkCall(fcinfo, InvalidOid, PC_CMD_MARK_REVOKED, by_user,
					by_user ? pc_arg_uuid(fcinfo, 0) : NULL, pc_arg_uuid(fcinfo, PC_ARG(0)),
					PG_NARGS() > PC_ARG(2) ? pc_arg_uuid(fcinfo, PC_ARG(2)) : NULL,
					PC_STATUS_REVOKED, true, pc_arg_text(fcinfo, PC_ARG(1)), &result);
	return result;
}

/* SQL function: provider_mark_failed(connection_id, reason) */
PG_FUNCTION_INFO_V1(provider_mark_failed);

/* provider_mark_failed by connection id (MarkFailed). */
Datum
provider_mark_failed(PG_FUNCTION_ARGS)
{
	return MarkFailed(fcinfo, false);
}

/* SQL function: provider_mark_failed(user_id, connection_id, reason) */
PG_FUNCTION_INFO_V1(provider_mark_failed_of_user);

/* provider_mark_failed by owner and connection id (MarkFailed). */
Datum
provider_mark_failed_of_user(PG_FUNCTION_ARGS)
{
	return MarkFailed(fcinfo, true);
}

/* SQL function: provider_mark_expired(connection_id, lease_token) */
PG_FUNCTION_INFO_V1(provider_mark_expired);

/* provider_mark_expired by connection id (MarkExpired). */
Datum
provider_mark_expired(PG_FUNCTION_ARGS)
{
	return MarkExpired(fcinfo, false);
}

/* SQL function: provider_mark_expired(user_id, connection_id, lease_token) */
PG_FUNCTION_INFO_V1(provider_mark_expired_of_user);

/* provider_mark_expired by owner and connection id (MarkExpired). */
Datum
provider_mark_expired_of_user(PG_FUNCTION_ARGS)
{
	return MarkExpired(fcinfo, true);
}

/* SQL function: provider_mark_revoked(connection_id, reason, lease_token) */
PG_FUNCTION_INFO_V1(provider_mark_revoked);

/* provider_mark_revoked by connection id (MarkRevoked). */
Datum
provider_mark_revoked(PG_FUNCTION_ARGS)
{
	return MarkRevoked(fcinfo, false);
}

/* SQL function: provider_mark_revoked(user_id, connection_id, reason, lease_token) */
PG_FUNCTION_INFO_V1(provider_mark_revoked_of_user);

/* provider_mark_revoked by owner and connection id (MarkRevoked). */
Datum
provider_mark_revoked_of_user(PG_FUNCTION_ARGS)
{
	return MarkRevoked(fcinfo, true);
}

/*
 * provider_record_sync, both forms: note that data was synchronised from an
 * active connection: last_sync_at. A success writes no events; a failure
 * (not found, not_active) writes Attempted and Failed like any other call.
 * By connection id alone on Citus, the owner is found first (every shard).
 */
static Datum
RecordSync(FunctionCallInfo fcinfo, bool by_user)
{
	PcCall		call;
	const pg_uuid_t *user_id = by_user ? pc_arg_uuid(fcinfo, 0) : NULL;
	const pg_uuid_t *id = pc_arg_uuid(fcinfo, PC_ARG(0));
	PcConnectionRow row;
	bool		found = false;
	bool		looked = false;
	Datum		values[3];

	pc_call_begin(&call, fcinfo, PC_CMD_RECORD_SYNC);
	call.audit_success = false;
	call.result_connection_id = id;
	call.event.connection_id = id;
	if (id != NULL && !by_user && pc_citus_distributed())
	{
		looked = true;
		if ((found = pc_find_connection(id, NULL, &row)))
			user_id = &row.user_id;
	}
	if (id != NULL && (user_id != NULL || (!by_user && !looked)))
	{
		values[0] = UUIDPGetDatum(id);
		values[1] = TimestampTzGetDatum(pc_now());
		values[2] = UUIDPGetDatum(user_id);
		if (SPI_execute_plan(pc_statement_plan(user_id ? &pc_record_sync_user : &pc_record_sync),
							 values, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not update provider connection");
		if (SPI_processed > 0)
			return pc_call_finish(&call, fcinfo);
		found = pc_find_connection(id, user_id, &row);
	}

	/* A failure: its events say what the connection was. */
	pc_call_describe(&call, found ? &row : NULL);
	if (!found && by_user)
		call.event.user_id = user_id;
	pc_call_attempted(&call);
	if (by_user && !pc_check_user(&call, user_id))
		;						/* its failure is recorded */
	else if (id == NULL)
		pc_call_fail_null(&call, "connection_id");
	else if (!found)
		pc_call_fail(&call, PC_RESULT_CONNECTION_NOT_FOUND, NULL);
	else
		pc_call_fail(&call, PC_RESULT_NOT_ACTIVE, NULL);
	return pc_call_finish(&call, fcinfo);
}

/* SQL function: provider_record_sync(connection_id) */
PG_FUNCTION_INFO_V1(provider_record_sync);

/* provider_record_sync by connection id (RecordSync). */
Datum
provider_record_sync(PG_FUNCTION_ARGS)
{
	return RecordSync(fcinfo, false);
}

/* SQL function: provider_record_sync(user_id, connection_id) */
PG_FUNCTION_INFO_V1(provider_record_sync_of_user);

/* provider_record_sync by owner and connection id (RecordSync). */
Datum
provider_record_sync_of_user(PG_FUNCTION_ARGS)
{
	return RecordSync(fcinfo, true);
}

/* How a batch job (MarkBatches) selects its rows and what it makes of them. */
typedef struct BatchJob
{
	const char *argname;		/* its interval argument, for the errors */
	const char *negative_detail;	/* why a negative one is refused */
	PcStatement *select;		/* shaped like pc_overdue */
	PcStatement *select_distributed;	/* the same on Citus */
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
		if (SPI_execute_plan(pc_statement_plan(pc_citus_distributed() ? job->select_distributed : job->select),
							 args, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read provider connections");
		batch = SPI_tuptable;
		n = SPI_processed;
		for (i = 0; i < n; i++)
		{
			pg_uuid_t	id;
			pg_uuid_t	user_id;

			memcpy(&id, DatumGetUUIDP(SPI_getbinval(batch->vals[i], batch->tupdesc, 1, &isnull)),
				   sizeof(pg_uuid_t));
			memcpy(&user_id, DatumGetUUIDP(SPI_getbinval(batch->vals[i], batch->tupdesc, 3, &isnull)),
				   sizeof(pg_uuid_t));
			oldcxt = MemoryContextSwitchTo(rowcxt);
			if (MarkCall(NULL, nsp, job->command, true, &user_id, &id, NULL, job->to, false, job->reason, NULL))
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
		&pc_overdue, &pc_overdue_distributed, PC_CMD_MARK_EXPIRED, PC_STATUS_EXPIRED, NULL
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
		&pc_abandoned, &pc_abandoned_distributed, PC_CMD_MARK_FAILED, PC_STATUS_FAILED, "abandoned"
	};

	PG_RETURN_INT64(MarkBatches(fcinfo, &job));
}
