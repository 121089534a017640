/*
 * launcher.c
 *		The launcher: a background worker connected to no database that
 *		reads pg_database, starts a worker for each database it serves,
 *		restarts one that died of an error, and stops those of databases it
 *		no longer serves. The design is in src/README.md.
 *
 * Copyright (c) 2026, provider_connections developers.
 * Released under the PostgreSQL License (see LICENSE).
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#if PG_VERSION_NUM >= 170000
#include "utils/wait_event.h"
#endif

#include "worker_internal.h"

/* The launcher's view of one database (its private hash table). */
typedef struct PcLaunchEntry
{
	Oid			dboid;			/* hash key */
	char		name[NAMEDATALEN];
	uint64		seen_scan;		/* last scan that found it in pg_database */
	bool		target;			/* the launcher serves it */
	PcDbState	state;			/* its worker's lifecycle (DbTransition) */
	BackgroundWorkerHandle *handle; /* the worker it started, until it stops */
	bool		warned;			/* a failure to start was logged */
	TimestampTz next_start;		/* after a failure: no start before this */
} PcLaunchEntry;

/* What the launcher does to a slot besides its state (ChangeSlot). */
typedef enum PcSlotChange
{
	PC_SLOT_FREE_IDLE,
	PC_SLOT_FREE_GONE,
	PC_SLOT_CLEAR_HOLD
} PcSlotChange;

#define PC_DB_MASK(state) (1U << (state))
/* The states a worker may be in, started or adopted. */
#define PC_DB_WORKER_STATES \
	(PC_DB_MASK(PC_DB_STARTING) | PC_DB_MASK(PC_DB_RUNNING) | PC_DB_MASK(PC_DB_STOPPING))
/* The states without a worker. */
#define PC_DB_IDLE_STATES \
	(PC_DB_MASK(PC_DB_IDLE) | PC_DB_MASK(PC_DB_EXCLUDED) | PC_DB_MASK(PC_DB_HELD) | \
	 PC_DB_MASK(PC_DB_ABSENT) | PC_DB_MASK(PC_DB_BACKOFF))

/*
 * The allowed transitions: for each state, the states it may be entered
 * from (src/README.md draws them). A state may be entered again from
 * itself only where listed: STOPPING, EXCLUDED, HELD and BACKOFF are
 * confirmed at every launcher round.
 */
static const uint32 pc_db_entered_from[PC_DB_NUM_STATES] = {
	[PC_DB_IDLE] = PC_DB_WORKER_STATES, /* its worker exited on purpose */
	[PC_DB_EXCLUDED] = PC_DB_IDLE_STATES,	/* no longer served */
	[PC_DB_STARTING] = PC_DB_IDLE_STATES,	/* worker registered */
	[PC_DB_RUNNING] = PC_DB_IDLE_STATES | PC_DB_MASK(PC_DB_STARTING),	/* claimed, or adopted */
	[PC_DB_STOPPING] = PC_DB_WORKER_STATES, /* gone or no longer served */
	[PC_DB_HELD] = PC_DB_MASK(PC_DB_IDLE) | PC_DB_MASK(PC_DB_EXCLUDED) |
	PC_DB_MASK(PC_DB_HELD) | PC_DB_MASK(PC_DB_BACKOFF), /* a hold began */
	[PC_DB_ABSENT] = PC_DB_WORKER_STATES,	/* its worker found no extension */
	[PC_DB_BACKOFF] = PC_DB_WORKER_STATES | PC_DB_IDLE_STATES, /* died, or no start */
};

static const char *const pc_db_state_names[PC_DB_NUM_STATES] = {
	[PC_DB_IDLE] = "idle",
	[PC_DB_EXCLUDED] = "excluded",
	[PC_DB_STARTING] = "starting",
	[PC_DB_RUNNING] = "running",
	[PC_DB_STOPPING] = "stopping",
	[PC_DB_HELD] = "held",
	[PC_DB_ABSENT] = "absent",
	[PC_DB_BACKOFF] = "backoff",
};

/* Known databases. */
static HTAB *pc_launch_htab = NULL;


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
	return PcDatabaseListed(NameStr(db->datname));
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
			e->state = PC_DB_IDLE;
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
	LWLockAcquire(pc_shared->lock, LW_SHARED);
	slot = PcSlotFind(e->dboid);
	running = slot != NULL && slot->pid != 0;
	LWLockRelease(pc_shared->lock);
	return running;
}

