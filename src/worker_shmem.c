/*
 * worker_shmem.c
 *		The background workers' settings and shared memory: one slot per
 *		database, and the functions that find, take and free slots.
 *		pc_worker_init sets them up from _PG_init. The design is in
 *		src/README.md.
 *
 * Copyright (c) 2026, provider_connections developers.
 * Released under the PostgreSQL License (see LICENSE).
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "utils/varlena.h"

#include "guc_compat.h"
#include "worker_internal.h"

/* provider_connections.worker_databases, parsed by its check hook. */
typedef struct PcDatabaseList
{
	int			count;
	char		names[FLEXIBLE_ARRAY_MEMBER];	/* count NUL-terminated names */
} PcDatabaseList;

/* Settings. */
static char *pc_worker_databases = NULL;
int			pc_worker_naptime = 1000;
static PcDatabaseList *pc_db_list = NULL;

/* Shared memory: NULL unless the library was preloaded. */
PcWorkerShared *pc_shared = NULL;

/* The wait event of the workers' and their callers' waits. */
uint32		pc_wait_event = PG_WAIT_EXTENSION;

static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;

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
bool
PcServeEveryDatabase(void)
{
	return pc_db_list == NULL || pc_db_list->count == 0;
}

/* Whether worker_databases names the database called name. */
bool
PcDatabaseListed(const char *name)
{
	const char *p;
	int			i;

	if (PcServeEveryDatabase())
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

/* shmem_request_hook: ask for our shared memory. */
static void
WorkerShmemRequest(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(WorkerShmemSize());
	RequestNamedLWLockTranche(PC_LWLOCK_TRANCHE, 1);
}

/* Make a slot free; the caller holds the lock. The CV stays as it is. */
void
PcSlotReset(PcWorkerSlot *slot, Oid dboid)
{
	slot->dboid = dboid;
	slot->state = PC_DB_IDLE;
	slot->pid = 0;
	slot->latch = NULL;
	slot->exit = PC_EXIT_NONE;
	slot->hold_pid = 0;
	slot->wanted = false;
	slot->sync_pending = false;
	slot->retry_pending = false;
	slot->missing = false;
	slot->notified_upto = -1;
	/* A new worker's first round visits every shard: a full set (worker_dirty.c). */
	memset(&slot->dirty, 0xff, sizeof(slot->dirty));
	/* What provider_stats() shows belongs to the database, not the slot. */
	slot->last_round_at = 0;
	slot->last_error_at = 0;
	slot->last_error[0] = '\0';
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
		pc_shared->lock = &(GetNamedLWLockTranche(PC_LWLOCK_TRANCHE))->lock;
		pc_shared->launcher_latch = NULL;
		for (i = 0; i < PC_MAX_PREPARED; i++)
			pc_shared->prepared[i].dboid = InvalidOid;
		pc_shared->nslots = SlotCount();
		for (i = 0; i < pc_shared->nslots; i++)
		{
			PcWorkerSlot *slot = &pc_shared->slots[i];

			PcSlotReset(slot, InvalidOid);
			slot->rounds_begun = slot->rounds_done = slot->rounds_ok = 0;
			ConditionVariableInit(&slot->round_done);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/* The slot of dboid, or NULL; the caller holds the lock. */
PcWorkerSlot *
PcSlotFind(Oid dboid)
{
	int			i;

	for (i = 0; i < pc_shared->nslots; i++)
		if (pc_shared->slots[i].dboid == dboid)
			return &pc_shared->slots[i];
	return NULL;
}

/* The slot of dboid, taking a free one if needed; NULL if none is free. */
PcWorkerSlot *
PcSlotFindOrAlloc(Oid dboid, bool *allocated)
{
	PcWorkerSlot *slot = PcSlotFind(dboid);

	*allocated = false;
	if (slot == NULL && (slot = PcSlotFind(InvalidOid)) != NULL)
	{
		PcSlotReset(slot, dboid);
		*allocated = true;
	}
	return slot;
}

/*
 * Define the workers' settings and request their shared memory. Called
 * from _PG_init, only while shared_preload_libraries is processed.
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

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = WorkerShmemRequest;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = WorkerShmemStartup;
}
