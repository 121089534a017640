/*
 * feed_shards.c
 *		The event feed of a Citus install (provider_distribute): one feed per
 *		shard of provider_audit_log, numbered by the worker of the node that
 *		holds the shard.
 *
 * There is no snapshot, and so no commit order, across nodes: the rounds of
 * feed.c hold within one node only. So on a distributed install each
 * node's worker runs a round per audit shard placed on that node, on the
 * shard tables themselves (provider_audit_log_<shard>, and the co-located
 * provider_event_positions_<shard>, which holds the shard's positions and
 * moves with it), keeping the round's snapshot facts per placement in the
 * node's own provider_feed_shard_state. A shard's events are in commit order
 * within their shard, so per user; a consumer reads each shard's feed with
 * provider_shard_events_since on the node that holds it.
 *
 * Moves. Citus moves and splits a shard under its metadata lock, taken
 * ExclusiveLock on every node; a round takes it ShareLock first and then
 * checks the placement is still here, so a move's cutover waits for a round
 * in progress and no round numbers a shard that has left. The positions
 * travel with their rows. A placement is new on its node after a move: its
 * first round numbers every visible row without a position, whatever xid
 * it carries (the rows came with the old node's xids), and fixes the
 * placement's floor, the clock in microseconds then, kept in its state
 * row: every position the placement gives is above both the shard's
 * highest and that floor. That keeps positions rising across a move, and a
 * split's children above every position their parent gave (as long as it
 * numbered fewer than one event per microsecond since its own floor), also
 * the child that holds none of the parent's last events and gets no new
 * one before its first round; positions are gap-free within a placement,
 * not across a move.
 *
 * A placement's state row also names its audit shard table: Citus keeps a
 * placement's id when a shard moves away and back, so a node whose worker
 * did not run while the shard was away finds its old row, with xids of
 * its own from before; the table is a new one, and the row starts afresh
 * as a new placement's.
 *
 * Notifications. A round that sends the worker's notifications numbers and
 * notifies in one transaction; a round that does not (notifications failed
 * and are retried later, or are held back) marks what it numbers
 * notify_pending, and so does a round that numbered more than it could
 * notify. Whatever is pending is therefore the tail of the shard's feed
 * after where its notifications stand, and it travels with its rows: a
 * node a shard moves (or splits) to starts notifying at the first pending
 * position, not at the head. The round that notifies a pending position
 * clears it.
 *
 * A round visits only the placements whose shards got events since their
 * last round (worker_dirty.c: the stamp trigger notes the shard, the
 * commit publishes it), and every placement at least every worker_naptime;
 * the state of placements that left is dropped in those full rounds.
 *
 * Purge. provider_purge_events on a distributed install purges the shards
 * placed on the node it runs on (run it on every node): per shard, the
 * prefix of its feed older than before and at most up_to_position, in
 * batches, under the same lock. Each user whose events went gets a horizon
 * row among the positions (that user, audit id 0, which joins no event) at
 * the highest position of theirs removed, so a horizon travels with its
 * user's rows through moves and splits (a split copies each row to the
 * child its user hashes to); a shard's horizon, which
 * provider_shard_events_since reads, is the highest of its users'.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "events.h"
#include "feed.h"
#include "feed_shards.h"
#include "plans.h"
#include "worker.h"

/* Citus's lock mode number for a shard's metadata lock: ShareLock. */
#define PC_SHARD_METADATA_SHARE 5

/* Microseconds between the Unix epoch and PostgreSQL's (2000-01-01). */
#define PC_UNIX_EPOCH_USECS (INT64CONST(946684800) * USECS_PER_SEC)

/* The audit shards placed on this node, each with its co-located positions shard. */
static const char *const pc_local_shards_sql =
"SELECT pl.placementid, s.shardid, ps.shardid"
" FROM pg_catalog.pg_dist_shard s"
" JOIN pg_catalog.pg_dist_placement pl ON pl.shardid OPERATOR(pg_catalog.=) s.shardid"
" JOIN pg_catalog.pg_dist_shard ps ON ps.logicalrelid OPERATOR(pg_catalog.=) $2"
"  AND ps.shardminvalue OPERATOR(pg_catalog.=) s.shardminvalue"
" JOIN pg_catalog.pg_dist_placement ppl ON ppl.shardid OPERATOR(pg_catalog.=) ps.shardid"
"  AND ppl.groupid OPERATOR(pg_catalog.=) pl.groupid"
" WHERE s.logicalrelid OPERATOR(pg_catalog.=) $1"
"  AND pl.groupid OPERATOR(pg_catalog.=) (SELECT groupid FROM pg_catalog.pg_dist_local_group)"
" ORDER BY s.shardid";

