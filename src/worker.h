/*
 * worker.h
 *		What the rest of the extension calls of the background workers: the
 *		setup from _PG_init, and the backend-side API (worker_api.c). The
 *		design is in src/README.md.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#ifndef PC_WORKER_H
#define PC_WORKER_H

#include "postgres.h"

/* Setup from _PG_init; all but pc_worker_api_init only when preloaded. */
extern void pc_worker_api_init(void);	/* worker_api.c: the commit callback */
extern void pc_worker_init(void);	/* worker_shmem.c: settings, shared memory */
extern void pc_worker_hold_init(void);	/* worker_hold.c: utility hook */
extern void pc_launcher_init(void); /* launcher.c: register the launcher */

/* worker_api.c: what backends call. */
extern void pc_worker_note_event(bool for_worker);
extern void pc_worker_wake(bool round_needed);
extern bool pc_worker_serving(void);
extern bool pc_worker_database_listed(void);
extern bool pc_worker_sync(void);

/*
 * worker_dirty.c: which audit shards of a distributed install got events
 * since the worker's last round: a bitmap indexed by the shard table's OID.
 */
#define PC_DIRTY_SHARD_BITS 1024
#define PC_DIRTY_SHARD_WORDS (PC_DIRTY_SHARD_BITS / 32)
typedef struct PcDirtyShards
{
	uint32		words[PC_DIRTY_SHARD_WORDS];
} PcDirtyShards;

extern void pc_worker_note_shard(Oid relid);	/* backends: the stamp trigger */
extern bool pc_worker_take_dirty_shards(PcDirtyShards *set);	/* the worker's rounds */
extern bool pc_worker_shard_dirty(const PcDirtyShards *set, Oid relid);
extern void pc_worker_keep_shard(Oid relid);
extern void pc_worker_shards_settled(void);

#endif							/* PC_WORKER_H */
