/*
 * worker_main.c
 *		The per-database worker: a loop of rounds, each assigning feed
 *		positions (feed.c) and sending the notifications left to it, in its
 *		own transaction; it leaves when asked to, or when the extension is
 *		not installed in its database. The design is in src/README.md.
 *
 * Copyright (c) 2026, provider_connections developers.
 * Released under the PostgreSQL License (see LICENSE).
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#if PG_VERSION_NUM >= 170000
#include "utils/wait_event.h"
#endif

#include "events.h"
#include "feed.h"
#include "feed_shards.h"
#include "worker_internal.h"

/* Failures of one kind of round, for logging them without flooding the log. */
typedef struct PcFailures
{
	const char *what;			/* "send notifications", ... */
	int			count;			/* consecutive failures */
	int			unreported;		/* of which not in a WARNING */
	TimestampTz last_warned;
} PcFailures;

typedef enum PcRoundOutcome
{
	PC_ROUND_OK,
	PC_ROUND_FAILED,
	PC_ROUND_ABSENT				/* no extension (1.2+) in the database */
} PcRoundOutcome;

/* This worker's slot and database name. */
static PcWorkerSlot *pc_worker_slot = NULL;
static char pc_worker_dbname[NAMEDATALEN];
/* Whether the last round numbered the feeds of a distributed install (it paces the next). */
static bool pc_round_distributed = false;

/* Clear our slot at exit and tell the launcher and anyone waiting. */
static void
WorkerShmemExit(int code, Datum arg)
{
	Latch	   *launcher;

	LWLockAcquire(pc_shared->lock, LW_EXCLUSIVE);
	if (pc_worker_slot->pid == MyProcPid)
	{
		pc_worker_slot->pid = 0;
		pc_worker_slot->latch = NULL;
	}
	launcher = pc_shared->launcher_latch;
	LWLockRelease(pc_shared->lock);
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

	LWLockAcquire(pc_shared->lock, LW_EXCLUSIVE);
	slot = PcSlotFind(dboid);
	if (slot != NULL && slot->pid == 0 && !PcSlotStopping(slot))
	{
		slot->pid = MyProcPid;
		slot->latch = MyLatch;
		slot->exit = PC_EXIT_NONE;
		claimed = true;
	}
	else if (slot != NULL && slot->pid == 0)
		slot->exit = PC_EXIT_STOPPED;
	LWLockRelease(pc_shared->lock);
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
	LWLockAcquire(pc_shared->lock, LW_EXCLUSIVE);
	pc_worker_slot->exit = PC_EXIT_STOPPED;
	LWLockRelease(pc_shared->lock);
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

	LWLockAcquire(pc_shared->lock, LW_EXCLUSIVE);
	stay = pc_worker_slot->wanted;
	if (!stay)
	{
		pc_worker_slot->exit = PC_EXIT_NO_EXTENSION;
		pc_worker_slot->pid = 0;
		pc_worker_slot->latch = NULL;
	}
	LWLockRelease(pc_shared->lock);
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

	LWLockAcquire(pc_shared->lock, LW_SHARED);
	stop = PcSlotStopping(pc_worker_slot);
	LWLockRelease(pc_shared->lock);
	return stop;
}

/*
 * Keep a failed round's message in the slot, for provider_stats(): "could
 * not <what>: <message>", clipped to PC_LAST_ERROR_LEN on a character
 * boundary. Only the message: a detail may quote a row.
 */