/* Whether a placement is still on this node, once its metadata lock is held. */
static const char *const pc_still_here_sql =
"SELECT 1 FROM pg_catalog.pg_dist_placement"
" WHERE placementid OPERATOR(pg_catalog.=) $1"
"  AND groupid OPERATOR(pg_catalog.=) (SELECT groupid FROM pg_catalog.pg_dist_local_group)";

/*
 * One round on one shard, as PC_ROUND_SQL in feed.c, on the shard tables
 * (%2$s audit, %3$s positions): $1 last_xmax, $2 last in-progress xids, $3
 * the round's own xid, $4 the next xid, $5 the floor positions start above,
 * $6 the placement, $7 whether what it numbers is left pending (a round that
 * does not notify). Kept as a generic plan per shard and run with
 * pc_feed_execute_indexed, like feed.c's: its only cheap paths are its
 * index probes.
 */
#define PC_SHARD_ROUND_SQL(candidates) \
	"WITH cur AS (SELECT pg_catalog.pg_current_snapshot() AS s)," \
	" cand AS MATERIALIZED (" \
	"  SELECT a.id, a.user_id FROM %1$s.%2$s a, cur WHERE " candidates ")," \
	" base AS (SELECT GREATEST(COALESCE((SELECT pg_catalog.max(global_position) FROM %1$s.%3$s), 0), $5) AS b)," \
	" numbered AS (" \
	"  INSERT INTO %1$s.%3$s (global_position, audit_id, user_id, notify_pending)" \
	"  SELECT base.b OPERATOR(pg_catalog.+) pg_catalog.row_number() OVER (ORDER BY c.id), c.id, c.user_id, $7" \
	"   FROM base, (SELECT cand.id, cand.user_id FROM cand" \
	"    WHERE NOT EXISTS (SELECT 1 FROM %1$s.%3$s p" \
	"                       WHERE p.user_id OPERATOR(pg_catalog.=) cand.user_id" \
	"                         AND p.audit_id OPERATOR(pg_catalog.=) cand.id OFFSET 0)" \
	"    ORDER BY cand.id OFFSET 0) c" \
	"  RETURNING global_position)," \
	" remembered AS (" \
	"  UPDATE %1$s.provider_feed_shard_state" \
	"   SET position_floor = $5, last_xmax = LEAST(pg_catalog.pg_snapshot_xmax(cur.s), $4)," \
	"   last_xip = pg_catalog.array_append(ARRAY(SELECT x FROM pg_catalog.pg_snapshot_xip(cur.s) x" \
	"                                            WHERE x OPERATOR(pg_catalog.<) $4), $3)" \
	"  FROM cur WHERE placement_id OPERATOR(pg_catalog.=) $6)" \
	" SELECT (SELECT pg_catalog.count(*) FROM numbered)," \
	"        (SELECT pg_catalog.pg_snapshot_xmax(cur.s) OPERATOR(pg_catalog.>) $4 FROM cur)"

/*
 * A shard's numbered events after $1, at most $2, shaped as feed.c's
 * PC_TO_NOTIFY_SQL, with whether each is pending after them.
 */
#define PC_SHARD_NOTIFY_PENDING_COL 14
#define PC_SHARD_TO_NOTIFY_SQL \
	"SELECT p.global_position, a.id, a.event_id, a.event_type, a.user_id, a.connection_id," \
	" a.provider_id, a.provider_slug, a.reason, a.needs_user_action, a.occurred_at," \
	" a.call_id, a.context, p.notify_pending" \
	" FROM (SELECT global_position, audit_id, user_id, notify_pending FROM %1$s.%3$s" \
	"        WHERE global_position OPERATOR(pg_catalog.>) $1" \
	"        ORDER BY global_position LIMIT $2) p," \
	" LATERAL (SELECT * FROM %1$s.%2$s a" \
	"          WHERE a.user_id OPERATOR(pg_catalog.=) p.user_id" \
	"            AND a.id OPERATOR(pg_catalog.=) p.audit_id OFFSET 0) a" \
	" ORDER BY p.global_position"

/*
 * One purge batch on one shard, as retention.c's pc_purge_batch on the
 * shard tables: $1 before, $2 up_to_position, $3 the batch size. Raises the
 * horizon row of each user whose events went (audit id 0, never lowered):
 * the old row goes and a new one comes, as the append-only trigger lets a
 * purge delete but not update (in one statement the insert does not see
 * the row its own statement deleted).
 */
