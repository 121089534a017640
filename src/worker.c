/*
 * worker.c
 *		The background workers: a launcher that finds the databases to serve,
 *		and one worker per database that assigns feed positions and, in
 *		provider_connections.notify = worker mode, sends the notifications.
 *
 * They exist only when the library is in shared_preload_libraries. Without
 * them nothing breaks: provider_events_since assigns positions itself, and
 * callers notify in their own transactions.
 *
 * Shared state is a small array of slots, one per database known to want or
 * have a worker, under one spinlock held for a few instructions at a time:
 *
 *	- A caller's commit that wrote events calls pc_worker_wake: it sets the
 *	  slot's "wanted" mark and, when it left notifications to the worker
 *	  (notify = worker mode), the worker's latch,
 *	  or, when no worker runs, the launcher's latch (once, on the first
 *	  mark). No LWLock, no catalog access, nothing but that on the commit
 *	  path. In commit mode nothing waits for a round: the worker runs one
 *	  every worker_naptime, or at once for a reader in pc_worker_sync.
 *	- A worker clears "wanted" as each round begins, so a mark left after a
 *	  round began means events the round may not have seen.
 *	- The launcher (connected to no database) scans pg_database, starts a
 *	  worker per database it serves (every one that allows connections and
 *	  is not a template, or those named in provider_connections.worker_databases),
 *	  restarts a worker that died of an error after PC_RESTART_DELAY_MS, and
 *	  stops workers of databases it no longer serves. It wakes on its latch
 *	  (wanted marks, SIGHUP, SIGUSR1 when a worker it started stops) and
 *	  every PC_LAUNCHER_NAPTIME_MS.
 *	- A worker that finds the extension absent (or older than 1.2) exits
 *	  cleanly and is not started again until a commit marks its database
 *	  wanted: that is how DROP EXTENSION stops it and how a later call after
 *	  CREATE EXTENSION brings it back. It exits only if no mark arrived
 *	  during its last round, checked under the lock that clears its latch,
 *	  so a commit racing with the exit is never lost.
 *	- DROP DATABASE, and the other commands that refuse to run while another
 *	  session uses a database (ALTER DATABASE RENAME and SET TABLESPACE,
 *	  CREATE DATABASE ... TEMPLATE), hold the database through a utility
 *	  hook: the worker is asked to stop and waited for (SIGTERM after a grace
 *	  period), and none is started until the command's transaction ends.
 *	- A crash of any backend, the worker included, makes the postmaster
 *	  reinitialize shared memory and restart the launcher, which starts the
 *	  workers again; positions are assigned from committed state, so a round
 *	  cut short leaves nothing to undo.
 *
 * Copyright (c) 2026, provider_connections developers.
 * Released under the PostgreSQL License (see LICENSE).
 */
#include "postgres.h"

#include <signal.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"
#if PG_VERSION_NUM >= 170000
#include "utils/wait_event.h"
#endif

#include "events.h"
#include "feed.h"
#include "guc_compat.h"
#include "replication.h"
#include "worker.h"

/* A round that handled this many events is followed by another at once. */
#define PC_WORKER_BATCH PC_FEED_NOTIFY_BATCH

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

/* provider_connections.worker_databases, parsed by its check hook. */
typedef struct PcDatabaseList
{
	int			count;
	char		names[FLEXIBLE_ARRAY_MEMBER];	/* count NUL-terminated names */
} PcDatabaseList;

/* A database held by the current transaction (see HoldDatabase). */
typedef struct PcHold
{
	Oid			dboid;
	bool		dropping;		/* DROP DATABASE: its slot goes with it */
	bool		had_worker;		/* start a worker again afterwards */
	bool		allocated;		/* the hold took a free slot */
} PcHold;

/* The launcher's view of one database (its private hash table). */
typedef struct PcLaunchEntry
{
	Oid			dboid;			/* hash key */
	char		name[NAMEDATALEN];
	uint64		seen_scan;		/* last scan that found it in pg_database */
	bool		target;			/* the launcher serves it */
	BackgroundWorkerHandle *handle; /* the worker it started, until it stops */
	bool		running;		/* a worker ran at the previous round */
	bool		absent;			/* the last worker found nothing to serve */
	bool		warned;			/* a failure to start was logged */
	TimestampTz next_start;		/* after a failure: no start before this */
} PcLaunchEntry;

/* Failures of one kind of round, for logging them without flooding the log. */
typedef struct PcFailures
{
	const char *what;			/* "send notifications", ... */
	int			count;			/* consecutive failures */
	int			unreported;		/* of which not in a WARNING */
	TimestampTz last_warned;
} PcFailures;

/* What the launcher does to a slot (ChangeSlot). */
typedef enum PcSlotChange
{
	PC_SLOT_STOP,
	PC_SLOT_FREE_IDLE,
	PC_SLOT_FREE_GONE,
	PC_SLOT_EXCLUDE,
	PC_SLOT_CLEAR_HOLD
} PcSlotChange;

typedef enum PcRoundOutcome
{
	PC_ROUND_OK,
	PC_ROUND_FAILED,
	PC_ROUND_ABSENT				/* no extension (1.2+) in the database */
} PcRoundOutcome;

extern PGDLLEXPORT void pc_launcher_main(Datum main_arg);
extern PGDLLEXPORT void pc_worker_main(Datum main_arg);

/* Settings. */
static char *pc_worker_databases = NULL;
static int	pc_worker_naptime = 1000;
static PcDatabaseList *pc_db_list = NULL;

/* Shared memory: NULL unless the library was preloaded. */
static PcWorkerShared *pc_shared = NULL;

/* Backends: the slot of MyDatabaseId last found, and held databases. */
static int	pc_my_slot = -1;
static PcHold pc_holds[PC_MAX_HOLDS];
static int	pc_nholds = 0;

/* Workers: their slot and database name. */
static PcWorkerSlot *pc_worker_slot = NULL;
static char pc_worker_dbname[NAMEDATALEN];