static void
NoteRoundError(const PcFailures *f, const char *message, TimestampTz at)
{
	char		buf[PC_LAST_ERROR_LEN];
	int			len;

	snprintf(buf, sizeof(buf), "could not %s: %s", f->what, message);
	len = pg_mbcliplen(buf, strlen(buf), sizeof(buf) - 1);
	buf[len] = '\0';
	LWLockAcquire(pc_shared->lock, LW_EXCLUSIVE);
	memcpy(pc_worker_slot->last_error, buf, len + 1);
	pc_worker_slot->last_error_at = at;
	LWLockRelease(pc_shared->lock);
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
	NoteRoundError(f, message, now);

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

	LWLockAcquire(pc_shared->lock, LW_EXCLUSIVE);
	round = ++pc_worker_slot->rounds_begun;
	pc_worker_slot->wanted = false;
	pc_worker_slot->sync_pending = false;
	upto = pc_worker_slot->notified_upto;
	LWLockRelease(pc_shared->lock);

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
		pc_round_distributed = OidIsValid(nsp) && pc_feed_distributed(nsp);
		if (pc_round_distributed)
			n = pc_feed_shards_assign(nsp, notify);
		else if (OidIsValid(nsp))
			n = pc_feed_assign(nsp, notify ? &upto : NULL);
		else
			outcome = PC_ROUND_ABSENT;
		PopActiveSnapshot();
		CommitTransactionCommand();
		/* Only a committed round numbered what it took (a NOTIFY can still fail at commit). */
		if (pc_round_distributed)
			pc_worker_shards_settled();
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

	LWLockAcquire(pc_shared->lock, LW_EXCLUSIVE);
	pc_worker_slot->rounds_done = round;
	pc_worker_slot->retry_pending = outcome == PC_ROUND_FAILED && retry_follows;
	if (outcome == PC_ROUND_OK)
	{
		if (n >= 0)
			pc_worker_slot->rounds_ok = round;
		pc_worker_slot->last_round_at = GetCurrentTimestamp();
		if (notify)
			pc_worker_slot->notified_upto = upto;
	}
	LWLockRelease(pc_shared->lock);
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
			 * Each round is a transaction whose commit is flushed, and
			 * only one runs at a time: the commits that arrive while a
			 * round numbers and flushes wait for the next one, together.
			 * Under load a round lasts longer than the pause below (at 16
			 * durable clients most of it is spent queued for the WAL
			 * flush), so the next starts as soon as it is over. With one
			 * or two callers, rounds without any pause would each take
			 * one commit and add a flush to each: the callers' next
			 * commits would queue behind it (durable throughput at one
			 * client fell by about half in bench/run.sh). Rounds
			 * therefore start at most every PC_ROUND_INTERVAL_MS: 2 ms
			 * kept that throughput and halved the delivery latency of the
			 * 5 ms first used (bench/README.md, "Round pacing"). A reader
			 * waiting in pc_worker_sync is not made to wait.
			 *
			 * On a distributed install a round visits each local audit
			 * shard that got events (feed_shards.c), five to seven
			 * statements per shard however few events it numbers: there
			 * rounds start at most every PC_SHARD_ROUND_INTERVAL_MS, which
			 * puts more events into each visit (routed connects, 8
			 * clients: the workers' rounds took 0.16 ms of CPU per call
			 * at 20 ms against 0.22 at 5 ms, their node 10% less).
			 */
			for (;;)
			{
				early = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
														TimestampTzPlusMilliseconds(last_round, pc_round_distributed ?
																					PC_SHARD_ROUND_INTERVAL_MS :
																					PC_ROUND_INTERVAL_MS));
				/* A reader of the feed waits for this round: no pause for it. */
				LWLockAcquire(pc_shared->lock, LW_EXCLUSIVE);
				if (pc_worker_slot->sync_pending)
					early = 0;
				LWLockRelease(pc_shared->lock);
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

		/* A full batch (feed.h) is followed by another round at once. */
		again = outcome == PC_ROUND_OK && n >= PC_FEED_NOTIFY_BATCH;
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
	/*
	 * Read committed whatever default_transaction_isolation says: each
	 * statement of a round must see what committed before it started, as
	 * the dirty shards a round takes before its statements (worker_dirty.c)
	 * assume.
	 */
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
	/* So that pg_stat_activity and %a in log_line_prefix name it. */
	SetConfigOption("application_name", "provider_connections worker",
					PGC_USERSET, PGC_S_SESSION);

	StartTransactionCommand();
	name = get_database_name(dboid);
	strlcpy(pc_worker_dbname, name ? name : "?", NAMEDATALEN);
	CommitTransactionCommand();

	if (!ClaimSlot(dboid))
		proc_exit(0);
	WorkerLoop();
}