#define PC_SHARD_PURGE_SQL \
	"WITH firsts AS (" \
	"  SELECT p.global_position, p.audit_id, p.user_id, a.occurred_at OPERATOR(pg_catalog.<) $1 AS old" \
	"   FROM %1$s.%3$s p" \
	"   JOIN %1$s.%2$s a ON a.user_id OPERATOR(pg_catalog.=) p.user_id AND a.id OPERATOR(pg_catalog.=) p.audit_id" \
	"  WHERE p.global_position OPERATOR(pg_catalog.<=) $2" \
	"  ORDER BY p.global_position LIMIT $3)," \
	" cut AS (SELECT pg_catalog.min(y.global_position) AS at FROM firsts y WHERE NOT y.old)," \
	" victims AS (" \
	"  SELECT f.global_position, f.audit_id, f.user_id FROM firsts f, cut" \
	"   WHERE cut.at IS NULL OR f.global_position OPERATOR(pg_catalog.<) cut.at)," \
	" gone AS (" \
	"  DELETE FROM %1$s.%3$s p USING victims v" \
	"   WHERE p.user_id OPERATOR(pg_catalog.=) v.user_id AND p.audit_id OPERATOR(pg_catalog.=) v.audit_id" \
	"  RETURNING p.user_id, p.audit_id, p.global_position)," \
	" removed AS (" \
	"  DELETE FROM %1$s.%2$s a USING gone g" \
	"   WHERE a.user_id OPERATOR(pg_catalog.=) g.user_id AND a.id OPERATOR(pg_catalog.=) g.audit_id" \
	"  RETURNING g.global_position)," \
	" reached AS (" \
	"  SELECT g.user_id, pg_catalog.max(g.global_position) AS at FROM gone g GROUP BY g.user_id)," \
	" old_horizon AS (" \
	"  DELETE FROM %1$s.%3$s h USING reached r" \
	"   WHERE h.user_id OPERATOR(pg_catalog.=) r.user_id AND h.audit_id OPERATOR(pg_catalog.=) 0" \
	"  RETURNING h.user_id, h.global_position)," \
	" new_horizon AS (" \
	"  INSERT INTO %1$s.%3$s (global_position, audit_id, user_id)" \
	"  SELECT pg_catalog.int8larger(r.at, COALESCE(o.global_position, 0)), 0, r.user_id" \
	"   FROM reached r LEFT JOIN old_horizon o ON o.user_id OPERATOR(pg_catalog.=) r.user_id" \
	"  RETURNING 1)" \
	" SELECT pg_catalog.count(*), (SELECT pg_catalog.count(*) FROM new_horizon) FROM removed"

/* One local placement of an audit shard. */
typedef struct PcShardPlacement
{
	int64		placement_id;
	int64		shard_id;
	int64		positions_shard_id;
} PcShardPlacement;

static PcShardPlacement *LocalShards(Oid nsp, uint64 *n);
static bool LockShardHere(Oid nsp, const PcShardPlacement *pl);

/*
 * The statements of a round, each prepared once per shard (or once, for
 * those that name no shard) and kept: a round runs on every local shard on
 * every wake of the worker, and planning them afresh cost more than the
 * round itself. A kept plan follows its table through a drop and create
 * (PostgreSQL replans it); the plans of shards that left are freed.
 */
typedef enum PcShardStmt
{
	PC_SS_LIST,					/* the node's shards */
	PC_SS_LOCK,					/* the shard's metadata lock */
	PC_SS_STILL_HERE,			/* the placement, after the lock */
	PC_SS_STATE_NEW,			/* a new placement's state row */
	PC_SS_STATE_LOCK,			/* the state row, locked */
	PC_SS_STATE_RESET,			/* the row of a placement whose table is new */
	PC_SS_STATE_STORE,			/* where notifications stand */
	PC_SS_NOTIFY_START,			/* where a new placement's notifications start */
	PC_SS_PENDING_CLEAR,		/* pending positions notified */
	PC_SS_PENDING_MARK,			/* positions numbered, not notified */
	PC_SS_ROUND_FIRST,
	PC_SS_ROUND_LATER,
	PC_SS_NOTIFY,				/* the numbered events to notify */
	PC_NUM_SHARD_STMTS
} PcShardStmt;

typedef struct PcShardPlanKey
{
	Oid			nsp;
	PcShardStmt kind;
	int64		shard_id;		/* 0: a statement that names no shard */
} PcShardPlanKey;

typedef struct PcShardPlanEntry
{
	PcShardPlanKey key;
	SPIPlanPtr	plan;
	uint64		used_in;		/* the last pass (pc_feed_shards_assign) that used it */
} PcShardPlanEntry;

static HTAB *pc_shard_plans = NULL;
static uint64 pc_shard_pass = 0;
static uint64 pc_last_full_pass = 0;	/* the last pass that visited every placement */

/*
 * provider_connections.test_hold_shard_notifications: tests only. The
 * worker's rounds then number each shard's feed without notifying, as
 * after a failed notification, so that a test can move a shard whose
 * events were numbered but not notified.
 */
