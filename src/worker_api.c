/*
 * worker_api.c
 *		What backends call of the background workers: the wake at commit
 *		(with the audit shards it wrote on Citus, and those of a COMMIT
 *		PREPARED, through the utility hook here),
 *		the wait for a round before reading the feed (pc_worker_sync), and
 *		whether a worker serves this database. The design is in
 *		src/README.md.
 *
 * Copyright (c) 2026, provider_connections developers.
 * Released under the PostgreSQL License (see LICENSE).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "commands/dbcommands.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "worker_internal.h"

static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* The slot of MyDatabaseId last found. */
static int	pc_my_slot = -1;

/* Whether the current transaction wrote events (the worker is woken at commit). */
static bool pc_wrote_events = false;
/* ... and whether it left some of their notifications to the worker. */
static bool pc_wrote_for_worker = false;

/* The slot of this backend's database (see PcSlotFindOrAlloc); under the lock. */
static PcWorkerSlot *
MySlot(bool create)
{
	PcWorkerSlot *slot;
	bool		allocated;

	if (pc_my_slot >= 0 && pc_shared->slots[pc_my_slot].dboid == MyDatabaseId)
		return &pc_shared->slots[pc_my_slot];
	slot = create ? PcSlotFindOrAlloc(MyDatabaseId, &allocated) : PcSlotFind(MyDatabaseId);
	if (slot != NULL)
		pc_my_slot = slot - pc_shared->slots;
	return slot;
}

/*
 * At commit of a transaction that wrote events: wake the worker of this
 * database when a round is needed now (round_needed: its notifications
 * wait for it), or the launcher when no worker runs, so that it starts one.
 * Returns at once when the library is not preloaded. Costs the slots'
 * LWLock, taken for a few instructions (the slot's index is remembered:
 * checking that it still holds MyDatabaseId is enough, as a database never
 * has two slots), and at most one SetLatch (safe on any PGPROC latch, even
 * a stale one). No catalog access.
 */
void
pc_worker_wake(bool round_needed)
{
	PcWorkerSlot *slot;
	Latch	   *latch = NULL;

	if (pc_shared == NULL || !OidIsValid(MyDatabaseId))
		return;
	LWLockAcquire(pc_shared->lock, LW_EXCLUSIVE);
	slot = MySlot(true);
	if (slot != NULL)
	{
		if (slot->latch != NULL)
			latch = round_needed ? slot->latch : NULL;
		else if (!slot->wanted && slot->state != PC_DB_EXCLUDED)
			latch = pc_shared->launcher_latch;
		slot->wanted = true;
	}
	PcDirtyPublish(slot);
	LWLockRelease(pc_shared->lock);
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
	LWLockAcquire(pc_shared->lock, LW_SHARED);
	slot = MySlot(false);
	serving = slot != NULL && slot->pid != 0;
	LWLockRelease(pc_shared->lock);
	return serving;
}

PG_FUNCTION_INFO_V1(provider_worker_status);

/*
 * provider_worker_status(OUT running, OUT last_round_at, OUT last_error,
 * OUT last_error_at): this database's worker as its slot shows it, for
 * provider_stats(): whether one runs, when one of its rounds last
 * committed, and the message of the last failed round and when (NULL
 * when none). Copied under the slots' lock, formed into a row outside it.
 * Without the library preloaded: not running, NULLs.
 */
