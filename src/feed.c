/*
 * feed.c
 *		Positions for the event feed, assigned after the writers commit.
 *
 * Rounds number, in one transaction each, the audit rows whose writers
 * committed since the previous round (PgQ's ticker technique), and the
 * worker's rounds also send the notifications left to it. The worker
 * (worker_main.c) and provider_events_since (provider_feed_assign) run
 * them; this file calls no worker but pc_worker_sync, its backend-side
 * API. Why positions are final once visible: src/README.md, "The event feed".
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/uuid.h"
#include "utils/xid8.h"

#include "events.h"
#include "feed.h"
#include "plans.h"
#include "replication.h"
#include "worker.h"

/*
 * The state row, locked for the round, by schema (before 1.4, and 1.4 on)
 * and by who asks: a reader waits (NOWAIT-free, so rounds queue up), the
 * worker leaves the round to whoever holds it (SKIP LOCKED). From 1.4 the
 * same read gives where notifications stand (StoredNotifiedUpto): one
 * statement fewer per round.
 */
#define PC_LOCK_STATE_SQL(notified, lock) \
	"SELECT last_xmax, last_xip, " notified " FROM %1$s.provider_feed_state FOR UPDATE" lock

static PcStatement pc_lock_state[2][2] = {
	{
		{PC_LOCK_STATE_SQL("NULL::pg_catalog.int8", " SKIP LOCKED"), 0, {InvalidOid}},
		{PC_LOCK_STATE_SQL("NULL::pg_catalog.int8", ""), 0, {InvalidOid}},
	},
	{
		{PC_LOCK_STATE_SQL("notified_upto", " SKIP LOCKED"), 0, {InvalidOid}},
		{PC_LOCK_STATE_SQL("notified_upto", ""), 0, {InvalidOid}},
	},
};

/*
 * One round, in one statement so that cur is the statement's own snapshot:
 * number what committed since the last round and remember what cur could
 * not see. $1 last_xmax, $2 last in-progress xids, $3 the assigner's own
 * xid (cur counts it as committed, but it is not), $4 the next xid as read
 * just before the statement, an upper bound for the index scan: xids from
 * $4 on are left to the next round, which is told so by storing
 * least(cur.xmax, $4) and only the in-progress xids below $4.
 *
 * The plan is generic and kept for the assigner's life, so its shape must
 * not depend on how big the tables were when it was made (a worker plans
 * it when the log may be empty, then runs it for days). Each part
 * therefore has a single index path, whatever the estimates:
 *	- cand is materialized and unordered, so the only way to find its rows
 *	  is the (xid) index, bounded by parameters ($1, $4, $2); the audit id
 *	  order that would favour a full scan of the primary key is asked for
 *	  outside it;
 *	- the "not numbered yet" test is a correlated subquery that OFFSET 0
 *	  keeps from becoming a join: planned alone, with the audit id as a
 *	  parameter, it is one probe of the audit_id key per candidate. As an
 *	  anti join, a plan made while provider_event_positions was empty
 *	  scanned that whole index for every candidate (seconds per round at
 *	  ten thousand events);
 *	- the OFFSET 0 of the ordered subquery keeps it from being flattened,
 *	  so positions follow audit ids.
 */
#define PC_ROUND_SQL(candidates, position_user, same_user) \
	"WITH cur AS (SELECT pg_catalog.pg_current_snapshot() AS s)," \
	" cand AS MATERIALIZED (" \
	"  SELECT a.id, a.user_id FROM %1$s.provider_audit_log a, cur WHERE " candidates ")," \
	" numbered AS (" \
	"  INSERT INTO %1$s.provider_event_positions (global_position, audit_id" position_user ")" \
	"  SELECT pg_catalog.nextval('%1$s.provider_event_position_seq'), c.id" position_user " FROM (" \
	"   SELECT cand.id, cand.user_id FROM cand" \
	"    WHERE NOT EXISTS (SELECT 1 FROM %1$s.provider_event_positions p" \
	"                       WHERE p.audit_id OPERATOR(pg_catalog.=) cand.id" same_user " OFFSET 0)" \
	"   ORDER BY cand.id OFFSET 0) c" \
	"  RETURNING global_position)," \
	" remembered AS (" \
	"  UPDATE %1$s.provider_feed_state" \
	"   SET last_xmax = LEAST(pg_catalog.pg_snapshot_xmax(cur.s), $4)," \
	"   last_xip = pg_catalog.array_append(ARRAY(SELECT x FROM pg_catalog.pg_snapshot_xip(cur.s) x" \
	"                                            WHERE x OPERATOR(pg_catalog.<) $4), $3)" \
	"  FROM cur)" \
	" SELECT (SELECT pg_catalog.count(*) FROM numbered)," \
	"        (SELECT pg_catalog.pg_snapshot_xmax(cur.s) OPERATOR(pg_catalog.>) $4 FROM cur)"