static bool pc_test_hold_notifications = false;

/* The SQL of a kind of statement for shard pl in schema (quoted). */
static char *
ShardStmtSql(PcShardStmt kind, const char *schema, const PcShardPlacement *pl)
{
	char	   *audit = pl ? psprintf("provider_audit_log_" INT64_FORMAT, pl->shard_id) : NULL;
	char	   *positions = pl ? psprintf("provider_event_positions_" INT64_FORMAT, pl->positions_shard_id) : NULL;

	switch (kind)
	{
		case PC_SS_LIST:
			return pstrdup(pc_local_shards_sql);
		case PC_SS_LOCK:
			return pstrdup("SELECT pg_catalog.lock_shard_metadata($1, $2)");
		case PC_SS_STILL_HERE:
			return pstrdup(pc_still_here_sql);
		case PC_SS_STATE_NEW:
			return psprintf("INSERT INTO %s.provider_feed_shard_state (placement_id, shard_id, shard_relid)"
							" VALUES ($1, $2, $3) ON CONFLICT (placement_id) DO NOTHING", schema);
		case PC_SS_STATE_LOCK:
			return psprintf("SELECT last_xmax, last_xip, notified_upto, position_floor, shard_relid"
							" FROM %s.provider_feed_shard_state"
							" WHERE placement_id OPERATOR(pg_catalog.=) $1 FOR UPDATE", schema);
		case PC_SS_STATE_RESET:
			return psprintf("UPDATE %s.provider_feed_shard_state SET shard_id = $2, shard_relid = $3,"
							" last_xmax = NULL, last_xip = NULL, notified_upto = NULL, position_floor = NULL"
							" WHERE placement_id OPERATOR(pg_catalog.=) $1", schema);
		case PC_SS_STATE_STORE:
			return psprintf("UPDATE %s.provider_feed_shard_state SET notified_upto = $1"
							" WHERE placement_id OPERATOR(pg_catalog.=) $2", schema);
		case PC_SS_NOTIFY_START:
			/* Before the first pending position (its partial index), else the head. */
			return psprintf("SELECT COALESCE((SELECT pg_catalog.min(global_position) OPERATOR(pg_catalog.-) 1"
							"                  FROM %1$s.%2$s WHERE notify_pending),"
							"                 (SELECT pg_catalog.max(global_position) FROM %1$s.%2$s), 0)",
							schema, positions);
		case PC_SS_PENDING_CLEAR:
			return psprintf("UPDATE %s.%s SET notify_pending = false"
							" WHERE notify_pending AND global_position OPERATOR(pg_catalog.<=) $1",
							schema, positions);
		case PC_SS_PENDING_MARK:
			return psprintf("UPDATE %s.%s SET notify_pending = true"
							" WHERE global_position OPERATOR(pg_catalog.>) $1 AND NOT notify_pending"
							" AND audit_id OPERATOR(pg_catalog.<>) 0",
							schema, positions);
		case PC_SS_ROUND_FIRST:
			return psprintf(PC_SHARD_ROUND_SQL(PC_ROUND_FIRST), schema, audit, positions);
		case PC_SS_ROUND_LATER:
			return psprintf(PC_SHARD_ROUND_SQL(PC_ROUND_LATER), schema, audit, positions);
		case PC_SS_NOTIFY:
			return psprintf(PC_SHARD_TO_NOTIFY_SQL, schema, audit, positions);
		case PC_NUM_SHARD_STMTS:
			break;
	}
	elog(ERROR, "unknown feed shard statement %d", (int) kind);
	return NULL;				/* keep compiler quiet */
}

/* The parameter types of each kind of statement. */
static const struct
{
	int			nargs;
	Oid			types[7];
	bool		per_shard;
}			pc_shard_stmt_args[PC_NUM_SHARD_STMTS] = {
	[PC_SS_LIST] = {2, {REGCLASSOID, REGCLASSOID}, false},
	[PC_SS_LOCK] = {2, {INT4OID, INT8ARRAYOID}, false},
	[PC_SS_STILL_HERE] = {1, {INT8OID}, false},
	[PC_SS_STATE_NEW] = {3, {INT8OID, INT8OID, OIDOID}, false},
	[PC_SS_STATE_LOCK] = {1, {INT8OID}, false},
	[PC_SS_STATE_RESET] = {3, {INT8OID, INT8OID, OIDOID}, false},
	[PC_SS_STATE_STORE] = {2, {INT8OID, INT8OID}, false},
	[PC_SS_NOTIFY_START] = {0, {InvalidOid}, true},
	[PC_SS_PENDING_CLEAR] = {1, {INT8OID}, true},
	[PC_SS_PENDING_MARK] = {1, {INT8OID}, true},
	[PC_SS_ROUND_FIRST] = {7, {XID8OID, XID8ARRAYOID, XID8OID, XID8OID, INT8OID, INT8OID, BOOLOID}, true},
	[PC_SS_ROUND_LATER] = {7, {XID8OID, XID8ARRAYOID, XID8OID, XID8OID, INT8OID, INT8OID, BOOLOID}, true},
	[PC_SS_NOTIFY] = {2, {INT8OID, INT8OID}, true},
};

