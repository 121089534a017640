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
 * it carries (the rows came with the old node's xids), from above both the
 * shard's highest position and the clock in microseconds. That floor keeps
 * positions rising across a move and a split's children above their parent
 * (which numbered fewer than one event per microsecond since its own
 * floor); positions are gap-free within a placement, not across a move.
 *
 * Purge. provider_purge_events on a distributed install purges the shards
 * placed on the node it runs on (run it on every node): per shard, the
 * prefix of its feed older than before and at most up_to_position, in
 * batches, under the same lock. The shard's purge horizon is a positions
 * row of its own (the nil user, audit id 0, which joins no event), so it
 * travels with the shard as its positions do; provider_shard_events_since
 * reads it.
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
#include "utils/lsyscache.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "events.h"
#include "feed.h"
#include "feed_shards.h"
#include "plans.h"

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
 * (%2$s audit, %3$s positions): $1 last_xmax, $2 last in-progress xids (both
 * NULL: the placement's first round, every visible row without a position),
 * $3 the round's own xid, $4 the next xid, $5 the floor positions start
 * above, $6 the placement.
 */
#define PC_SHARD_ROUND_SQL \
	"WITH cur AS (SELECT pg_catalog.pg_current_snapshot() AS s)," \
	" cand AS MATERIALIZED (" \
	"  SELECT a.id, a.user_id FROM %1$s.%2$s a, cur WHERE" \
	"   CASE WHEN $1 IS NULL THEN a.xid IS NULL OR a.xid OPERATOR(pg_catalog.<>) $3" \
	"   ELSE ((a.xid OPERATOR(pg_catalog.>=) $1 AND a.xid OPERATOR(pg_catalog.<) $4)" \
	"         OR a.xid OPERATOR(pg_catalog.=) ANY ($2))" \
	"        AND pg_catalog.pg_visible_in_snapshot(a.xid, cur.s)" \
	"        AND a.xid OPERATOR(pg_catalog.<>) $3 END)," \
	" base AS (SELECT GREATEST(COALESCE((SELECT pg_catalog.max(global_position) FROM %1$s.%3$s), 0), $5) AS b)," \
	" numbered AS (" \
	"  INSERT INTO %1$s.%3$s (global_position, audit_id, user_id)" \
	"  SELECT base.b OPERATOR(pg_catalog.+) pg_catalog.row_number() OVER (ORDER BY c.id), c.id, c.user_id" \
	"   FROM base, (SELECT cand.id, cand.user_id FROM cand" \
	"    WHERE NOT EXISTS (SELECT 1 FROM %1$s.%3$s p" \
	"                       WHERE p.user_id OPERATOR(pg_catalog.=) cand.user_id" \
	"                         AND p.audit_id OPERATOR(pg_catalog.=) cand.id OFFSET 0)" \
	"    ORDER BY cand.id OFFSET 0) c" \
	"  RETURNING global_position)," \
	" remembered AS (" \
	"  UPDATE %1$s.provider_feed_shard_state" \
	"   SET last_xmax = LEAST(pg_catalog.pg_snapshot_xmax(cur.s), $4)," \
	"   last_xip = pg_catalog.array_append(ARRAY(SELECT x FROM pg_catalog.pg_snapshot_xip(cur.s) x" \
	"                                            WHERE x OPERATOR(pg_catalog.<) $4), $3)" \
	"  FROM cur WHERE placement_id OPERATOR(pg_catalog.=) $6)" \
	" SELECT (SELECT pg_catalog.count(*) FROM numbered)," \
	"        (SELECT pg_catalog.pg_snapshot_xmax(cur.s) OPERATOR(pg_catalog.>) $4 FROM cur)"

/* A shard's numbered events after $1, at most $2, shaped as feed.c's PC_TO_NOTIFY_SQL. */
#define PC_SHARD_TO_NOTIFY_SQL \
	"SELECT p.global_position, a.id, a.event_id, a.event_type, a.user_id, a.connection_id," \
	" a.provider_id, a.provider_slug, a.reason, a.needs_user_action, a.occurred_at," \
	" a.call_id, a.context" \
	" FROM (SELECT global_position, audit_id, user_id FROM %1$s.%3$s" \
	"        WHERE global_position OPERATOR(pg_catalog.>) $1" \
	"        ORDER BY global_position LIMIT $2) p," \
	" LATERAL (SELECT * FROM %1$s.%2$s a" \
	"          WHERE a.user_id OPERATOR(pg_catalog.=) p.user_id" \
	"            AND a.id OPERATOR(pg_catalog.=) p.audit_id OFFSET 0) a" \
	" ORDER BY p.global_position"

/*
 * One purge batch on one shard, as retention.c's pc_purge_batch on the
 * shard tables: $1 before, $2 up_to_position, $3 the batch size.
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
	"  RETURNING g.global_position)" \
	" SELECT pg_catalog.count(*), pg_catalog.max(global_position) FROM removed"

/* The shard's purge horizon row: the nil user's audit id 0, which no event has. */
#define PC_SHARD_HORIZON_WHERE \
	" WHERE user_id OPERATOR(pg_catalog.=) '00000000-0000-0000-0000-000000000000'" \
	" AND audit_id OPERATOR(pg_catalog.=) 0"

/* One local placement of an audit shard. */
typedef struct PcShardPlacement
{
	int64		placement_id;
	int64		shard_id;
	int64		positions_shard_id;
} PcShardPlacement;

static PcShardPlacement *LocalShards(Oid nsp, uint64 *n);
static bool LockShardHere(const PcShardPlacement *pl);

/* Run sql with its arguments; raise what on failure. The caller is connected to SPI. */
static void
Run(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls, int expect,
	const char *what)
{
	if (SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0) != expect)
		elog(ERROR, "could not %s", what);
}

/* The shard's state row, locked; made empty (a first round) for a new placement. */
static HeapTuple
LockShardState(const char *schema, const PcShardPlacement *pl)
{
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		values[2];

	values[0] = Int64GetDatum(pl->placement_id);
	values[1] = Int64GetDatum(pl->shard_id);
	Run(psprintf("INSERT INTO %s.provider_feed_shard_state (placement_id, shard_id) VALUES ($1, $2)"
				 " ON CONFLICT (placement_id) DO NOTHING", schema),
		2, types, values, NULL, SPI_OK_INSERT, "create the shard's feed state");
	Run(psprintf("SELECT last_xmax, last_xip, notified_upto FROM %s.provider_feed_shard_state"
				 " WHERE placement_id OPERATOR(pg_catalog.=) $1 FOR UPDATE", schema),
		1, types, values, NULL, SPI_OK_SELECT, "lock the shard's feed state");
	if (SPI_processed != 1)
		elog(ERROR, "the feed state of shard " INT64_FORMAT " is missing", pl->shard_id);
	return SPI_tuptable->vals[0];
}

/* The shard's highest position (0: none). */
static int64
ShardHead(const char *schema, const char *positions)
{
	bool		isnull;
	Datum		d;

	Run(psprintf("SELECT COALESCE(pg_catalog.max(global_position), 0) FROM %s.%s", schema, positions),
		0, NULL, NULL, NULL, SPI_OK_SELECT, "read the shard's feed head");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return DatumGetInt64(d);
}

/*
 * Number one shard's committed events and, when notify, queue the
 * notifications of those left to the worker. Returns how many events it
 * numbered and went through; 0 for a placement that left this node.
 */
static int64
ShardRound(const char *schema, const PcShardPlacement *pl, bool notify)
{
	char	   *audit = psprintf("provider_audit_log_" INT64_FORMAT, pl->shard_id);
	char	   *positions = psprintf("provider_event_positions_" INT64_FORMAT, pl->positions_shard_id);
	Oid			types[6] = {XID8OID, XID8ARRAYOID, XID8OID, XID8OID, INT8OID, INT8OID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	Datum		placement = Int64GetDatum(pl->placement_id);
	HeapTuple	state;
	TupleDesc	desc;
	bool		isnull;
	bool		first;
	int64		numbered;
	int64		notified = 0;
	int64		upto;
	Datum		d;

	/* A move's cutover holds this lock exclusively on every node: wait for it, then look again. */
	if (!LockShardHere(pl))
		return 0;

	state = LockShardState(schema, pl);
	desc = SPI_tuptable->tupdesc;
	values[0] = SPI_getbinval(state, desc, 1, &isnull);
	nulls[0] = isnull ? 'n' : ' ';
	first = isnull;
	values[1] = SPI_getbinval(state, desc, 2, &isnull);
	nulls[1] = isnull ? 'n' : ' ';
	d = SPI_getbinval(state, desc, 3, &isnull);
	upto = isnull ? -1 : DatumGetInt64(d);

	/* Notifications start at the head as the placement's first round finds it. */
	if (upto < 0)
		upto = ShardHead(schema, positions);

	values[2] = FullTransactionIdGetDatum(GetTopFullTransactionId());
	values[3] = FullTransactionIdGetDatum(ReadNextFullTransactionId());
	values[4] = Int64GetDatum(first ? GetCurrentTimestamp() + PC_UNIX_EPOCH_USECS : 0);
	values[5] = placement;
	Run(psprintf(PC_SHARD_ROUND_SQL, schema, audit, positions), 6, types, values, nulls,
		SPI_OK_SELECT, "assign the shard's feed positions");
	numbered = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	/* Xids from $4 on were left to the next round: make it come now (feed.c says why). */
	if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)))
		SetLatch(MyLatch);

	if (notify)
	{
		Oid			ntypes[2] = {INT8OID, INT8OID};
		Datum		nvalues[2];

		nvalues[0] = Int64GetDatum(upto);
		nvalues[1] = Int64GetDatum(PC_FEED_NOTIFY_BATCH);
		Run(psprintf(PC_SHARD_TO_NOTIFY_SQL, schema, audit, positions), 2, ntypes, nvalues, NULL,
			SPI_OK_SELECT, "read the shard's events to notify");
		notified = pc_feed_notify_rows(SPI_tuptable, SPI_processed, &upto, false, pl->shard_id);
	}
	else
		upto = ShardHead(schema, positions);

	{
		Oid			stypes[2] = {INT8OID, INT8OID};
		Datum		svalues[2];

		svalues[0] = Int64GetDatum(upto);
		svalues[1] = placement;
		Run(psprintf("UPDATE %s.provider_feed_shard_state SET notified_upto = $1"
					 " WHERE placement_id OPERATOR(pg_catalog.=) $2", schema),
			2, stypes, svalues, NULL, SPI_OK_UPDATE, "store where the shard's notifications stand");
	}
	return Max(numbered, notified);
}