/*
 * From 1.4 on a position carries its event's user_id (its key, so that on
 * Citus it lives in its event's shard), and is found by it.
 */
#define PC_POSITION_USER ", user_id"
#define PC_SAME_USER " AND p.user_id OPERATOR(pg_catalog.=) cand.user_id"

/* The rounds, later and first, by schema: before 1.4, and 1.4 on. */
static PcStatement pc_rounds[2][2] = {
	{
		{PC_ROUND_SQL(PC_ROUND_LATER, "", ""), 4, {XID8OID, XID8ARRAYOID, XID8OID, XID8OID}},
		{PC_ROUND_SQL(PC_ROUND_FIRST, "", ""), 4, {XID8OID, XID8ARRAYOID, XID8OID, XID8OID}},
	},
	{
		{PC_ROUND_SQL(PC_ROUND_LATER, PC_POSITION_USER, PC_SAME_USER), 4, {XID8OID, XID8ARRAYOID, XID8OID, XID8OID}},
		{PC_ROUND_SQL(PC_ROUND_FIRST, PC_POSITION_USER, PC_SAME_USER), 4, {XID8OID, XID8ARRAYOID, XID8OID, XID8OID}},
	},
};

/*
 * Where the worker's notifications have got to (1.4 schemas), kept in the
 * state row with each round that moves it, so that a worker starting
 * afresh (a server restart, a slot taken anew) goes on from there: the
 * events a reader numbered while no worker ran are still notified, once.
 * NULL until a round first sets it to the head as that round found it.
 * It is read with the state row's lock (pc_lock_state).
 */
static PcStatement pc_set_notified = {
	"UPDATE %1$s.provider_feed_state SET notified_upto = $1",
	1, {INT8OID}
};

static void StoreNotifiedUpto(int64 upto);

/* The newest position, where a new worker's notifications start. */
static PcStatement pc_feed_head = {
	"SELECT COALESCE(pg_catalog.max(global_position), 0)"
	" FROM %1$s.provider_event_positions",
	0, {InvalidOid}
};

/* Numbered events to notify, in feed order: $1 after this position, $2 at most. */
enum
{
	Anum_pc_notify_position = 1,
	Anum_pc_notify_audit_id,
	Anum_pc_notify_event_id,
	Anum_pc_notify_event_type,
	Anum_pc_notify_user_id,
	Anum_pc_notify_connection_id,
	Anum_pc_notify_provider_id,
	Anum_pc_notify_provider_slug,
	Anum_pc_notify_reason,
	Anum_pc_notify_needs_user_action,
	Anum_pc_notify_occurred_at,
	Anum_pc_notify_call_id,
	Anum_pc_notify_context
};

/* The columns a payload is built from (pc_event_payload); call_id is 1.3 on. */
#define PC_TO_NOTIFY_SQL(call_id) \
	"SELECT p.global_position, a.id, a.event_id, a.event_type, a.user_id, a.connection_id," \
	" a.provider_id, a.provider_slug, a.reason, a.needs_user_action, a.occurred_at," \
	" " call_id ", a.context" \
	" FROM (SELECT global_position, audit_id FROM %1$s.provider_event_positions" \
	"        WHERE global_position OPERATOR(pg_catalog.>) $1" \
	"        ORDER BY global_position LIMIT $2) p," \
	/* One primary key probe per position, whatever the plan's estimates (see PC_ROUND_SQL). */ \
	" LATERAL (SELECT * FROM %1$s.provider_audit_log a" \
	"          WHERE a.id OPERATOR(pg_catalog.=) p.audit_id OFFSET 0) a" \
	" ORDER BY p.global_position"