/* The kept plan of a kind of statement in schema nsp, for shard pl when it names one. */
static SPIPlanPtr
ShardPlan(PcShardStmt kind, Oid nsp, const PcShardPlacement *pl)
{
	PcShardPlanKey key;
	PcShardPlanEntry *entry;
	bool		found;

	if (pc_shard_plans == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(PcShardPlanKey);
		ctl.entrysize = sizeof(PcShardPlanEntry);
		pc_shard_plans = hash_create("provider_connections shard plans", 64, &ctl,
									 HASH_ELEM | HASH_BLOBS);
	}
	memset(&key, 0, sizeof(key));
	key.nsp = nsp;
	key.kind = kind;
	key.shard_id = pc_shard_stmt_args[kind].per_shard ? pl->shard_id : 0;
	entry = hash_search(pc_shard_plans, &key, HASH_ENTER, &found);
	if (!found)
		entry->plan = NULL;
	if (entry->plan == NULL)
	{
		char	   *sql = ShardStmtSql(kind, quote_identifier(get_namespace_name(nsp)), pl);
		SPIPlanPtr	plan = SPI_prepare_cursor(sql, pc_shard_stmt_args[kind].nargs,
											  (Oid *) pc_shard_stmt_args[kind].types,
											  CURSOR_OPT_GENERIC_PLAN);

		if (plan == NULL || SPI_keepplan(plan) != 0)
		{
			hash_search(pc_shard_plans, &key, HASH_REMOVE, NULL);
			elog(ERROR, "could not prepare feed shard statement \"%s\": %s", sql,
				 SPI_result_code_string(SPI_result));
		}
		entry->plan = plan;
	}
	entry->used_in = pc_shard_pass;
	return entry->plan;
}

/* Free the plans of shards not used since pass before, the last full round before this one (they left the node). */
static void
ForgetOldPlans(uint64 before)
{
	HASH_SEQ_STATUS seq;
	PcShardPlanEntry *entry;

	if (pc_shard_plans == NULL)
		return;
	hash_seq_init(&seq, pc_shard_plans);
	while ((entry = hash_seq_search(&seq)) != NULL)
		if (entry->key.shard_id != 0 && entry->used_in < before)
		{
			if (entry->plan)
				SPI_freeplan(entry->plan);
			hash_search(pc_shard_plans, &entry->key, HASH_REMOVE, NULL);
		}
}

/* Run a kept plan; raise what on failure. The caller is connected to SPI. */
static void
RunPlan(SPIPlanPtr plan, Datum *values, const char *nulls, int expect, const char *what)
{
	if (SPI_execute_plan(plan, values, nulls, false, 0) != expect)
		elog(ERROR, "could not %s", what);
}

/* Run sql (a statement run rarely: a purge) with its arguments; raise what on failure. */
static void
Run(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls, int expect,
	const char *what)
{
	if (SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0) != expect)
		elog(ERROR, "could not %s", what);
}

/*
 * The shard's state row, locked; made empty (a first round) for a new
 * placement, and for one whose audit shard table is not the one the row
 * was about (Citus kept the placement's id through a move away and back:
 * the row's xids are from before, and the rows came back with another
 * node's).
 */
static HeapTuple
LockShardState(Oid nsp, const PcShardPlacement *pl, Oid relid)
{
	Datum		values[3];
	bool		isnull;
	Datum		stored;

	values[0] = Int64GetDatum(pl->placement_id);
	values[1] = Int64GetDatum(pl->shard_id);
	values[2] = ObjectIdGetDatum(relid);
	RunPlan(ShardPlan(PC_SS_STATE_LOCK, nsp, pl), values, NULL, SPI_OK_SELECT, "lock the shard's feed state");
	if (SPI_processed == 1)
	{
		stored = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull);
		if (!isnull && DatumGetObjectId(stored) == relid)
			return SPI_tuptable->vals[0];
		RunPlan(ShardPlan(PC_SS_STATE_RESET, nsp, pl), values, NULL, SPI_OK_UPDATE,
				"reset the shard's feed state");
	}
	else
		RunPlan(ShardPlan(PC_SS_STATE_NEW, nsp, pl), values, NULL, SPI_OK_INSERT, "create the shard's feed state");
	RunPlan(ShardPlan(PC_SS_STATE_LOCK, nsp, pl), values, NULL, SPI_OK_SELECT, "lock the shard's feed state");
	if (SPI_processed != 1)
		elog(ERROR, "the feed state of shard " INT64_FORMAT " is missing", pl->shard_id);
	return SPI_tuptable->vals[0];
}