/* Launcher: known databases. */
static HTAB *pc_launch_htab = NULL;

static uint32 pc_wait_event = PG_WAIT_EXTENSION;

static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* ---- settings ---- */

/*
 * Check hook of worker_databases: the value must be a list of identifiers.
 * Never raises (an ERROR here is FATAL in the postmaster at reload); the
 * parsed names become the setting's extra.
 */
static bool
CheckWorkerDatabases(char **newval, void **extra, GucSource source)
{
	char	   *copy = pstrdup(*newval ? *newval : "");
	List	   *names = NIL;
	ListCell   *lc;
	Size		size = offsetof(PcDatabaseList, names);
	PcDatabaseList *list;
	char	   *p;

	if (!SplitIdentifierString(copy, ',', &names))
	{
		GUC_check_errdetail("provider_connections.worker_databases takes a comma-separated list of database names, or an empty string for every database.");
		list_free(names);
		pfree(copy);
		return false;
	}
	foreach(lc, names)
		size += strlen((char *) lfirst(lc)) + 1;
	list = PcGucMalloc(size);
	if (list == NULL)
	{
		list_free(names);
		pfree(copy);
		return false;
	}
	list->count = list_length(names);
	p = list->names;
	foreach(lc, names)
	{
		strcpy(p, (char *) lfirst(lc));
		p += strlen(p) + 1;
	}
	*extra = list;
	list_free(names);
	pfree(copy);
	return true;
}

/* Assign hook of worker_databases: keep the parsed list. */
static void
AssignWorkerDatabases(const char *newval, void *extra)
{
	pc_db_list = (PcDatabaseList *) extra;
}

/* Whether worker_databases is empty: every database is served. */
static bool
ServeEveryDatabase(void)
{
	return pc_db_list == NULL || pc_db_list->count == 0;
}

/* Whether worker_databases names the database called name. */
static bool
DatabaseListed(const char *name)
{
	const char *p;
	int			i;

	if (ServeEveryDatabase())
		return true;
	for (i = 0, p = pc_db_list->names; i < pc_db_list->count; i++, p += strlen(p) + 1)
		if (strcmp(p, name) == 0)
			return true;
	return false;
}

/* ---- shared memory ---- */

/* Slots: one per possible worker, and some for databases waiting for one. */
static int
SlotCount(void)
{
	return max_worker_processes + PC_EXTRA_SLOTS;
}

/* Bytes of shared memory the workers need. */
static Size
WorkerShmemSize(void)
{
	return add_size(offsetof(PcWorkerShared, slots),
					mul_size(SlotCount(), sizeof(PcWorkerSlot)));
}

#if PG_VERSION_NUM >= 150000
/* shmem_request_hook: ask for our shared memory (PostgreSQL 15 on). */
static void
WorkerShmemRequest(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(WorkerShmemSize());
}
#endif

/* Make a slot free; the caller holds the mutex. The CV stays as it is. */
static void
ResetSlot(PcWorkerSlot *slot, Oid dboid)
{
	slot->dboid = dboid;
	slot->pid = 0;
	slot->latch = NULL;
	slot->hold_pid = 0;
	slot->wanted = false;
	slot->stop = false;
	slot->excluded = false;
	slot->absent = false;
	slot->clean_exit = false;
	slot->missing = false;
	slot->retry_pending = false;
	slot->sync_pending = false;
	slot->notified_upto = -1;
}

/*
 * Set up the slots, in the postmaster at start and again after a crash of
 * any backend, when shared memory is created anew.
 */
