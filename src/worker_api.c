/*
 * worker_api.c
 *		What backends call of the background workers: the wake at commit,
 *		the wait for a round before reading the feed (pc_worker_sync), and
 *		whether a worker serves this database. The design is in
 *		src/README.md.
 *
 * Copyright (c) 2026, provider_connections developers.
 * Released under the PostgreSQL License (see LICENSE).
 */
#include "postgres.h"

#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "utils/timestamp.h"

#include "worker_internal.h"

/* The slot of MyDatabaseId last found. */
static int	pc_my_slot = -1;

/* The slot of this backend's database (see PcSlotFindOrAlloc); under the mutex. */
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
		else if (!slot->wanted && slot->state != PC_DB_EXCLUDED)
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
	SpinLockAcquire(&pc_shared->mutex);
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