/* The int8 the kept plan kind returns for shard pl (0: none). */
static int64
ShardValue(PcShardStmt kind, Oid nsp, const PcShardPlacement *pl, const char *what)
{
	bool		isnull;
	Datum		d;

	RunPlan(ShardPlan(kind, nsp, pl), NULL, NULL, SPI_OK_SELECT, what);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetInt64(d);
}

/*
 * Set while this backend runs its own UPDATE of notify_pending: the
 * append-only trigger (append_only.c) lets it pass.
 */
static bool pc_shard_flagging = false;

/* Whether the UPDATE running is a round's of notify_pending. */
bool
pc_feed_shards_flagging(void)
{
	return pc_shard_flagging;
}

/* Run kind (PC_SS_PENDING_CLEAR or _MARK) on shard pl with position at. */
static void
FlagPending(PcShardStmt kind, Oid nsp, const PcShardPlacement *pl, int64 at)
{
	Datum		value = Int64GetDatum(at);

	pc_shard_flagging = true;
	PG_TRY();
	{
		if (pc_feed_execute_indexed(ShardPlan(kind, nsp, pl), &value, NULL) != SPI_OK_UPDATE)
			elog(ERROR, "could not mark the shard's pending notifications");
	}
	PG_FINALLY();
	{
		pc_shard_flagging = false;
	}
	PG_END_TRY();
}

/* The OID of audit shard shard_id's table in schema nsp (InvalidOid: none here). */
static Oid
AuditShardRelid(Oid nsp, int64 shard_id)
{
	return get_relname_relid(psprintf("provider_audit_log_" INT64_FORMAT, shard_id), nsp);
}

/*
 * Number one shard's committed events and, when notify, queue the
 * notifications of those left to the worker. Returns how many events it
 * numbered and went through; 0 for a placement that left this node. Sets
 * *left_work when the shard has work for the next round (xids it left, a
 * full notification batch, or notifications not sent): worker_dirty.c
 * then keeps the shard in the next round's set.
 *
 * What a round numbers without notifying it is left notify_pending; so is
 * what a notifying round numbered beyond the notifications it sends (more
 * than a batch): what is pending is always the tail of the feed after the
 * stored notified_upto, and a placement without a stored position (new on
 * this node, or the first round) starts before the first pending one.
 */
