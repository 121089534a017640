/*
 * replication.h
 *		Logical replication of the extension's tables: what the guard, the
 *		commands and the feed do differently on a subscriber.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#ifndef PC_REPLICATION_H
#define PC_REPLICATION_H

#include "postgres.h"
#include "fmgr.h"
#include "nodes/nodes.h"

/*
 * Whether this process applies changes a publisher committed: a logical
 * replication apply (or table synchronization) worker.
 */
extern bool pc_replica_applying(void);

/*
 * Whether this database subscribes to one of the extension's tables in
 * schema nsp: it is a subscriber, whose changes come from its publisher.
 */
extern bool pc_replica_subscribed(Oid nsp);

/*
 * Raise an error (SQLSTATE 25006) naming the subscription and its
 * publisher when this database subscribes to one of the extension's tables
 * in the schema of the function being called. Every SQL function that
 * writes to them calls it first, before it writes anything.
 */
extern void pc_refuse_on_subscriber(FunctionCallInfo fcinfo);

/* The same for a write described by what ("UPDATE of ..."), in schema nsp. */
extern void pc_refuse_on_subscriber_in(Oid nsp, const char *what);

/* Where the feed's positions come from, in a schema (pc_feed_source). */
typedef enum PcFeedSource
{
	PC_FEED_LOCAL,				/* numbered here, by rounds (feed.c) */
	PC_FEED_REPLICATED,			/* replicated from the publisher, readable */
	PC_FEED_NOT_READY			/* replicated, not readable (yet) */
} PcFeedSource;

/*
 * Where the positions of the feed in schema nsp come from. reader: the
 * caller is about to read the feed, and an error is raised instead of
 * returning PC_FEED_NOT_READY.
 */
extern PcFeedSource pc_feed_source(Oid nsp, bool reader);

/* Install the utility hook that brings the worker at CREATE SUBSCRIPTION. */
extern void pc_replication_init(void);

#endif							/* PC_REPLICATION_H */