/* A copy of dboid's slot; false if it has none. */
static bool
ReadSlot(Oid dboid, PcWorkerSlot *copy)
{
	PcWorkerSlot *slot;

	LWLockAcquire(pc_shared->lock, LW_SHARED);
	slot = PcSlotFind(dboid);
	if (slot != NULL)
		memcpy(copy, slot, offsetof(PcWorkerSlot, round_done));
	LWLockRelease(pc_shared->lock);
	if (slot == NULL)
		memset(copy, 0, offsetof(PcWorkerSlot, round_done));
	return slot != NULL;
}

/* Whether e's state is one with a worker, started or adopted. */
static bool
DbHasWorker(const PcLaunchEntry *e)
{
	return (PC_DB_WORKER_STATES & PC_DB_MASK(e->state)) != 0;
}

/*
 * Move e to state to, which must be entered from e's state (an ERROR
 * otherwise: the launcher exits, and the postmaster restarts it), and copy
 * it to the database's slot. Entering STOPPING also sets the worker's latch,
 * so that it sees the request at once.
 */
static void
DbTransition(PcLaunchEntry *e, PcDbState to)
{
	PcWorkerSlot *slot;
	Latch	   *latch = NULL;

	if ((pc_db_entered_from[to] & PC_DB_MASK(e->state)) == 0)
		elog(ERROR, "provider_connections launcher: database \"%s\" cannot go from state %s to %s",
			 e->name, pc_db_state_names[e->state], pc_db_state_names[to]);
	e->state = to;
	LWLockAcquire(pc_shared->lock, LW_EXCLUSIVE);
	slot = PcSlotFind(e->dboid);
	if (slot != NULL)
	{
		slot->state = to;
		if (to == PC_DB_STOPPING)
			latch = slot->latch;
	}
	LWLockRelease(pc_shared->lock);
	if (latch != NULL)
		SetLatch(latch);
}

/*
 * What the launcher does to a slot besides its state: FREE_IDLE frees it
 * when unused (no worker, no mark, no hold); FREE_GONE frees it when no
 * worker runs (the database is gone); CLEAR_HOLD drops the hold of
 * hold_pid, a backend that is gone.
 */
