/*
 * retention.c
 *		provider_purge_events: ageing the append-only audit log out.
 *
 * The audit log and the feed positions refuse UPDATE, DELETE and TRUNCATE
 * from every role (append_only.c). Retention is the one exception, and it
 * only goes through this function: it removes, in batches, the audit rows
 * older than a time AND at or below a feed position, with their positions.
 * The position bound is what keeps the purge from losing anything a
 * consumer has not passed: pass the smallest position your consumers have
 * stored. Rows not numbered yet are never removed. The highest position
 * removed raises the purge horizon (provider_feed_horizon): a consumer
 * below it is told by provider_events_since that it missed events, and
 * provider_feed_head() never returns less. The purge records
 * itself as a ProviderEventsPurged event with its counts, but on a logical
 * replication subscriber, whose log holds only the publisher's events (and
 * whose audit ids are the publisher's: replication.c).
 *
 * Not granted to PUBLIC (README, "Operations"): the owner grants EXECUTE to
 * the role that runs the job.
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
#include "utils/timestamp.h"

#include "clock.h"
#include "events.h"
#include "plans.h"
#include "replication.h"
#include "retention.h"
#include "feed_shards.h"

/* Audit rows removed per statement: a batch's locks and WAL stay bounded. */
#define PC_PURGE_BATCH 10000

/* While provider_purge_events deletes: the append-only trigger lets its rows go. */
static bool pc_purging = false;

/*
 * One batch: the oldest positions at or below $2, at most $3, up to the
 * first whose audit row is not older than $1, and their audit rows.
 * Returns how many audit rows went and the highest position removed (NULL:
 * none). Stopping at the first younger event keeps what a purge removes a
 * prefix of the feed: positions follow commit order, occurred_at the time
 * of writing, so an old event of a long transaction can sit after younger
 * ones, and removing it alone would put the horizon above events that are
 * still there (a consumer skipping to it would miss them).
 */
static PcStatement pc_purge_batch = {
	"WITH firsts AS ("
	"  SELECT p.global_position, p.audit_id, a.occurred_at OPERATOR(pg_catalog.<) $1 AS old"
	"   FROM %1$s.provider_event_positions p"
	"   JOIN %1$s.provider_audit_log a ON a.id OPERATOR(pg_catalog.=) p.audit_id"
	"  WHERE p.global_position OPERATOR(pg_catalog.<=) $2"
	"  ORDER BY p.global_position LIMIT $3),"
	" cut AS (SELECT pg_catalog.min(y.global_position) AS at FROM firsts y WHERE NOT y.old),"
	" victims AS ("
	"  SELECT f.global_position, f.audit_id FROM firsts f, cut"
	"   WHERE cut.at IS NULL OR f.global_position OPERATOR(pg_catalog.<) cut.at),"
	" gone AS ("
	"  DELETE FROM %1$s.provider_event_positions p USING victims v"
	"   WHERE p.global_position OPERATOR(pg_catalog.=) v.global_position"
	"  RETURNING p.audit_id, p.global_position),"
	" removed AS ("
	"  DELETE FROM %1$s.provider_audit_log a USING gone g"
	"   WHERE a.id OPERATOR(pg_catalog.=) g.audit_id"
	"  RETURNING g.global_position)"
	" SELECT pg_catalog.count(*), pg_catalog.max(global_position) FROM removed",
	3, {TIMESTAMPTZOID, INT8OID, INT4OID}
};

/*
 * Raise the purge horizon to $1 (never lower it). The row exists from the
 * first purge on; until then the horizon is 0.
 */
static PcStatement pc_raise_horizon = {
	"INSERT INTO %1$s.provider_feed_horizon AS h (purged_up_to) VALUES ($1)"
	" ON CONFLICT (singleton) DO UPDATE"
	" SET purged_up_to = pg_catalog.int8larger(h.purged_up_to, excluded.purged_up_to)",
	1, {INT8OID}
};

/* Whether provider_purge_events is deleting right now in this backend. */
bool
pc_purge_in_progress(void)
{
	return pc_purging;
}