static void
WorkerShmemStartup(void)
{
	bool		found;
	int			i;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	pc_shared = ShmemInitStruct("provider_connections workers", WorkerShmemSize(), &found);
	if (!found)
	{
		SpinLockInit(&pc_shared->mutex);
		pc_shared->launcher_latch = NULL;
		pc_shared->nslots = SlotCount();
		for (i = 0; i < pc_shared->nslots; i++)
		{
			PcWorkerSlot *slot = &pc_shared->slots[i];

			ResetSlot(slot, InvalidOid);
			slot->rounds_begun = slot->rounds_done = slot->rounds_ok = 0;
			ConditionVariableInit(&slot->round_done);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/* The slot of dboid, or NULL; the caller holds the mutex. */
static PcWorkerSlot *
FindSlot(Oid dboid)
{
	int			i;

	for (i = 0; i < pc_shared->nslots; i++)
		if (pc_shared->slots[i].dboid == dboid)
			return &pc_shared->slots[i];
	return NULL;
}

/* The slot of dboid, taking a free one if needed; NULL if none is free. */
static PcWorkerSlot *
FindOrAllocSlot(Oid dboid, bool *allocated)
{
	PcWorkerSlot *slot = FindSlot(dboid);

	*allocated = false;
	if (slot == NULL && (slot = FindSlot(InvalidOid)) != NULL)
	{
		ResetSlot(slot, dboid);
		*allocated = true;
	}
	return slot;
}

/* The slot of this backend's database (see FindOrAllocSlot); under the mutex. */
static PcWorkerSlot *
MySlot(bool create)
{
	PcWorkerSlot *slot;
	bool		allocated;

	if (pc_my_slot >= 0 && pc_shared->slots[pc_my_slot].dboid == MyDatabaseId)
		return &pc_shared->slots[pc_my_slot];
	slot = create ? FindOrAllocSlot(MyDatabaseId, &allocated) : FindSlot(MyDatabaseId);
	if (slot != NULL)
		pc_my_slot = slot - pc_shared->slots;
	return slot;
}

/* ---- what backends call ---- */

/*
 * At commit of a transaction that wrote events: wake the worker of this
 * database when a round is needed now (round_needed: its notifications
 * wait for it), or the launcher when no worker runs, so that it starts one.
 * Returns at once when the library is not preloaded. Costs one short
 * spinlock and at most one SetLatch (safe on any PGPROC latch, even a stale
 * one).
 */
void
pc_worker_wake(bool round_needed)
{
	PcWorkerSlot *slot;
	Latch	   *latch = NULL;

	if (pc_shared == NULL || !OidIsValid(MyDatabaseId))
		return;
	SpinLockAcquire(&pc_shared->mutex);
	slot = MySlot(true);
	if (slot != NULL)
	{
		if (slot->latch != NULL)
			latch = round_needed ? slot->latch : NULL;
		else if (!slot->wanted && !slot->excluded)
			latch = pc_shared->launcher_latch;
		slot->wanted = true;
	}
	SpinLockRelease(&pc_shared->mutex);
	if (latch != NULL)
		SetLatch(latch);
}

/*
 * Whether a live worker serves this backend's database. False without
 * shared memory.
 */
bool
pc_worker_serving(void)
{
	PcWorkerSlot *slot;
	bool		serving;

	if (pc_shared == NULL || !OidIsValid(MyDatabaseId))
		return false;
	SpinLockAcquire(&pc_shared->mutex);
	slot = MySlot(false);
	serving = slot != NULL && slot->pid != 0;
	SpinLockRelease(&pc_shared->mutex);
	return serving;
}

/*
 * Whether provider_connections.worker_databases lets a worker serve this
 * backend's database (every database when it is empty). A caller in
 * notify = worker mode notifies its events itself when not: no worker
 * would. Like the setting, the answer is the same in every session.
 */
bool
pc_worker_database_listed(void)
{
	char	   *name;

	if (ServeEveryDatabase() || !OidIsValid(MyDatabaseId))
		return true;
	name = get_database_name(MyDatabaseId);
	return name == NULL || DatabaseListed(name);
}

/*
 * Ask this database's worker for a round and wait until one that began
 * after the request has committed: everything committed before the call is
 * then positioned. Returns false (the caller assigns positions itself) when
 * no worker serves the database, or it exits, or its rounds fail, or after
 * PC_SYNC_TIMEOUT_MS; and after PC_SYNC_START_MS already if the worker
 * showed no sign of life by then (it began no round since the request and
 * finished none): a worker that is stopped (SIGSTOP, a debugger) or stuck
 * must not make every reader wait seconds. A healthy worker starts the
 * round within a few milliseconds (a reader's request skips its pause
 * between rounds), and one busy with a long round has finished it or begun
 * ours by then. Giving up is always safe: the caller's own round waits for
 * any round in progress (the state row's lock) and numbers what is left.
 */
bool
pc_worker_sync(void)
{
	PcWorkerSlot *slot;
	Latch	   *latch = NULL;
	pid_t		pid = 0;
	uint64		target = 0;
	uint64		done_before = 0;
	bool		ok = false;
	TimestampTz start;

	if (pc_shared == NULL || !OidIsValid(MyDatabaseId))
		return false;
	SpinLockAcquire(&pc_shared->mutex);
	slot = MySlot(false);
	if (slot != NULL && slot->pid != 0 && !slot->stop)
	{
		pid = slot->pid;
		latch = slot->latch;
		target = slot->rounds_begun + 1;
		done_before = slot->rounds_done;
		slot->wanted = true;
		slot->sync_pending = true;
	}
	SpinLockRelease(&pc_shared->mutex);
	if (pid == 0)
		return false;
	SetLatch(latch);

	start = GetCurrentTimestamp();
	ConditionVariablePrepareToSleep(&slot->round_done);
	for (;;)
	{
		bool		over;
		bool		alive;
		TimestampTz limit;
		long		remaining;

		SpinLockAcquire(&pc_shared->mutex);
		ok = slot->rounds_ok >= target;
		over = slot->pid != pid ||
			(slot->rounds_done >= target && !slot->retry_pending);
		alive = slot->rounds_begun >= target || slot->rounds_done != done_before;
		SpinLockRelease(&pc_shared->mutex);
		if (ok || over)
			break;
		limit = TimestampTzPlusMilliseconds(start, alive ? PC_SYNC_TIMEOUT_MS : PC_SYNC_START_MS);
		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), limit);
		if (remaining <= 0)
			break;
		(void) ConditionVariableTimedSleep(&slot->round_done, remaining, pc_wait_event);
	}
	ConditionVariableCancelSleep();
	return ok;
}

/* ---- databases held by a utility command ---- */

/* The value of a string option of a statement, or NULL. */
static const char *
StringOption(List *options, const char *name)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = lfirst_node(DefElem, lc);

		if (strcmp(def->defname, name) == 0 && def->arg != NULL && IsA(def->arg, String))
			return strVal(def->arg);
	}
	return NULL;
}

/*
 * The database a utility statement needs no other session in: DROP
 * DATABASE, ALTER DATABASE RENAME, ALTER DATABASE SET TABLESPACE, and the
 * template of CREATE DATABASE. InvalidOid for any other statement.
 */
static Oid
DatabaseToHold(Node *stmt, bool *dropping)
{
	const char *name = NULL;

	*dropping = false;
	switch (nodeTag(stmt))
	{
		case T_DropdbStmt:
			name = ((DropdbStmt *) stmt)->dbname;
			*dropping = true;
			break;
		case T_RenameStmt:
			if (((RenameStmt *) stmt)->renameType == OBJECT_DATABASE)
				name = ((RenameStmt *) stmt)->subname;
			break;
		case T_AlterDatabaseStmt:
			if (StringOption(((AlterDatabaseStmt *) stmt)->options, "tablespace") != NULL)
				name = ((AlterDatabaseStmt *) stmt)->dbname;
			break;
		case T_CreatedbStmt:
			name = StringOption(((CreatedbStmt *) stmt)->options, "template");
			break;
		default:
			break;
	}
	return name != NULL ? get_database_oid(name, true) : InvalidOid;
}

/*
 * Wait until no worker serves dboid: ask, then after PC_HOLD_GRACE_MS send
 * SIGTERM, and after PC_HOLD_WAIT_MS let the command go on (it then reports
 * the database in use, as it would for any session).
 */