static void
ChangeSlot(Oid dboid, PcSlotChange change, pid_t hold_pid)
{
	PcWorkerSlot *slot;

	LWLockAcquire(pc_shared->lock, LW_EXCLUSIVE);
	slot = PcSlotFind(dboid);
	if (slot != NULL)
	{
		switch (change)
		{
			case PC_SLOT_FREE_IDLE:
				if (slot->pid == 0 && !slot->wanted && slot->hold_pid == 0)
					PcSlotReset(slot, InvalidOid);
				break;
			case PC_SLOT_FREE_GONE:
				if (slot->pid == 0)
					PcSlotReset(slot, InvalidOid);
				break;
			case PC_SLOT_CLEAR_HOLD:
				if (slot->hold_pid == hold_pid)
					slot->hold_pid = 0;
				break;
		}
	}
	LWLockRelease(pc_shared->lock);
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
 * serves when none is free; NULL if none. The caller holds the lock.
 */
static PcWorkerSlot *
FindExcludedSlot(void)
{
	int			i;

	for (i = 0; i < pc_shared->nslots; i++)
	{
		PcWorkerSlot *slot = &pc_shared->slots[i];

		if (slot->state == PC_DB_EXCLUDED && slot->pid == 0 && slot->hold_pid == 0)
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

	LWLockAcquire(pc_shared->lock, LW_EXCLUSIVE);
	slot = PcSlotFindOrAlloc(e->dboid, &allocated);
	if (slot == NULL && (slot = FindExcludedSlot()) != NULL)
		PcSlotReset(slot, e->dboid);
	if (slot != NULL)
		slot->exit = PC_EXIT_NONE;
	LWLockRelease(pc_shared->lock);

	if (slot != NULL)
	{
		/* Before the worker runs: it must not find its slot stopping. */
		DbTransition(e, PC_DB_STARTING);
		if (RegisterWorker(e))
		{
			e->warned = false;
			return;
		}
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
	DbTransition(e, PC_DB_BACKOFF);
}

/*
 * A worker of e stopped: move e on by why it did (its slot says), to
 * ABSENT (no extension: no worker until a commit), BACKOFF (it died of an
 * error: restart it later) or IDLE (it was asked to leave).
 */
static void
WorkerStopped(PcLaunchEntry *e, const PcWorkerSlot *slot, TimestampTz now)
{
	if (slot->exit == PC_EXIT_NO_EXTENSION)
		DbTransition(e, PC_DB_ABSENT);
	else if (slot->exit == PC_EXIT_NONE && e->target)
	{
		e->next_start = TimestampTzPlusMilliseconds(now, PC_RESTART_DELAY_MS);
		ereport(LOG,
				(errmsg("provider_connections worker for database \"%s\" stopped unexpectedly; restarting it in %d ms",
						e->name, PC_RESTART_DELAY_MS)));
		DbTransition(e, PC_DB_BACKOFF);
	}
	else
		DbTransition(e, PC_DB_IDLE);
}

/*
 * Decide for one database, from its state and what its slot says: stop a
 * worker it should not have, start one it should, free a slot no longer
 * needed. *timeout shrinks to the next planned restart. The only place,
 * with StartWorker and WorkerStopped, that moves a database's state.
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
	if (!running && DbHasWorker(e))
		WorkerStopped(e, &slot, now);

	if (running)
	{
		/* Claimed by the worker started, or adopted from a previous launcher. */
		if (e->state != PC_DB_RUNNING && e->state != PC_DB_STOPPING && slot.pid != 0)
			DbTransition(e, PC_DB_RUNNING);
		if ((!present || !e->target) && DbHasWorker(e))
			DbTransition(e, PC_DB_STOPPING);
		return;
	}
	if (!present)
		ChangeSlot(e->dboid, PC_SLOT_FREE_GONE, 0);
	else if (!e->target)
		DbTransition(e, PC_DB_EXCLUDED);
	else if (slot.hold_pid != 0)
	{
		if (e->state != PC_DB_ABSENT)
			DbTransition(e, PC_DB_HELD);
	}
	else if (e->state == PC_DB_ABSENT && !slot.wanted)
		ChangeSlot(e->dboid, PC_SLOT_FREE_IDLE, 0);
	else if (now < e->next_start)
	{
		DbTransition(e, PC_DB_BACKOFF);
		*timeout = Min(*timeout, TimestampDifferenceMilliseconds(now, e->next_start) + 1);
	}
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

		LWLockAcquire(pc_shared->lock, LW_EXCLUSIVE);
		dboid = slot->dboid;
		LWLockRelease(pc_shared->lock);
		if (!OidIsValid(dboid))
			continue;
		e = hash_search(pc_launch_htab, &dboid, HASH_FIND, NULL);
		LWLockAcquire(pc_shared->lock, LW_EXCLUSIVE);
		if (slot->dboid == dboid && slot->pid == 0 && slot->hold_pid == 0)
		{
			if (e != NULL && e->seen_scan == scan)
				slot->missing = false;
			else if (slot->missing || !slot->wanted)
				PcSlotReset(slot, InvalidOid);
			else
				slot->missing = true;
		}
		LWLockRelease(pc_shared->lock);
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
		if (e->seen_scan != scan && !DbHasWorker(e) && e->handle == NULL)
			(void) hash_search(pc_launch_htab, &e->dboid, HASH_REMOVE, NULL);
	}
	SweepSlots(scan);
	return timeout;
}

/* At the launcher's exit: commits no longer wake it. */
static void
LauncherShmemExit(int code, Datum arg)
{
	LWLockAcquire(pc_shared->lock, LW_EXCLUSIVE);
	if (pc_shared->launcher_latch == MyLatch)
		pc_shared->launcher_latch = NULL;
	LWLockRelease(pc_shared->lock);
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
	/* So that pg_stat_activity and %a in log_line_prefix name it. */
	SetConfigOption("application_name", "provider_connections launcher",
					PGC_USERSET, PGC_S_SESSION);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(PcLaunchEntry);
	pc_launch_htab = hash_create("provider_connections launcher databases", 16, &ctl,
								 HASH_ELEM | HASH_BLOBS);
	cxt = AllocSetContextCreate(TopMemoryContext, "provider_connections launcher",
								ALLOCSET_DEFAULT_SIZES);

	LWLockAcquire(pc_shared->lock, LW_EXCLUSIVE);
	pc_shared->launcher_latch = MyLatch;
	LWLockRelease(pc_shared->lock);
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

/*
 * Register the launcher with the postmaster (not in binary-upgrade mode);
 * called from _PG_init when the library is preloaded.
 */
void
pc_launcher_init(void)
{
	BackgroundWorker worker;

	if (IsBinaryUpgrade)
		return;

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