Datum
provider_worker_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};
	bool		running = false;
	TimestampTz round_at = 0;
	TimestampTz error_at = 0;
	char		error[PC_LAST_ERROR_LEN];

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "provider_worker_status must return a row");
	error[0] = '\0';
	if (pc_shared != NULL && OidIsValid(MyDatabaseId))
	{
		PcWorkerSlot *slot;

		LWLockAcquire(pc_shared->lock, LW_SHARED);
		slot = MySlot(false);
		if (slot != NULL)
		{
			running = slot->pid != 0;
			round_at = slot->last_round_at;
			error_at = slot->last_error_at;
			memcpy(error, slot->last_error, sizeof(error));
		}
		LWLockRelease(pc_shared->lock);
	}
	error[sizeof(error) - 1] = '\0';

	values[0] = BoolGetDatum(running);
	values[1] = TimestampTzGetDatum(round_at);
	nulls[1] = round_at == 0;
	values[2] = CStringGetTextDatum(error);
	nulls[2] = error_at == 0;
	values[3] = TimestampTzGetDatum(error_at);
	nulls[3] = error_at == 0;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
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

	if (PcServeEveryDatabase() || !OidIsValid(MyDatabaseId))
		return true;
	name = get_database_name(MyDatabaseId);
	return name == NULL || PcDatabaseListed(name);
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
	LWLockAcquire(pc_shared->lock, LW_EXCLUSIVE);
	slot = MySlot(false);
	if (slot != NULL && slot->pid != 0 && !PcSlotStopping(slot))
	{
		pid = slot->pid;
		latch = slot->latch;
		target = slot->rounds_begun + 1;
		done_before = slot->rounds_done;
		slot->wanted = true;
		slot->sync_pending = true;
	}
	LWLockRelease(pc_shared->lock);
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

		LWLockAcquire(pc_shared->lock, LW_SHARED);
		ok = slot->rounds_ok >= target;
		over = slot->pid != pid ||
			(slot->rounds_done >= target && !slot->retry_pending);
		alive = slot->rounds_begun >= target || slot->rounds_done != done_before;
		LWLockRelease(pc_shared->lock);
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

/*
 * Note that the current transaction wrote an event (events.c) or created a
 * subscription (replication.c): its commit wakes the worker. for_worker:
 * it left a notification to the worker, which its commit then wakes at once.
 */
void
pc_worker_note_event(bool for_worker)
{
	pc_wrote_events = true;
	pc_wrote_for_worker |= for_worker;
}

/* At commit of a transaction that wrote events, wake the worker if it must notify. */
static void
WakeXactCallback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			/* When callers notified, nothing waits for the round: the naptime does. */
			if (pc_wrote_events)
				pc_worker_wake(pc_wrote_for_worker);
			PcDirtyPublish(NULL);	/* no shared memory: nothing took them */
			pc_wrote_events = false;
			pc_wrote_for_worker = false;
			break;
		case XACT_EVENT_PREPARE:
			/* Its rows are published by a COMMIT PREPARED, which marks their shards. */
			PcDirtyPrepared();
			pc_wrote_events = false;
			pc_wrote_for_worker = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			PcDirtyPublish(NULL);
			pc_wrote_events = false;
			pc_wrote_for_worker = false;
			break;
		default:
			break;
	}
}

/*
 * The statements of two-phase commit: PREPARE TRANSACTION names the GID
 * PcDirtyPrepared keeps the transaction's audit shards under (Citus
 * commits a transaction that wrote on several nodes this way; its
 * connections run these statements); a COMMIT PREPARED that succeeded
 * marks them and wakes the worker at its commit, a ROLLBACK PREPARED
 * forgets them (worker_dirty.c).
 */
static void
TwoPhaseProcessUtility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					   ProcessUtilityContext context, ParamListInfo params,
					   QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	TransactionStmtKind kind = TRANS_STMT_BEGIN;
	char		gid[GIDSIZE];

	/* Copied before running the statement, which owns its tree. */
	gid[0] = '\0';
	if (IsA(stmt, TransactionStmt))
	{
		kind = ((TransactionStmt *) stmt)->kind;
		if (((TransactionStmt *) stmt)->gid != NULL)
			strlcpy(gid, ((TransactionStmt *) stmt)->gid, GIDSIZE);
	}
	if (kind == TRANS_STMT_PREPARE)
		PcDirtyPreparing(gid);
	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	if ((kind == TRANS_STMT_COMMIT_PREPARED || kind == TRANS_STMT_ROLLBACK_PREPARED) &&
		PcDirtyFinishPrepared(gid, kind == TRANS_STMT_COMMIT_PREPARED))
		pc_worker_note_event(true);
}

/* Install the commit callback and the two-phase commit hook; called from _PG_init. */
void
pc_worker_api_init(void)
{
	RegisterXactCallback(WakeXactCallback, NULL);
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = TwoPhaseProcessUtility;
}