static void
WaitForWorkerExit(Oid dboid)
{
	TimestampTz start = GetCurrentTimestamp();
	bool		terminated = false;
	PcWorkerSlot *slot;

	SpinLockAcquire(&pc_shared->mutex);
	slot = FindSlot(dboid);
	SpinLockRelease(&pc_shared->mutex);
	if (slot == NULL)
		return;
	ConditionVariablePrepareToSleep(&slot->round_done);
	for (;;)
	{
		pid_t		pid = 0;
		Latch	   *latch = NULL;
		long		waited;

		SpinLockAcquire(&pc_shared->mutex);
		if (slot->dboid == dboid)
		{
			pid = slot->pid;
			latch = slot->latch;
		}
		SpinLockRelease(&pc_shared->mutex);
		if (pid == 0)
			break;
		waited = TimestampDifferenceMilliseconds(start, GetCurrentTimestamp());
		if (waited >= PC_HOLD_WAIT_MS)
		{
			ereport(WARNING,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("provider_connections worker (PID %d) did not stop within %d ms",
							(int) pid, PC_HOLD_WAIT_MS)));
			break;
		}
		if (!terminated && waited >= PC_HOLD_GRACE_MS)
		{
			(void) kill(pid, SIGTERM);
			terminated = true;
		}
		SetLatch(latch);
		(void) ConditionVariableTimedSleep(&slot->round_done, 100, pc_wait_event);
	}
	ConditionVariableCancelSleep();
}

/*
 * Keep workers out of dboid until the current transaction ends, and stop
 * the one that runs there. Called before the utility command runs.
 */
static void
HoldDatabase(Oid dboid, bool dropping)
{
	PcWorkerSlot *slot;
	PcHold		hold = {dboid, dropping, false, false};
	bool		mine = false;
	bool		held = false;
	int			i;

	for (i = 0; i < pc_nholds; i++)
		if (pc_holds[i].dboid == dboid)
			break;
	SpinLockAcquire(&pc_shared->mutex);
	slot = FindOrAllocSlot(dboid, &hold.allocated);
	if (slot != NULL && (slot->hold_pid == 0 || slot->hold_pid == MyProcPid) &&
		(i < pc_nholds || pc_nholds < PC_MAX_HOLDS))
	{
		mine = true;
		hold.had_worker = slot->pid != 0;
		slot->hold_pid = MyProcPid;
		slot->stop = true;
	}
	held = slot != NULL && slot->hold_pid != 0;
	SpinLockRelease(&pc_shared->mutex);

	if (mine && i < pc_nholds)
		pc_holds[i].dropping |= dropping;
	else if (mine)
		pc_holds[pc_nholds++] = hold;
	if (held)					/* by us, or by a concurrent command */
		WaitForWorkerExit(dboid);
}

/*
 * At the end of a transaction that held databases: let workers in again. A
 * dropped database's slot is freed; elsewhere the launcher restarts the
 * worker that was stopped.
 */
static void
ReleaseHolds(bool committed)
{
	Latch	   *launcher = NULL;
	int			i;

	SpinLockAcquire(&pc_shared->mutex);
	for (i = 0; i < pc_nholds; i++)
	{
		PcHold	   *hold = &pc_holds[i];
		PcWorkerSlot *slot = FindSlot(hold->dboid);

		if (slot == NULL || slot->hold_pid != MyProcPid)
			continue;
		slot->hold_pid = 0;
		slot->stop = false;
		if (slot->pid != 0)
			continue;
		if ((hold->dropping && committed) ||
			(hold->allocated && !slot->wanted))
			ResetSlot(slot, InvalidOid);
		else if (hold->had_worker)
		{
			slot->wanted = true;
			launcher = pc_shared->launcher_latch;
		}
	}
	SpinLockRelease(&pc_shared->mutex);
	pc_nholds = 0;
	if (launcher != NULL)
		SetLatch(launcher);
}

/* Transaction callback: release the holds at commit, prepare or abort. */
static void
HoldXactCallback(XactEvent event, void *arg)
{
	if (pc_nholds == 0)
		return;
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PREPARE:
			ReleaseHolds(true);
			break;
		case XACT_EVENT_ABORT:
			ReleaseHolds(false);
			break;
		default:
			break;
	}
}

/*
 * Utility hook: before a command that needs a database to itself (see
 * DatabaseToHold), stop our worker there, so that DROP DATABASE does not
 * fail with "database is being accessed by other users". CREATE
 * SUBSCRIPTION brings the worker in (replication.c).
 */
static void
WorkerProcessUtility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					 ProcessUtilityContext context, ParamListInfo params,
					 QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	bool		dropping;
	Oid			dboid = InvalidOid;

	if (pc_shared != NULL)
		dboid = DatabaseToHold(pstmt->utilityStmt, &dropping);
	if (OidIsValid(dboid))
		HoldDatabase(dboid, dropping);
	pc_replica_utility(pstmt->utilityStmt);

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
							queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
}

/* ---- the per-database worker ---- */

/* Clear our slot at exit and tell the launcher and anyone waiting. */
static void
WorkerShmemExit(int code, Datum arg)
{
	Latch	   *launcher;

	SpinLockAcquire(&pc_shared->mutex);
	if (pc_worker_slot->pid == MyProcPid)
	{
		pc_worker_slot->pid = 0;
		pc_worker_slot->latch = NULL;
	}
	launcher = pc_shared->launcher_latch;
	SpinLockRelease(&pc_shared->mutex);
	ConditionVariableBroadcast(&pc_worker_slot->round_done);
	if (launcher != NULL)
		SetLatch(launcher);
}

/*
 * Take the slot the launcher prepared for dboid. False if there is none, if
 * another worker has it, or if the database is held or to be left.
 */
