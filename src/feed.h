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

extern Oid	pc_feed_schema(void);
extern int64 pc_feed_assign(Oid nsp, int64 *notified_upto);
extern int	pc_feed_execute_indexed(SPIPlanPtr plan, Datum *args, const char *nulls);
extern int64 pc_feed_notify_rows(SPITupleTable *tab, uint64 n, int64 *notified_upto, bool all,
								 int64 shard_id);

#endif							/* PC_FEED_H */