static int64
ShardRound(Oid nsp, const PcShardPlacement *pl, bool notify, bool *left_work)
{
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	HeapTuple	state;
	TupleDesc	desc;
	bool		isnull;
	bool		first;
	int64		numbered;
	int64		notified = 0;
	int64		upto;
	int64		stored;
	int64		floor_at;
	Datum		d;
	Oid			relid;

	/* A move's cutover holds this lock exclusively on every node: wait for it, then look again. */
	if (!LockShardHere(nsp, pl))
		return 0;

	/* Looked up again under the lock: a move may have replaced the table meanwhile. */
	relid = AuditShardRelid(nsp, pl->shard_id);
	if (!OidIsValid(relid))
		elog(ERROR, "the table of audit shard " INT64_FORMAT " is missing", pl->shard_id);
	state = LockShardState(nsp, pl, relid);
	desc = SPI_tuptable->tupdesc;
	values[0] = SPI_getbinval(state, desc, 1, &isnull);
	nulls[0] = isnull ? 'n' : ' ';
	first = isnull;
	values[1] = SPI_getbinval(state, desc, 2, &isnull);
	nulls[1] = isnull ? 'n' : ' ';
	d = SPI_getbinval(state, desc, 3, &isnull);
	stored = isnull ? -1 : DatumGetInt64(d);
	d = SPI_getbinval(state, desc, 4, &isnull);
	floor_at = (first || isnull) ? GetCurrentTimestamp() + PC_UNIX_EPOCH_USECS : DatumGetInt64(d);

	/*
	 * A placement's notifications start where they stand; for one new here,
	 * before what the node it came from numbered without notifying (pending),
	 * else at the head as its first round finds it.
	 */
	upto = stored >= 0 ? stored :
		ShardValue(PC_SS_NOTIFY_START, nsp, pl, "read where the shard's notifications start");

	values[2] = FullTransactionIdGetDatum(GetTopFullTransactionId());
	values[3] = FullTransactionIdGetDatum(ReadNextFullTransactionId());
	values[4] = Int64GetDatum(floor_at);
	values[5] = Int64GetDatum(pl->placement_id);
	values[6] = BoolGetDatum(!notify);
	if (pc_feed_execute_indexed(ShardPlan(first ? PC_SS_ROUND_FIRST : PC_SS_ROUND_LATER, nsp, pl),
								values, nulls) != SPI_OK_SELECT)
		elog(ERROR, "could not assign the shard's feed positions");
	numbered = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	/* Xids from $4 on were left to the next round: make it come now (feed.c says why). */
	if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)))
	{
		SetLatch(MyLatch);
		*left_work = true;
	}

	/*
	 * Notifications held or backing off: what this round numbers, and what
	 * earlier rounds left pending, waits for a notifying round that must
	 * visit this shard again.
	 */
	if (!notify)
		*left_work = true;

	if (notify)
	{
		Datum		nvalues[2];
		bool		had_pending = false;
		uint64		i;

		nvalues[0] = Int64GetDatum(upto);
		nvalues[1] = Int64GetDatum(PC_FEED_NOTIFY_BATCH);
		if (pc_feed_execute_indexed(ShardPlan(PC_SS_NOTIFY, nsp, pl), nvalues, NULL) != SPI_OK_SELECT)
			elog(ERROR, "could not read the shard's events to notify");
		for (i = 0; i < SPI_processed && !had_pending; i++)
			had_pending = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
													 PC_SHARD_NOTIFY_PENDING_COL, &isnull));
		notified = pc_feed_notify_rows(SPI_tuptable, SPI_processed, &upto, false, pl->shard_id);
		if (had_pending)
			FlagPending(PC_SS_PENDING_CLEAR, nsp, pl, upto);
		/* A full batch: what is left after it waits for the next round, pending meanwhile. */
		if (notified >= PC_FEED_NOTIFY_BATCH)
		{
			FlagPending(PC_SS_PENDING_MARK, nsp, pl, upto);
			*left_work = true;	/* ... which must visit this shard again */
		}
	}

	if (upto != stored)
	{
		Datum		svalues[2];

		svalues[0] = Int64GetDatum(upto);
		svalues[1] = Int64GetDatum(pl->placement_id);
		RunPlan(ShardPlan(PC_SS_STATE_STORE, nsp, pl), svalues, NULL, SPI_OK_UPDATE,
				"store where the shard's notifications stand");
	}
	return Max(numbered, notified);
}

/* The placements of audit shards on this node, in shard order, in the caller's context; *n gets how many. */
static PcShardPlacement *
LocalShards(Oid nsp, uint64 *n)
{
	Datum		values[2];
	PcShardPlacement *shards;
	uint64		i;
	bool		isnull;

	values[0] = ObjectIdGetDatum(get_relname_relid("provider_audit_log", nsp));
	values[1] = ObjectIdGetDatum(get_relname_relid("provider_event_positions", nsp));
	RunPlan(ShardPlan(PC_SS_LIST, nsp, NULL), values, NULL, SPI_OK_SELECT, "list the node's shards");
	*n = SPI_processed;
	shards = SPI_palloc(sizeof(PcShardPlacement) * Max(*n, 1));
	for (i = 0; i < *n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		shards[i].placement_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		shards[i].shard_id = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		shards[i].positions_shard_id = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
	}
	return shards;
}

/*
 * Lock a shard's metadata as Citus's writes do (a move's cutover waits for
 * us, we wait for it) and say whether its placement is still on this node.
 */