static bool
ClaimSlot(Oid dboid)
{
	PcWorkerSlot *slot;
	bool		claimed = false;

	SpinLockAcquire(&pc_shared->mutex);
	slot = FindSlot(dboid);
	if (slot != NULL && slot->pid == 0 && !slot->stop && slot->hold_pid == 0)
	{
		slot->pid = MyProcPid;
		slot->latch = MyLatch;
		slot->absent = false;
		slot->clean_exit = false;
		claimed = true;
	}
	else if (slot != NULL && slot->pid == 0)
		slot->clean_exit = true;
	SpinLockRelease(&pc_shared->mutex);
	if (claimed)
	{
		pc_worker_slot = slot;
		on_shmem_exit(WorkerShmemExit, (Datum) 0);
	}
	return claimed;
}

/* Exit on purpose (stop requested): the launcher does not count it a crash. */
static void
WorkerExitCleanly(void)
{
	SpinLockAcquire(&pc_shared->mutex);
	pc_worker_slot->clean_exit = true;
	SpinLockRelease(&pc_shared->mutex);
	proc_exit(0);
}

/*
 * The extension is not (or no longer) installed here: exit, and stay away
 * until a commit marks the database wanted. If one did since the last round
 * began, run another instead: the extension may just have been created.
 */
static void
LeaveIfAbsent(void)
{
	bool		stay;

	SpinLockAcquire(&pc_shared->mutex);
	stay = pc_worker_slot->wanted;
	if (!stay)
	{
		pc_worker_slot->absent = true;
		pc_worker_slot->clean_exit = true;
		pc_worker_slot->pid = 0;
		pc_worker_slot->latch = NULL;
	}
	SpinLockRelease(&pc_shared->mutex);
	if (stay)
		return;
	ereport(DEBUG1,
			(errmsg_internal("provider_connections 1.2 or later is not installed in database \"%s\": its worker exits",
							 pc_worker_dbname)));
	proc_exit(0);
}

/* Whether the worker was asked to leave. */
static bool
StopRequested(void)
{
	bool		stop;

	SpinLockAcquire(&pc_shared->mutex);
	stop = pc_worker_slot->stop || pc_worker_slot->hold_pid != 0;
	SpinLockRelease(&pc_shared->mutex);
	return stop;
}

/*
 * Log a failed round from the error being handled (then flushed and its
 * transaction aborted): the first at WARNING, then one WARNING per
 * PC_WARN_INTERVAL_MS and the rest at DEBUG1. Called in PG_CATCH with
 * CurrentMemoryContext set to the round's context, which it keeps.
 */
static void
ReportRoundFailure(PcFailures *f)
{
	MemoryContext cxt = CurrentMemoryContext;
	ErrorData  *edata = CopyErrorData();
	const char *message = edata->message ? edata->message : "unknown error";
	TimestampTz now = GetCurrentTimestamp();
	bool		warn;

	FlushErrorState();
	AbortCurrentTransaction();
	MemoryContextSwitchTo(cxt);

	warn = f->count == 0 || TimestampDifferenceExceeds(f->last_warned, now, PC_WARN_INTERVAL_MS);
	f->count++;
	if (warn)
	{
		f->last_warned = now;
		f->unreported = 0;
	}
	else
		f->unreported++;
	ereport(warn ? WARNING : DEBUG1,
			(errcode(edata->sqlerrcode),
			 f->count == 1 ?
			 errmsg("provider_connections worker in database \"%s\" could not %s: %s",
					pc_worker_dbname, f->what, message) :
			 errmsg_plural("provider_connections worker in database \"%s\" still could not %s after %d attempt: %s",
						   "provider_connections worker in database \"%s\" still could not %s after %d attempts: %s",
						   f->count, pc_worker_dbname, f->what, f->count, message),
			 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
			 edata->hint ? errhint("%s", edata->hint) : 0));
	FreeErrorData(edata);
}

/* A round of this kind succeeded: say so if earlier ones failed. */
static void
NoteRoundSucceeded(PcFailures *f)
{
	if (f->count > 0)
		ereport(LOG,
				(errmsg_plural("provider_connections worker in database \"%s\" could %s again after %d failed attempt",
							   "provider_connections worker in database \"%s\" could %s again after %d failed attempts",
							   f->count, pc_worker_dbname, f->what, f->count)));
	f->count = 0;
	f->unreported = 0;
}

/*
 * One round in its own transaction: assign positions and, when notify,
 * go through the numbered events and queue the notifications of those left
 * to the worker (sent at commit), in every notify mode: events written in
 * worker mode may commit after a reload changed the mode. notified_upto is
 * stored only once the commit succeeded, so failed notifications are
 * retried from where they were. *count gets what pc_feed_assign returned; a negative value
 * means it skipped the round (another assigner held the feed): the round
 * then does not count as done for pc_worker_sync.
 */
static PcRoundOutcome
WorkerRound(bool notify, bool retry_follows, PcFailures *failures, int64 *count)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile PcRoundOutcome outcome = PC_ROUND_OK;
	volatile int64 n = 0;
	int64		upto;
	uint64		round;

	SpinLockAcquire(&pc_shared->mutex);
	round = ++pc_worker_slot->rounds_begun;
	pc_worker_slot->wanted = false;
	pc_worker_slot->sync_pending = false;
	upto = pc_worker_slot->notified_upto;
	SpinLockRelease(&pc_shared->mutex);

	PG_TRY();
	{
		Oid			nsp;

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, notify ?
							   "assigning feed positions and notifying" :
							   "assigning feed positions");
		nsp = pc_feed_schema();
		if (OidIsValid(nsp))
			n = pc_feed_assign(nsp, notify ? &upto : NULL);
		else
			outcome = PC_ROUND_ABSENT;
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		ReportRoundFailure(failures);
		outcome = PC_ROUND_FAILED;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	(void) pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);

	SpinLockAcquire(&pc_shared->mutex);
	pc_worker_slot->rounds_done = round;
	pc_worker_slot->retry_pending = outcome == PC_ROUND_FAILED && retry_follows;
	if (outcome == PC_ROUND_OK)
	{
		if (n >= 0)
			pc_worker_slot->rounds_ok = round;
		if (notify)
			pc_worker_slot->notified_upto = upto;
	}
	SpinLockRelease(&pc_shared->mutex);
	ConditionVariableBroadcast(&pc_worker_slot->round_done);
	*count = Max(n, 0);
	return outcome;
}