/* The placements of audit shards on this node, in shard order, in the caller's context; *n gets how many. */
static PcShardPlacement *
LocalShards(Oid nsp, uint64 *n)
{
	Oid			types[2] = {REGCLASSOID, REGCLASSOID};
	Datum		values[2];
	PcShardPlacement *shards;
	uint64		i;
	bool		isnull;

	values[0] = ObjectIdGetDatum(get_relname_relid("provider_audit_log", nsp));
	values[1] = ObjectIdGetDatum(get_relname_relid("provider_event_positions", nsp));
	Run(pc_local_shards_sql, 2, types, values, NULL, SPI_OK_SELECT, "list the node's shards");
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
LockShardHere(const PcShardPlacement *pl)
{
	Oid			locktypes[2] = {INT4OID, INT8ARRAYOID};
	Datum		lockvalues[2];
	Datum		shard = Int64GetDatum(pl->shard_id);
	Oid			idtype = INT8OID;
	Datum		placement = Int64GetDatum(pl->placement_id);

	lockvalues[0] = Int32GetDatum(PC_SHARD_METADATA_SHARE);
	lockvalues[1] = PointerGetDatum(construct_array(&shard, 1, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	Run("SELECT pg_catalog.lock_shard_metadata($1, $2)", 2, locktypes, lockvalues, NULL,
		SPI_OK_SELECT, "lock the shard's metadata");
	Run(pc_still_here_sql, 1, &idtype, &placement, NULL, SPI_OK_SELECT, "read the shard's placement");
	return SPI_processed > 0;
}

/*
 * provider_purge_events on a distributed install (retention.c, which lets
 * the deletes pass the append-only triggers while it runs): purge each
 * audit shard placed on this node, a prefix of its feed older than before
 * and at most up_to, in batches of batch, and raise its horizon row.
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

	(void) set_config_option("citus.enable_manual_changes_to_shards", "on", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
	shards = LocalShards(nsp, &n);
	for (i = 0; i < n; i++)
	{
		char	   *audit = psprintf("provider_audit_log_" INT64_FORMAT, shards[i].shard_id);
		char	   *positions = psprintf("provider_event_positions_" INT64_FORMAT, shards[i].positions_shard_id);
		char	   *sql = psprintf(PC_SHARD_PURGE_SQL, schema, audit, positions);
		Oid			types[3] = {TIMESTAMPTZOID, INT8OID, INT4OID};
		Datum		values[3];
		int64		horizon = 0;

		if (!LockShardHere(&shards[i]))
			continue;
		values[0] = TimestampTzGetDatum(before);
		values[1] = Int64GetDatum(up_to);
		values[2] = Int32GetDatum(batch);
		for (;;)
		{
			bool		isnull;
			int64		went;
			Datum		top;

			Run(sql, 3, types, values, NULL, SPI_OK_SELECT, "purge the shard's events");
			went = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
			top = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
			if (!isnull)
				horizon = Max(horizon, DatumGetInt64(top));
			removed += went;
			if (went < batch)
				break;
			CHECK_FOR_INTERRUPTS();
		}
		if (horizon > 0)
		{
			Oid			htype = INT8OID;
			Datum		hvalue = Int64GetDatum(horizon);

			/* Raised, never lowered: the old row goes (a purge may delete), a new one comes. */
			Run(psprintf("WITH old AS (DELETE FROM %s.%s" PC_SHARD_HORIZON_WHERE " RETURNING global_position)"
						 " INSERT INTO %s.%s (global_position, audit_id, user_id)"
						 " SELECT pg_catalog.int8larger($1, COALESCE((SELECT pg_catalog.max(global_position) FROM old), 0)),"
						 " 0, '00000000-0000-0000-0000-000000000000'",
						 schema, positions, schema, positions),
				1, &htype, &hvalue, NULL, SPI_OK_INSERT, "record the shard's purge horizon");
		}
	}
	return removed;
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

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* The round writes into the shard tables directly, as Citus's own executor does. */
	(void) set_config_option("citus.enable_manual_changes_to_shards", "on", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
	shards = LocalShards(nsp, &n);
	for (i = 0; i < n; i++)
		total += ShardRound(schema, &shards[i], notify);
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