static PcStatement pc_to_notify = {
	PC_TO_NOTIFY_SQL("a.call_id"),
	2, {INT8OID, INT8OID}
};

/* The same for a 1.2 schema, whose audit rows have no call_id. */
static PcStatement pc_to_notify_1_2 = {
	PC_TO_NOTIFY_SQL("NULL::pg_catalog.uuid"),
	2, {INT8OID, INT8OID}
};

/*
 * The schema of the extension in the current database when it is installed
 * at a version whose feed is assigned after commit (1.2 on), else InvalidOid.
 * The caller is in a transaction, and has taken no lock on our tables yet:
 * this takes a share lock on the extension itself first, which DROP
 * EXTENSION (and ALTER EXTENSION) take exclusively before touching any of
 * its tables. A round that starts first holds DROP off until it commits; one
 * that starts after waits for the DROP holding nothing, and then finds the
 * extension gone. Without it the round's table locks and the DROP's could
 * deadlock.
 */
Oid
pc_feed_schema(void)
{
	Oid			ext = get_extension_oid("provider_connections", true);
	Oid			nsp;

	if (!OidIsValid(ext))
		return InvalidOid;
	LockDatabaseObject(ExtensionRelationId, ext, 0, AccessShareLock);
	/* Dropped (or dropped and created again) while we waited. */
	if (get_extension_oid("provider_connections", true) != ext)
		return InvalidOid;
	nsp = pc_extension_schema("provider_connections");
	if (!OidIsValid(nsp) || !OidIsValid(get_relname_relid("provider_feed_state", nsp)))
		return InvalidOid;
	return nsp;
}

/*
 * Run a feed statement with sequential scans, hash and merge joins
 * discouraged and no parallel workers (and so no JIT, which the penalties
 * would trigger), as a function's SET clause would, for both its planning
 * and its run. A round must cost what it numbers, whatever the statistics
 * say: when a few transactions wrote most of the log, xid = ANY($2) looks
 * unselective and the planner would scan the whole log (in parallel, too:
 * 27 ms for an empty round), and a plan made while the tables were small
 * would keep scanning them whole as they grow. With these settings the
 * statements' only cheap paths are their index probes (see PC_ROUND_SQL).
 */
static int
ExecuteIndexed(PcStatement *stmt, Datum *args, const char *nulls)
{
	return pc_feed_execute_indexed(pc_statement_plan(stmt), args, nulls);
}

/*
 * Execute a kept generic plan of the feed (a round, the events to notify)
 * as ExecuteIndexed does: also for feed_shards.c's rounds on Citus shards.
 */
int
pc_feed_execute_indexed(SPIPlanPtr plan, Datum *args, const char *nulls)
{
	int			save_nestlevel = NewGUCNestLevel();
	int			rc;

	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_hashjoin", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_mergejoin", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("max_parallel_workers_per_gather", "0", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	/* Not read-only: a round writes, and notify must see the round's positions. */
	rc = SPI_execute_plan(plan, args, nulls, false, 0);
	AtEOXact_GUC(true, save_nestlevel);
	return rc;
}

/* A uuid column of an SPI row, copied into the current context; NULL for NULL. */
static pg_uuid_t *
UuidColumn(HeapTuple tup, TupleDesc desc, int attnum)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, attnum, &isnull);
	pg_uuid_t  *out;

	if (isnull)
		return NULL;
	out = palloc(sizeof(pg_uuid_t));
	memcpy(out, DatumGetUUIDP(d), sizeof(pg_uuid_t));
	return out;
}

/*
 * Go through the numbered events after *notified_upto, in feed order, at
 * most PC_FEED_NOTIFY_BATCH, and queue the notification of those the worker
 * sends: every one when all, else those their writer left to the worker
 * (pc_event_left_to_worker). Advance *notified_upto past them all. Returns
 * how many were gone through. The notifications go out when the caller's
 * transaction commits.
 */