static bool
LockShardHere(Oid nsp, const PcShardPlacement *pl)
{
	Datum		lockvalues[2];
	Datum		shard = Int64GetDatum(pl->shard_id);
	Datum		placement = Int64GetDatum(pl->placement_id);

	lockvalues[0] = Int32GetDatum(PC_SHARD_METADATA_SHARE);
	lockvalues[1] = PointerGetDatum(construct_array(&shard, 1, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	RunPlan(ShardPlan(PC_SS_LOCK, nsp, pl), lockvalues, NULL, SPI_OK_SELECT, "lock the shard's metadata");
	RunPlan(ShardPlan(PC_SS_STILL_HERE, nsp, pl), &placement, NULL, SPI_OK_SELECT, "read the shard's placement");
	return SPI_processed > 0;
}

/*
 * provider_purge_events on a distributed install (retention.c, which lets
 * the deletes pass the append-only triggers while it runs): purge each
 * audit shard placed on this node, a prefix of its feed older than before
 * and at most up_to, in batches of batch, raising the horizon rows of the
 * users whose events went.
 * Returns how many events went. The caller is connected to SPI.
 */
int64
pc_feed_shards_purge(Oid nsp, TimestampTz before, int64 up_to, int32 batch)
{
	const char *schema = quote_identifier(get_namespace_name(nsp));
	PcShardPlacement *shards;
	uint64		n;
	uint64		i;
	int64		removed = 0;
	/* Runs in the caller's transaction: the setting ends with the purge, not with it. */
	int			save_nestlevel = NewGUCNestLevel();

	(void) set_config_option("citus.enable_manual_changes_to_shards", "on", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	shards = LocalShards(nsp, &n);
	for (i = 0; i < n; i++)
	{
		char	   *audit = psprintf("provider_audit_log_" INT64_FORMAT, shards[i].shard_id);
		char	   *positions = psprintf("provider_event_positions_" INT64_FORMAT, shards[i].positions_shard_id);
		char	   *sql = psprintf(PC_SHARD_PURGE_SQL, schema, audit, positions);
		Oid			types[3] = {TIMESTAMPTZOID, INT8OID, INT4OID};
		Datum		values[3];

		if (!LockShardHere(nsp, &shards[i]))
			continue;
		values[0] = TimestampTzGetDatum(before);
		values[1] = Int64GetDatum(up_to);
		values[2] = Int32GetDatum(batch);
		for (;;)
		{
			bool		isnull;
			int64		went;

			Run(sql, 3, types, values, NULL, SPI_OK_SELECT, "purge the shard's events");
			went = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
			removed += went;
			if (went < batch)
				break;
			CHECK_FOR_INTERRUPTS();
		}
	}
	AtEOXact_GUC(true, save_nestlevel);
	return removed;
}

/* Define the settings of this file; called from _PG_init when preloaded. */
void
pc_feed_shards_init(void)
{
	DefineCustomBoolVariable("provider_connections.test_hold_shard_notifications",
							 "Holds the worker's notifications of a distributed install's feeds, for tests only.",
							 "The rounds keep numbering; what they number is notified once it is off again.",
							 &pc_test_hold_notifications,
							 false,
							 PGC_SIGHUP,
							 GUC_NOT_IN_SAMPLE | GUC_NO_SHOW_ALL,
							 NULL, NULL, NULL);
}

/* Whether the extension in schema nsp has its tables distributed by Citus: then its feed is per shard. */
bool
pc_feed_distributed(Oid nsp)
{
	pc_plans_use_schema(nsp);
	return pc_citus_distributed();
}

/*
 * The worker's round on a distributed install in schema nsp: a round per
 * audit shard placed on this node (none on a coordinator without shards).
 * notify: also queue the notifications left to the worker. The caller is
 * in a transaction with an active snapshot. Returns how many events were
 * numbered or notified.
 */
int64
pc_feed_shards_assign(Oid nsp, bool notify)
{
	const char *schema = quote_identifier(get_namespace_name(nsp));
	PcShardPlacement *shards;
	uint64		n;
	uint64		i;
	int64		total = 0;
	PcDirtyShards dirty;
	bool		every;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* The round writes into the shard tables directly, as Citus's own executor does. */
	(void) set_config_option("citus.enable_manual_changes_to_shards", "on", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
	/* Before the first snapshot: what commits after this is left for the next round. */
	every = !pc_worker_take_dirty_shards(&dirty);
	shards = LocalShards(nsp, &n);
	pc_shard_pass++;
	notify = notify && !pc_test_hold_notifications;
	for (i = 0; i < n; i++)
	{
		Oid			relid = AuditShardRelid(nsp, shards[i].shard_id);
		bool		left_work = false;

		/* Nothing committed there since its last round (worker_dirty.c). */
		if (!every && OidIsValid(relid) && !pc_worker_shard_dirty(&dirty, relid))
			continue;
		total += ShardRound(nsp, &shards[i], notify, &left_work);
		if (left_work)
			pc_worker_keep_shard(relid);
	}
	if (!every)
	{
		SPI_finish();
		return total;
	}
	/* A full round visited every listed placement: the plans it did not use are of shards that left. */
	ForgetOldPlans(pc_last_full_pass);
	pc_last_full_pass = pc_shard_pass;
	/* The state of placements that left this node (a placement that comes back is a new one). */
	Run(psprintf("DELETE FROM %s.provider_feed_shard_state s WHERE NOT EXISTS"
				 " (SELECT 1 FROM pg_catalog.pg_dist_placement pl"
				 "   WHERE pl.placementid OPERATOR(pg_catalog.=) s.placement_id"
				 "     AND pl.groupid OPERATOR(pg_catalog.=) (SELECT groupid FROM pg_catalog.pg_dist_local_group))",
				 schema),
		0, NULL, NULL, NULL, SPI_OK_DELETE, "forget the feed state of shards that left");
	SPI_finish();
	return total;
}