/*
 * The worker's loop (after worker_spi.c): a round at start, then one per
 * wake or worker_naptime, or at once after a full batch. A failed round
 * with notifications is followed at once by one without, so positions keep
 * moving while, for example, a listener that stopped reading fills the
 * NOTIFY queue; notifications are tried again after worker_naptime.
 */
static void
WorkerLoop(void)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext,
											  "provider_connections worker round",
											  ALLOCSET_DEFAULT_SIZES);
	PcFailures	notify_failures = {"send notifications"};
	PcFailures	assign_failures = {"assign feed positions"};
	TimestampTz notify_after = 0;
	TimestampTz last_round = 0;
	bool		again = true;

	for (;;)
	{
		PcRoundOutcome outcome;
		bool		notify;
		int64		n = 0;

		if (!again)
		{
			long		early;

			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 pc_worker_naptime, pc_wait_event);

			/*
			 * Each round is a transaction whose commit is flushed: one per
			 * caller commit would double the WAL flushes of a durable
			 * workload. Rounds start at most every PC_ROUND_INTERVAL_MS;
			 * commits meanwhile wait for the next one, together. A reader
			 * waiting in pc_worker_sync is not made to wait.
			 */
			for (;;)
			{
				early = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
														TimestampTzPlusMilliseconds(last_round, PC_ROUND_INTERVAL_MS));
				/* A reader of the feed waits for this round: no pause for it. */
				SpinLockAcquire(&pc_shared->mutex);
				if (pc_worker_slot->sync_pending)
					early = 0;
				SpinLockRelease(&pc_shared->mutex);
				if (early <= 0)
					break;
				/* Wakes meanwhile are for the round about to start. */
				(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								 early, pc_wait_event);
				ResetLatch(MyLatch);
				CHECK_FOR_INTERRUPTS();
			}
		}
		ResetLatch(MyLatch);
		last_round = GetCurrentTimestamp();
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (StopRequested())
			WorkerExitCleanly();

		MemoryContextReset(cxt);
		MemoryContextSwitchTo(cxt);
		/* Outside worker mode few events, if any, are left to the worker. */
		notify = GetCurrentTimestamp() >= notify_after;
		outcome = WorkerRound(notify, notify,
							  notify && pc_events_notify_by_worker() ? &notify_failures : &assign_failures,
							  &n);
		if (outcome == PC_ROUND_FAILED && notify)
		{
			notify_after = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), pc_worker_naptime);
			outcome = WorkerRound(false, false, &assign_failures, &n);
		}
		else if (outcome == PC_ROUND_OK && notify)
			NoteRoundSucceeded(&notify_failures);
		if (outcome == PC_ROUND_OK)
			NoteRoundSucceeded(&assign_failures);

		again = outcome == PC_ROUND_OK && n >= PC_WORKER_BATCH;
		if (outcome == PC_ROUND_ABSENT)
		{
			LeaveIfAbsent();
			again = true;
		}
	}
}

/*
 * Entry point of a worker; main_arg is the database's oid. Leaves quietly
 * if its slot is gone or taken.
 */
void
pc_worker_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	char	   *name;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
#if PG_VERSION_NUM >= 170000
	pc_wait_event = WaitEventExtensionNew("ProviderConnectionsWorker");
#endif

	StartTransactionCommand();
	name = get_database_name(dboid);
	strlcpy(pc_worker_dbname, name ? name : "?", NAMEDATALEN);
	CommitTransactionCommand();

	if (!ClaimSlot(dboid))
		proc_exit(0);
	WorkerLoop();
}

/* ---- the launcher ---- */

/* Whether the launcher serves a database of pg_database. */
static bool
ServedDatabase(Form_pg_database db)
{
	if (db->datistemplate || !db->datallowconn)
		return false;
#ifdef DATCONNLIMIT_INVALID_DB
	if (db->datconnlimit == DATCONNLIMIT_INVALID_DB)
		return false;			/* a DROP DATABASE was interrupted */
#endif
	return DatabaseListed(NameStr(db->datname));
}

/*
 * Read pg_database (a shared catalog, readable without a database, as
 * TimescaleDB's launcher does) into the launcher's table of databases.
 */
