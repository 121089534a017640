/*
 * feed_shards.h
 *		The event feed of a Citus install: a round per local shard
 *		(feed_shards.c), run by the node's worker.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#ifndef PC_FEED_SHARDS_H
#define PC_FEED_SHARDS_H

#include "postgres.h"
#include "datatype/timestamp.h"

extern void pc_feed_shards_init(void);
extern bool pc_feed_distributed(Oid nsp);
extern int64 pc_feed_shards_assign(Oid nsp, bool notify);
extern int64 pc_feed_shards_purge(Oid nsp, TimestampTz before, int64 up_to, int32 batch);
extern bool pc_feed_shards_flagging(void);

#endif							/* PC_FEED_SHARDS_H */
