/*
 * feed.h
 *		Positions for the event feed (provider_events_since), assigned after
 *		the writers commit.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#ifndef PC_FEED_H
#define PC_FEED_H

#include "postgres.h"
#include "executor/spi.h"

/* Most notifications one round sends; the worker comes back for the rest. */
#define PC_FEED_NOTIFY_BATCH 10000

/*
 * The SQLSTATE of a read behind the purge horizon: 72000, class 72
 * "snapshot failure" (what the position needs is gone). PostgreSQL 17
 * removed its name, ERRCODE_SNAPSHOT_TOO_OLD, with old_snapshot_threshold;
 * the code itself stays ours to raise.
 */
#define PC_ERRCODE_BEHIND_PURGE MAKE_SQLSTATE('7','2','0','0','0')

/*
 * The candidates of a round (feed.c, and feed_shards.c on each Citus shard),
 * over the audit rows a with the round's snapshot cur: $1 last_xmax, $2 the
 * last in-progress xids, $3 the round's own xid, $4 the next xid.
 *
 * Later rounds: what committed since the last.
 */
#define PC_ROUND_LATER \
	"((a.xid OPERATOR(pg_catalog.>=) $1 AND a.xid OPERATOR(pg_catalog.<) $4)" \
	" OR a.xid OPERATOR(pg_catalog.=) ANY ($2))" \
	" AND pg_catalog.pg_visible_in_snapshot(a.xid, cur.s)" \
	" AND a.xid OPERATOR(pg_catalog.<>) $3"

/*
 * The first round: every visible row without a position but the
 * assigner's own, which its snapshot shows although they are not committed
 * (a reader that wrote events earlier in its transaction). Rows without an
 * xid (written into a 1.1 schema, before the feed) are numbered too, and
 * on Citus a placement's first round on its node numbers the rows that came
 * with a move whatever xid they carry (the old node's).
 */
#define PC_ROUND_FIRST \
	"$1 IS NULL AND $2 IS NULL AND $4 IS NOT NULL" \
	" AND (a.xid IS NULL OR a.xid OPERATOR(pg_catalog.<>) $3)"

extern Oid	pc_feed_schema(void);
extern int64 pc_feed_assign(Oid nsp, int64 *notified_upto);
extern int	pc_feed_execute_indexed(SPIPlanPtr plan, Datum *args, const char *nulls);
extern int64 pc_feed_notify_rows(SPITupleTable *tab, uint64 n, int64 *notified_upto, bool all,
								 int64 shard_id);

#endif							/* PC_FEED_H */