static void
ScanDatabases(uint64 scan)
{
	MemoryContext cxt = CurrentMemoryContext;
	Relation	rel;
	TableScanDesc tscan;
	HeapTuple	tup;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	tscan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(tscan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
		bool		found;
		PcLaunchEntry *e = hash_search(pc_launch_htab, &db->oid, HASH_ENTER, &found);

		if (!found)
		{
			e->handle = NULL;
			e->running = false;
			e->absent = false;
			e->warned = false;
			e->next_start = 0;
		}
		e->seen_scan = scan;
		e->target = ServedDatabase(db);
		strlcpy(e->name, NameStr(db->datname), NAMEDATALEN);
	}
	table_endscan(tscan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
}

/*
 * Whether a worker runs (or is starting) for e. Forgets the handle of one
 * that stopped.
 */
static bool
WorkerRunning(PcLaunchEntry *e)
{
	PcWorkerSlot *slot;
	bool		running;
	pid_t		pid;

	if (e->handle != NULL)
	{
		BgwHandleStatus status = GetBackgroundWorkerPid(e->handle, &pid);

		if (status == BGWH_POSTMASTER_DIED)
			proc_exit(1);
		if (status != BGWH_STOPPED)
			return true;
		pfree(e->handle);
		e->handle = NULL;
	}
	SpinLockAcquire(&pc_shared->mutex);
	slot = FindSlot(e->dboid);
	running = slot != NULL && slot->pid != 0;
	SpinLockRelease(&pc_shared->mutex);
	return running;
}

/* A copy of dboid's slot; false if it has none. */
static bool
ReadSlot(Oid dboid, PcWorkerSlot *copy)
{
	PcWorkerSlot *slot;

	SpinLockAcquire(&pc_shared->mutex);
	slot = FindSlot(dboid);
	if (slot != NULL)
		memcpy(copy, slot, offsetof(PcWorkerSlot, round_done));
	SpinLockRelease(&pc_shared->mutex);
	if (slot == NULL)
		memset(copy, 0, offsetof(PcWorkerSlot, round_done));
	return slot != NULL;
}

/*
 * What the launcher does to a slot: STOP asks its worker to exit;
 * FREE_IDLE frees it when unused (no worker, no mark, no hold); FREE_GONE
 * frees it when no worker runs (the database is gone); EXCLUDE marks it
 * not served, so commits there stop waking the launcher; CLEAR_HOLD drops
 * the hold of hold_pid, a backend that is gone.
 */
static void
ChangeSlot(Oid dboid, PcSlotChange change, pid_t hold_pid)
{
	PcWorkerSlot *slot;
	Latch	   *latch = NULL;

	SpinLockAcquire(&pc_shared->mutex);
	slot = FindSlot(dboid);
	if (slot != NULL)
	{
		switch (change)
		{
			case PC_SLOT_STOP:
				slot->stop = true;
				latch = slot->latch;
				break;
			case PC_SLOT_FREE_IDLE:
				if (slot->pid == 0 && !slot->wanted && slot->hold_pid == 0)
					ResetSlot(slot, InvalidOid);
				break;
			case PC_SLOT_FREE_GONE:
				if (slot->pid == 0)
					ResetSlot(slot, InvalidOid);
				break;
			case PC_SLOT_EXCLUDE:
				slot->excluded = true;
				break;
			case PC_SLOT_CLEAR_HOLD:
				if (slot->hold_pid == hold_pid)
				{
					slot->hold_pid = 0;
					slot->stop = false;
				}
				break;
		}
	}
	SpinLockRelease(&pc_shared->mutex);
	if (latch != NULL)
		SetLatch(latch);
}

/* Register a dynamic worker for e; false if no background worker slot is free. */
static bool
RegisterWorker(PcLaunchEntry *e)
{
	BackgroundWorker worker;
	MemoryContext old;
	bool		ok;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, "provider_connections", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "pc_worker_main", BGW_MAXLEN);
	snprintf(worker.bgw_name, BGW_MAXLEN, "provider_connections worker for database %s", e->name);
	strlcpy(worker.bgw_type, "provider_connections worker", BGW_MAXLEN);
	worker.bgw_main_arg = ObjectIdGetDatum(e->dboid);
	worker.bgw_notify_pid = MyProcPid;

	old = MemoryContextSwitchTo(TopMemoryContext);
	ok = RegisterDynamicBackgroundWorker(&worker, &e->handle);
	MemoryContextSwitchTo(old);
	return ok;
}

/*
 * A slot of a database the launcher does not serve, idle, to give to one it
 * serves when none is free; NULL if none. The caller holds the mutex.
 */
static PcWorkerSlot *
FindExcludedSlot(void)
{
	int			i;

	for (i = 0; i < pc_shared->nslots; i++)
	{
		PcWorkerSlot *slot = &pc_shared->slots[i];

		if (slot->excluded && slot->pid == 0 && slot->hold_pid == 0)
			return slot;
	}
	return NULL;
}

/* Start a worker for e, preparing its slot; on failure retry later. */
static void
StartWorker(PcLaunchEntry *e, TimestampTz now)
{
	PcWorkerSlot *slot;
	bool		allocated;

	SpinLockAcquire(&pc_shared->mutex);
	slot = FindOrAllocSlot(e->dboid, &allocated);
	if (slot == NULL && (slot = FindExcludedSlot()) != NULL)
		ResetSlot(slot, e->dboid);
	if (slot != NULL)
	{
		slot->stop = false;
		slot->excluded = false;
		slot->absent = false;
		slot->clean_exit = false;
	}
	SpinLockRelease(&pc_shared->mutex);

	if (slot != NULL && RegisterWorker(e))
	{
		e->running = true;
		e->absent = false;
		e->warned = false;
		return;
	}
	if (!e->warned)
		ereport(LOG,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start the provider_connections worker for database \"%s\"", e->name),
				 slot == NULL ?
				 errdetail("All %d provider_connections worker slots are in use.", pc_shared->nslots) :
				 errdetail("No background worker slot is free."),
				 errhint("Raise max_worker_processes. Until a worker runs, provider_events_since assigns positions itself.")));
	e->warned = true;
	e->next_start = TimestampTzPlusMilliseconds(now, PC_RESTART_DELAY_MS);
}

/* A worker of e stopped: note why (from its slot), and when to restart it. */
static void
NoteWorkerStopped(PcLaunchEntry *e, const PcWorkerSlot *slot, TimestampTz now)
{
	if (slot->absent)
		e->absent = true;
	else if (!slot->clean_exit && e->target)
	{
		e->next_start = TimestampTzPlusMilliseconds(now, PC_RESTART_DELAY_MS);
		ereport(LOG,
				(errmsg("provider_connections worker for database \"%s\" stopped unexpectedly; restarting it in %d ms",
						e->name, PC_RESTART_DELAY_MS)));
	}
}

/*
 * Decide for one database: stop a worker it should not have, start one it
 * should, free a slot no longer needed. *timeout shrinks to the next
 * planned restart.
 */