/* Record the purge: one ProviderEventsPurged event with what it removed. */
static void
RecordPurge(int64 removed, TimestampTz before, int64 up_to_position)
{
	PcEvent		ev;
	StringInfoData details;

	initStringInfo(&details);
	appendStringInfo(&details, "\"audit_rows\":" INT64_FORMAT ",\"positions\":" INT64_FORMAT,
					 removed, removed);
	/* pc_json_text_member puts the comma before its member. */
	pc_json_text_member(&details, "before", timestamptz_to_str(before));
	appendStringInfo(&details, ",\"up_to_position\":" INT64_FORMAT, up_to_position);

	memset(&ev, 0, sizeof(ev));
	ev.command = PC_CMD_PURGE;
	ev.details = details.data;
	pc_write_notice(&ev);
}

/* SQL function: provider_purge_events(before timestamptz, up_to_position bigint) */
PG_FUNCTION_INFO_V1(provider_purge_events);

/*
 * Remove the audit rows that occurred before `before` and whose feed
 * position is at most up_to_position, with their positions, in feed order
 * up to the first event that is not older than `before` (a prefix of the
 * feed, see pc_purge_batch), in batches of PC_PURGE_BATCH; record the purge
 * as an event. Returns how many audit rows
 * went. NULL arguments and a negative position are errors: a retention job
 * that lost its parameters must not guess.
 */
Datum
provider_purge_events(PG_FUNCTION_ARGS)
{
	TimestampTz before;
	int64		up_to;
	volatile int64 removed = 0;
	volatile int64 horizon = 0;
	Datum		args[3];

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("provider_purge_events needs both before and up_to_position")));
	before = PG_GETARG_TIMESTAMPTZ(0);
	up_to = PG_GETARG_INT64(1);
	if (up_to < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("up_to_position must not be negative")));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	pc_plans_use_schema(get_func_namespace(fcinfo->flinfo->fn_oid));
	args[0] = TimestampTzGetDatum(before);
	args[1] = Int64GetDatum(up_to);
	args[2] = Int32GetDatum(PC_PURGE_BATCH);

	pc_purging = true;
	PG_TRY();
	{
		/* On Citus: the shards placed on this node, each its own feed (feed_shards.c). */
		if (pc_citus_distributed())
			removed = pc_feed_shards_purge(get_func_namespace(fcinfo->flinfo->fn_oid), before, up_to,
										   PC_PURGE_BATCH);
		else
		{
			for (;;)
			{
				bool		isnull;
				int64		batch;
				int64		highest;

				if (SPI_execute_plan(pc_statement_plan(&pc_purge_batch), args, NULL, false, 0) != SPI_OK_SELECT ||
					SPI_processed != 1)
					elog(ERROR, "could not purge provider_connections events");
				batch = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
				highest = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
				if (!isnull)
					horizon = Max(horizon, highest);
				removed += batch;
				if (batch < PC_PURGE_BATCH)
					break;
				CHECK_FOR_INTERRUPTS();
			}
		}
	}
	PG_FINALLY();
	{
		pc_purging = false;
	}
	PG_END_TRY();

	/*
	 * In the purge's transaction: a reader sees the rows or the horizon. A
	 * database still at 1.3 (the library updated, not the extension) has no
	 * horizon to keep.
	 */
	if (horizon > 0 && !pc_citus_distributed() &&
		OidIsValid(get_relname_relid("provider_feed_horizon", get_func_namespace(fcinfo->flinfo->fn_oid))))
	{
		Datum		harg[1];

		harg[0] = Int64GetDatum(horizon);
		if (SPI_execute_plan(pc_statement_plan(&pc_raise_horizon), harg, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not record the purge horizon");
	}

	/* A subscriber's log holds the publisher's events, and its audit ids. */
	if (!pc_replica_subscribed(get_func_namespace(fcinfo->flinfo->fn_oid)))
		RecordPurge(removed, before, up_to);
	SPI_finish();
	PG_RETURN_INT64(removed);
}
