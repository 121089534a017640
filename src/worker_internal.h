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

#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/spin.h"

#include "worker.h"

#define PC_LAUNCHER_NAPTIME_MS 5000 /* launcher rescans at least this often */
#define PC_RESTART_DELAY_MS 5000	/* after a worker died of an error */
#define PC_HOLD_GRACE_MS 2000	/* a held database's worker gets SIGTERM after */
#define PC_HOLD_WAIT_MS 10000	/* ... and the command goes on after */
#define PC_SYNC_START_MS 50		/* pc_worker_sync gives up on a silent worker after */
#define PC_SYNC_TIMEOUT_MS 2000 /* ... and on a busy one after */
#define PC_ROUND_INTERVAL_MS 5	/* rounds start at most this often */
#define PC_WARN_INTERVAL_MS 60000	/* repeated round failures: one WARNING per */
#define PC_EXTRA_SLOTS 32		/* slots beyond max_worker_processes */
#define PC_MAX_HOLDS 8			/* databases one transaction can hold */

/* One database's shared state. Everything but the CV is under the mutex. */
typedef struct PcWorkerSlot
{
	Oid			dboid;			/* InvalidOid: the slot is free */
	pid_t		pid;			/* the worker serving dboid, 0 if none */
	Latch	   *latch;			/* its latch, NULL if none */
	pid_t		hold_pid;		/* backend holding dboid: start no worker */
	bool		wanted;			/* events committed since the last round began */
	bool		stop;			/* the worker must exit */
	bool		excluded;		/* the launcher does not serve dboid */
	bool		absent;			/* the last worker found nothing to serve */
	bool		clean_exit;		/* the last worker exited on purpose */
	bool		missing;		/* dboid was not in the launcher's last scan */
	bool		retry_pending;	/* a failed round is being retried at once */
	bool		sync_pending;	/* a reader waits for a round: start it now */
	int64		notified_upto;	/* last position notified by a worker; -1: none */
	uint64		rounds_begun;	/* rounds started by workers of dboid */
	uint64		rounds_done;	/* the last round finished */
	uint64		rounds_ok;		/* the last round that committed */
	ConditionVariable round_done; /* broadcast after each round and at exit */
} PcWorkerSlot;

typedef struct PcWorkerShared
{
	slock_t		mutex;
	Latch	   *launcher_latch; /* NULL while no launcher runs */
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

/* worker_hold.c: holding a database for DROP and ALTER DATABASE. */
extern void PcHoldInit(void);

/* launcher.c and worker_main.c: the processes. */
extern void PcLauncherRegister(void);
extern PGDLLEXPORT void pc_launcher_main(Datum main_arg);
extern PGDLLEXPORT void pc_worker_main(Datum main_arg);

#endif							/* PC_WORKER_INTERNAL_H */