static int64
NotifyNumbered(int64 *notified_upto, bool all)
{
	Datum		args[2];
	PcStatement *stmt = pc_schema_level() >= PC_SCHEMA_1_3 ? &pc_to_notify : &pc_to_notify_1_2;

	args[0] = Int64GetDatum(*notified_upto);
	args[1] = Int64GetDatum(PC_FEED_NOTIFY_BATCH);
	if (ExecuteIndexed(stmt, args, NULL) != SPI_OK_SELECT)
		elog(ERROR, "could not read the events to notify");
	return pc_feed_notify_rows(SPI_tuptable, SPI_processed, notified_upto, all, 0);
}

/*
 * Queue the notifications of n numbered events read by a statement shaped
 * like PC_TO_NOTIFY_SQL (in feed order), those the worker sends: every one
 * when all, else those their writer left to the worker. Advance
 * *notified_upto past them all; shard_id, when not 0, goes into each
 * payload (a Citus shard's feed, feed_shards.c). Returns n.
 */
int64
pc_feed_notify_rows(SPITupleTable *tab, uint64 n, int64 *notified_upto, bool all, int64 shard_id)
{
	uint64		i;

	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = tab->vals[i];
		TupleDesc	desc = tab->tupdesc;
		PcWrittenEvent w;
		bool		isnull;
		char	   *type;
		Datum		context;
		Jsonb	   *ctx;

		w.global_position = DatumGetInt64(SPI_getbinval(tup, desc, Anum_pc_notify_position, &isnull));
		context = SPI_getbinval(tup, desc, Anum_pc_notify_context, &isnull);
		ctx = isnull ? NULL : DatumGetJsonbP(context);
		*notified_upto = w.global_position;
		if (!all && !pc_event_left_to_worker(ctx))
			continue;

		memset(&w, 0, sizeof(w));
		w.global_position = *notified_upto;
		w.shard_id = shard_id;
		type = SPI_getvalue(tup, desc, Anum_pc_notify_event_type);
		if (type == NULL || !pc_event_from_type(type, &w.event.command, &w.event.outcome))
			elog(ERROR, "unknown event_type \"%s\" in the audit log", type ? type : "");
		w.audit_id = DatumGetInt64(SPI_getbinval(tup, desc, Anum_pc_notify_audit_id, &isnull));
		memcpy(&w.event_id, DatumGetUUIDP(SPI_getbinval(tup, desc, Anum_pc_notify_event_id, &isnull)),
			   sizeof(pg_uuid_t));
		w.event.user_id = UuidColumn(tup, desc, Anum_pc_notify_user_id);
		/* The nil UUID stands for no user (1.4 on): payloads say null, as the caller's did. */
		if (w.event.user_id != NULL && memcmp(w.event.user_id, &pc_nil_user, sizeof(pg_uuid_t)) == 0)
			w.event.user_id = NULL;
		w.event.connection_id = UuidColumn(tup, desc, Anum_pc_notify_connection_id);
		w.event.provider_id = UuidColumn(tup, desc, Anum_pc_notify_provider_id);
		w.event.provider_slug = SPI_getvalue(tup, desc, Anum_pc_notify_provider_slug);
		w.event.reason = SPI_getvalue(tup, desc, Anum_pc_notify_reason);
		w.event.needs_user_action =
			DatumGetBool(SPI_getbinval(tup, desc, Anum_pc_notify_needs_user_action, &isnull)) && !isnull;
		w.event.call_id = UuidColumn(tup, desc, Anum_pc_notify_call_id);
		w.occurred_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, Anum_pc_notify_occurred_at, &isnull));
		Async_Notify(PC_CHANNEL, pc_event_payload(&w, ctx));
	}
	return (int64) n;
}