static void
ServeDatabase(PcLaunchEntry *e, uint64 scan, TimestampTz now, long *timeout)
{
	bool		present = e->seen_scan == scan;
	bool		running = WorkerRunning(e);
	PcWorkerSlot slot;

	(void) ReadSlot(e->dboid, &slot);
	if (slot.hold_pid != 0 && BackendPidGetProc(slot.hold_pid) == NULL)
	{
		ChangeSlot(e->dboid, PC_SLOT_CLEAR_HOLD, slot.hold_pid);
		slot.hold_pid = 0;
	}
	if (!running && e->running)
		NoteWorkerStopped(e, &slot, now);
	e->running = running;

	if (running)
	{
		if (!present || !e->target)
			ChangeSlot(e->dboid, PC_SLOT_STOP, 0);
		return;
	}
	if (!present)
		ChangeSlot(e->dboid, PC_SLOT_FREE_GONE, 0);
	else if (!e->target)
		ChangeSlot(e->dboid, PC_SLOT_EXCLUDE, 0);
	else if (slot.hold_pid != 0)
		return;
	else if (e->absent && !slot.wanted)
		ChangeSlot(e->dboid, PC_SLOT_FREE_IDLE, 0);
	else if (now < e->next_start)
		*timeout = Min(*timeout, TimestampDifferenceMilliseconds(now, e->next_start) + 1);
	else
		StartWorker(e, now);
}

/*
 * Free slots of databases that are gone: not found by this scan and, if
 * marked wanted, not by the previous one either (a database created after
 * this scan began may have been marked already).
 */
static void
SweepSlots(uint64 scan)
{
	int			i;

	for (i = 0; i < pc_shared->nslots; i++)
	{
		PcWorkerSlot *slot = &pc_shared->slots[i];
		PcLaunchEntry *e;
		Oid			dboid;

		SpinLockAcquire(&pc_shared->mutex);
		dboid = slot->dboid;
		SpinLockRelease(&pc_shared->mutex);
		if (!OidIsValid(dboid))
			continue;
		e = hash_search(pc_launch_htab, &dboid, HASH_FIND, NULL);
		SpinLockAcquire(&pc_shared->mutex);
		if (slot->dboid == dboid && slot->pid == 0 && slot->hold_pid == 0)
		{
			if (e != NULL && e->seen_scan == scan)
				slot->missing = false;
			else if (slot->missing || !slot->wanted)
				ResetSlot(slot, InvalidOid);
			else
				slot->missing = true;
		}
		SpinLockRelease(&pc_shared->mutex);
	}
}

/* One pass of the launcher; returns how long it may sleep, in ms. */
static long
LauncherRound(uint64 scan)
{
	HASH_SEQ_STATUS seq;
	PcLaunchEntry *e;
	long		timeout = PC_LAUNCHER_NAPTIME_MS;
	TimestampTz now;

	ScanDatabases(scan);
	now = GetCurrentTimestamp();
	hash_seq_init(&seq, pc_launch_htab);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		ServeDatabase(e, scan, now, &timeout);
		if (e->seen_scan != scan && !e->running && e->handle == NULL)
			(void) hash_search(pc_launch_htab, &e->dboid, HASH_REMOVE, NULL);
	}
	SweepSlots(scan);
	return timeout;
}

/* At the launcher's exit: commits no longer wake it. */
static void
LauncherShmemExit(int code, Datum arg)
{
	SpinLockAcquire(&pc_shared->mutex);
	if (pc_shared->launcher_latch == MyLatch)
		pc_shared->launcher_latch = NULL;
	SpinLockRelease(&pc_shared->mutex);
}

/*
 * Entry point of the launcher. Workers it did not start (a previous
 * launcher's) are adopted: their slots say they run, and they set the
 * launcher's latch when they exit.
 */
void
pc_launcher_main(Datum main_arg)
{
	HASHCTL		ctl;
	MemoryContext cxt;
	uint64		scan = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
#if PG_VERSION_NUM >= 170000
	pc_wait_event = WaitEventExtensionNew("ProviderConnectionsLauncher");
#endif

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(PcLaunchEntry);
	pc_launch_htab = hash_create("provider_connections launcher databases", 16, &ctl,
								 HASH_ELEM | HASH_BLOBS);
	cxt = AllocSetContextCreate(TopMemoryContext, "provider_connections launcher",
								ALLOCSET_DEFAULT_SIZES);

	SpinLockAcquire(&pc_shared->mutex);
	pc_shared->launcher_latch = MyLatch;
	SpinLockRelease(&pc_shared->mutex);
	on_shmem_exit(LauncherShmemExit, (Datum) 0);

	for (;;)
	{
		long		timeout;

		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		MemoryContextReset(cxt);
		MemoryContextSwitchTo(cxt);
		timeout = LauncherRound(++scan);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, pc_wait_event);
	}
}

/* Register the launcher with the postmaster (not in binary-upgrade mode). */
static void
RegisterLauncher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = PC_RESTART_DELAY_MS / 1000;
	strlcpy(worker.bgw_library_name, "provider_connections", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "pc_launcher_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "provider_connections launcher", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "provider_connections launcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

/*
 * Define the workers' settings, request their shared memory, install the
 * utility hook and register the launcher. Called from _PG_init, only while
 * shared_preload_libraries is processed.
 */
void
pc_worker_init(void)
{
	DefineCustomStringVariable("provider_connections.worker_databases",
							   "Databases the background worker serves.",
							   "A comma-separated list of database names; empty serves every database where the extension is installed.",
							   &pc_worker_databases,
							   "",
							   PGC_SIGHUP,
							   GUC_LIST_INPUT,
							   CheckWorkerDatabases, AssignWorkerDatabases, NULL);
	DefineCustomIntVariable("provider_connections.worker_naptime",
							"Longest time the background worker waits between rounds.",
							"It also wakes whenever a caller commits events.",
							&pc_worker_naptime,
							1000, 10, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

#if PG_VERSION_NUM >= 150000
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = WorkerShmemRequest;
#else
	RequestAddinShmemSpace(WorkerShmemSize());
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = WorkerShmemStartup;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = WorkerProcessUtility;
	RegisterXactCallback(HoldXactCallback, NULL);

	if (!IsBinaryUpgrade)
		RegisterLauncher();
}
