/*
 * worker_internal.h
 *		What the files of the background workers share: their timings, the
 *		shared slot of each database, and the functions that look slots up.
 *		Not for the rest of the extension, which uses worker.h. The design
 *		is in src/README.md.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#ifndef PC_WORKER_INTERNAL_H
#define PC_WORKER_INTERNAL_H

#include "postgres.h"

#include "access/xact.h"
#include "datatype/timestamp.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/lwlock.h"

#include "worker.h"

#define PC_LAUNCHER_NAPTIME_MS 5000 /* launcher rescans at least this often */
#define PC_RESTART_DELAY_MS 5000	/* after a worker died of an error */
#define PC_HOLD_GRACE_MS 2000	/* a held database's worker gets SIGTERM after */
#define PC_HOLD_WAIT_MS 10000	/* ... and the command goes on after */
#define PC_SYNC_START_MS 50		/* pc_worker_sync gives up on a silent worker after */
#define PC_SYNC_TIMEOUT_MS 2000 /* ... and on a busy one after */
#define PC_ROUND_INTERVAL_MS 2	/* rounds start at most this often */
#define PC_SHARD_ROUND_INTERVAL_MS 20	/* ... on a distributed install (worker_main.c says why) */
#define PC_WARN_INTERVAL_MS 60000	/* repeated round failures: one WARNING per */
#define PC_EXTRA_SLOTS 32		/* slots beyond max_worker_processes */
#define PC_MAX_HOLDS 8			/* databases one transaction can hold */
#define PC_LWLOCK_TRANCHE "provider_connections workers"
#define PC_LAST_ERROR_LEN 256	/* bytes of a round's error kept for provider_stats */

/*
 * The lifecycle of one database's worker, as the launcher sees it (the
 * diagram is in src/README.md). Only the launcher changes it, through
 * DbTransition (launcher.c), which checks the state it leaves; the slot of
 * the database carries a copy for the worker and the backends to read.
 */
typedef enum PcDbState
{
	PC_DB_IDLE,					/* no worker; one is started when served */
	PC_DB_EXCLUDED,				/* not served: commits there wake no one */
	PC_DB_STARTING,				/* a worker is registered, not yet running */
	PC_DB_RUNNING,				/* a worker serves the database */
	PC_DB_STOPPING,				/* its worker is asked to exit */
	PC_DB_HELD,					/* a DROP/ALTER DATABASE holds it: no worker */
	PC_DB_ABSENT,				/* no extension there: no worker until a commit */
	PC_DB_BACKOFF,				/* no worker until a restart delay is over */
	PC_DB_NUM_STATES
} PcDbState;

/* Why a database's last worker exited, as the worker itself reports it. */
typedef enum PcWorkerExit
{
	PC_EXIT_NONE,				/* it runs, or it died of an error */
	PC_EXIT_STOPPED,			/* it was asked to (stop, a hold) */
	PC_EXIT_NO_EXTENSION		/* the extension is not installed there */
} PcWorkerExit;

/*
 * One database's shared state. Everything but the CV is under the lock.
 * The launcher writes state and missing; the worker writes pid, latch,
 * exit, retry_pending, its progress (rounds_*, notified_upto) and what
 * provider_stats() shows of it (last_round_at, last_error*); backends
 * write their requests: wanted, sync_pending and hold_pid, and OR the
 * shards they wrote into dirty, which the worker takes (worker_dirty.c).
 */
typedef struct PcWorkerSlot
{
	Oid			dboid;			/* InvalidOid: the slot is free */
	PcDbState	state;			/* the launcher's state of dboid */
	pid_t		pid;			/* the worker serving dboid, 0 if none */
	Latch	   *latch;			/* its latch, NULL if none */
	PcWorkerExit exit;			/* why the last worker exited */
	pid_t		hold_pid;		/* backend holding dboid: no worker may run */
	bool		wanted;			/* events committed since the last round began */
	bool		sync_pending;	/* a reader waits for a round: start it now */
	bool		retry_pending;	/* a failed round is being retried at once */
	bool		missing;		/* dboid was not in the launcher's last scan */
	int64		notified_upto;	/* last position notified by a worker; -1: none */
	uint64		rounds_begun;	/* rounds started by workers of dboid */
	uint64		rounds_done;	/* the last round finished */
	uint64		rounds_ok;		/* the last round that committed */
	TimestampTz last_round_at;	/* when a round last committed; 0: never */
	TimestampTz last_error_at;	/* when a round last failed; 0: never */
	char		last_error[PC_LAST_ERROR_LEN];	/* its message, clipped */
	PcDirtyShards dirty;		/* audit shards written since the last round took them */
	ConditionVariable round_done; /* broadcast after each round and at exit */
} PcWorkerSlot;

/* Whether the worker of slot must leave: the launcher or a hold asks it. */
#define PcSlotStopping(slot) \
	((slot)->state == PC_DB_STOPPING || (slot)->hold_pid != 0)

/*
 * A prepared transaction that wrote audit rows, and into which shards
 * (worker_dirty.c): its COMMIT PREPARED, in any session, marks them.
 */
#define PC_MAX_PREPARED 64
typedef struct PcPreparedShards
{
	Oid			dboid;			/* InvalidOid: the entry is free */
	char		gid[GIDSIZE];
	PcDirtyShards shards;
} PcPreparedShards;

/* The slots, under one LWLock (PC_LWLOCK_TRANCHE), held for a few instructions. */
typedef struct PcWorkerShared
{
	LWLock	   *lock;
	Latch	   *launcher_latch; /* NULL while no launcher runs */
	/* Prepared transactions with events (worker_dirty.c). */
	PcPreparedShards prepared[PC_MAX_PREPARED];
	int			nslots;
	PcWorkerSlot slots[FLEXIBLE_ARRAY_MEMBER];
} PcWorkerShared;

/* worker_shmem.c: settings, shared memory and slots. */
extern PcWorkerShared *pc_shared;	/* NULL unless the library was preloaded */
extern int	pc_worker_naptime;
extern uint32 pc_wait_event;
extern bool PcServeEveryDatabase(void);
extern bool PcDatabaseListed(const char *name);
extern void PcSlotReset(PcWorkerSlot *slot, Oid dboid);
extern PcWorkerSlot *PcSlotFind(Oid dboid);
extern PcWorkerSlot *PcSlotFindOrAlloc(Oid dboid, bool *allocated);

/* worker_dirty.c: the shards a commit wrote, under the lock. */
extern void PcDirtyPublish(PcWorkerSlot *slot);
extern void PcDirtyPrepared(void);
extern void PcDirtyPreparing(const char *gid);
extern bool PcDirtyFinishPrepared(const char *gid, bool commit);

/* launcher.c and worker_main.c: the processes. */
extern PGDLLEXPORT void pc_launcher_main(Datum main_arg);
extern PGDLLEXPORT void pc_worker_main(Datum main_arg);

#endif							/* PC_WORKER_INTERNAL_H */