/* The newest position assigned. */
static int64
FeedHead(void)
{
	bool		isnull;

	if (SPI_execute_plan(pc_statement_plan(&pc_feed_head), NULL, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the feed head");
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Where notifications stand in the locked state row (1.4 schemas), given
 * its notified_upto as pc_lock_state read it: the stored position, or, the
 * first time (NULL), the head as it is now, which is stored (every event
 * numbered from now on is to be notified). Returns -1 on older schemas,
 * where the worker starts from the head.
 */
static int64
StoredNotifiedUpto(Datum value, bool isnull)
{
	int64		upto;

	if (pc_schema_level() < PC_SCHEMA_1_4)
		return -1;
	if (!isnull)
		return DatumGetInt64(value);
	upto = FeedHead();
	StoreNotifiedUpto(upto);
	return upto;
}

/* Keep where the worker's notifications have got to (1.4 schemas). */
static void
StoreNotifiedUpto(int64 upto)
{
	Datum		arg = Int64GetDatum(upto);

	if (pc_schema_level() < PC_SCHEMA_1_4)
		return;
	if (SPI_execute_plan(pc_statement_plan(&pc_set_notified), &arg, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update provider_feed_state");
}

/*
 * One round of assignment in schema nsp (see the file header). wait: block
 * on a round in progress elsewhere rather than skip it. notified_upto: when
 * not NULL (the worker), also go through the numbered events after it and
 * notify those left to the worker, whatever the mode is now; a negative
 * value means "from the head as it was before this round". On a
 * subscriber, whose callers notify nothing, the worker notifies every
 * replicated event in worker mode, and none otherwise.
 * Returns how many events were numbered or notified, whichever is more,
 * or -1 if the round was skipped because another assigner holds the feed.
 */
static int64
AssignRound(Oid nsp, bool wait, int64 *notified_upto)
{
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	bool		isnull;
	int64		numbered = -1;
	int64		notified = 0;
	HeapTuple	state;
	TupleDesc	desc;
	Datum		value;
	int			rc;
	int64		stored;
	PcFeedSource source;
	int			with_user;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	pc_plans_use_schema(nsp);
	with_user = pc_schema_level() >= PC_SCHEMA_1_4 ? 1 : 0;

	/*
	 * On Citus the events live in shards on the workers, where this round's
	 * statements cannot run (no distributed plan for them): the feed of a
	 * distributed install is not numbered yet (docs/citus.md). The worker
	 * waits quietly; a reader is told.
	 */
	if (pc_citus_distributed())
	{
		SPI_finish();
		if (notified_upto == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("the provider_connections feed is not available when its tables are distributed by Citus"),
					 errhint("Read the audit log, or see docs/citus.md for the feed on Citus.")));
		return 0;
	}

	/* A subscriber's positions are the publisher's: number none, notify them. */
	source = pc_feed_source(nsp, false);
	if (source != PC_FEED_LOCAL)
	{
		if (source == PC_FEED_REPLICATED && notified_upto != NULL)
		{
			if (!pc_events_notify_by_worker())
				*notified_upto = -1;	/* start afresh when worker mode comes */
			else
			{
				if (*notified_upto < 0)
					*notified_upto = FeedHead();
				notified = NotifyNumbered(notified_upto, true);
			}
		}
		SPI_finish();
		return notified;
	}

	if (SPI_execute_plan(pc_statement_plan(&pc_lock_state[with_user][wait ? 1 : 0]),
						 NULL, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not lock provider_feed_state");
	if (SPI_processed == 1)
	{
		state = SPI_tuptable->vals[0];
		desc = SPI_tuptable->tupdesc;
		args[0] = SPI_getbinval(state, desc, 1, &isnull);
		nulls[0] = isnull ? 'n' : ' ';
		args[1] = SPI_getbinval(state, desc, 2, &isnull);
		nulls[1] = isnull ? 'n' : ' ';
		args[2] = FullTransactionIdGetDatum(GetTopFullTransactionId());

		/*
		 * Every round (a reader's too) makes sure notifications have a
		 * starting point before it numbers anything; a worker without one
		 * of its own in memory takes the stored one.
		 */
		value = SPI_getbinval(state, desc, 3, &isnull);
		stored = StoredNotifiedUpto(value, isnull);
		if (notified_upto != NULL && *notified_upto < 0)
			*notified_upto = stored >= 0 ? stored : FeedHead();
		args[3] = FullTransactionIdGetDatum(ReadNextFullTransactionId());
		if (nulls[0] == 'n')
			rc = SPI_execute_plan(pc_statement_plan(&pc_rounds[with_user][1]), args, nulls, false, 0);
		else
			rc = ExecuteIndexed(&pc_rounds[with_user][0], args, nulls);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "could not assign event positions");
		numbered = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

		/*
		 * Xids from $4 on were left to the next round; if some may have
		 * committed already, make sure that round comes now rather than at
		 * the next wake: their commits' wakes may have been used up by this
		 * round.
		 */
		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)))
			SetLatch(MyLatch);
		if (notified_upto != NULL)
		{
			notified = NotifyNumbered(notified_upto, false);
			if (*notified_upto != stored)
				StoreNotifiedUpto(*notified_upto);
		}
	}
	SPI_finish();
	return Max(numbered, notified);
}

/*
 * One round for the background worker: skips (returns -1) if another
 * assigner holds the feed. The caller is in a transaction with an active
 * snapshot, and has called pc_feed_schema in it.
 */
int64
pc_feed_assign(Oid nsp, int64 *notified_upto)
{
	return AssignRound(nsp, false, notified_upto);
}

/* SQL function: provider_feed_assign() */
PG_FUNCTION_INFO_V1(provider_feed_assign);

/*
 * Called by provider_events_since before it reads: make every event that
 * committed before this call visible in the feed. When a worker serves the
 * database it asks the worker for a round and waits for it; otherwise it
 * runs the round itself, waiting for one in progress elsewhere. A read-only
 * or repeatable-read transaction, or a standby, reads what is numbered, and
 * so does a subscriber, whose positions replicate (replication.c; it raises
 * an error while they cannot be read whole). Returns how many events this
 * call numbered itself.
 */
Datum
provider_feed_assign(PG_FUNCTION_ARGS)
{
	if (pc_feed_source(get_func_namespace(fcinfo->flinfo->fn_oid), true) != PC_FEED_LOCAL)
		PG_RETURN_INT64(0);
	if (RecoveryInProgress() || XactReadOnly || IsolationUsesXactSnapshot())
		PG_RETURN_INT64(0);
	if (pc_worker_sync())
		PG_RETURN_INT64(0);
	PG_RETURN_INT64(Max(AssignRound(get_func_namespace(fcinfo->flinfo->fn_oid), true, NULL), 0));
}

/* SQL function: provider_feed_resume(after_position, skip_purged, purged_up_to) */
PG_FUNCTION_INFO_V1(provider_feed_resume);

/*
 * Called by provider_events_since, in the snapshot of its read: the
 * position to read on from. purged_up_to is the purge horizon (NULL before
 * any purge: provider_feed_horizon). A position below it has missed events
 * a purge removed (at least the one at the horizon): that is an error,
 * with SQLSTATE 72000 (snapshot_too_old: what the reader's position needs
 * is gone, as for a snapshot older than what vacuum kept), unless the
 * caller asked to skip them, in which case it reads on after the horizon.
 */
Datum
provider_feed_resume(PG_FUNCTION_ARGS)
{
	int64		after;
	int64		horizon;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	after = PG_GETARG_INT64(0);
	if (PG_ARGISNULL(2) || (horizon = PG_GETARG_INT64(2)) <= after)
		PG_RETURN_INT64(after);
	if (PG_GETARG_BOOL(1))
		PG_RETURN_INT64(horizon);
	ereport(ERROR,
			(errcode(PC_ERRCODE_BEHIND_PURGE),
			 errmsg("feed position " INT64_FORMAT " is behind the purge horizon " INT64_FORMAT,
					after, horizon),
			 errdetail("Events after position " INT64_FORMAT " up to position " INT64_FORMAT
					   " were removed by provider_purge_events, so a consumer at position "
					   INT64_FORMAT " has missed some of them.",
					   after, horizon, after),
			 errhint("To continue after the purged events, call provider_events_since with skip_purged => true.")));
	PG_RETURN_NULL();			/* not reached */
}
