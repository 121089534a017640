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

/* Most notifications one round sends; the worker comes back for the rest. */
#define PC_FEED_NOTIFY_BATCH 10000

extern Oid	pc_feed_schema(void);
extern int64 pc_feed_assign(Oid nsp, int64 *notified_upto);

#endif							/* PC_FEED_H */
