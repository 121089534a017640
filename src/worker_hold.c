/*
 * worker_hold.c
 *		Holding a database for the commands that need it to themselves (DROP
 *		DATABASE, ALTER DATABASE RENAME or SET TABLESPACE, the template of
 *		CREATE DATABASE): a utility hook stops the database's worker and
 *		keeps workers out until the command's transaction ends. Needed
 *		while those commands cannot interrupt a background worker
 *		themselves: PostgreSQL 19's BGWORKER_INTERRUPTIBLE flag does that,
 *		but the versions supported here (15 to 18) do not have it. The
 *		design is in src/README.md.
 *
 * Copyright (c) 2026, provider_connections developers.
 * Released under the PostgreSQL License (see LICENSE).
 */
#include "postgres.h"

#include <signal.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/condition_variable.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "worker_internal.h"

/* A database held by the current transaction (see HoldDatabase). */
typedef struct PcHold
{
	Oid			dboid;
	bool		dropping;		/* DROP DATABASE: its slot goes with it */
	bool		had_worker;		/* start a worker again afterwards */
	bool		allocated;		/* the hold took a free slot */
} PcHold;

/* Databases held by this backend's transaction. */
static PcHold pc_holds[PC_MAX_HOLDS];
static int	pc_nholds = 0;

static ProcessUtility_hook_type prev_ProcessUtility = NULL;


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
 * Whether the current role passes the ownership check the command makes
 * of dboid: the owner (or a superuser); for CREATE DATABASE ... TEMPLATE,
 * any role with CREATEDB when the template is marked as one.
 */
static bool
MayHoldDatabase(Node *stmt, Oid dboid)
{
	if (IsA(stmt, CreatedbStmt))
	{
		HeapTuple	tup = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(dboid));
		bool		is_template = false;

		if (HeapTupleIsValid(tup))
		{
			is_template = ((Form_pg_database) GETSTRUCT(tup))->datistemplate;
			ReleaseSysCache(tup);
		}
		if (is_template)
			return true;
	}
#if PG_VERSION_NUM >= 160000
	return object_ownercheck(DatabaseRelationId, dboid, GetUserId());
#else
	return pg_database_ownercheck(dboid, GetUserId());
#endif
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
	Oid			dboid;

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
	if (name == NULL)
		return InvalidOid;
	dboid = get_database_oid(name, true);
	/*
	 * Only for a caller the command itself will let through: a role that
	 * does not own the database (nor may copy it as a template) would fail
	 * with "must be owner" after our worker had been stopped, so any role
	 * could otherwise stop any database's worker by repeating the command.
	 */
	if (OidIsValid(dboid) && !MayHoldDatabase(stmt, dboid))
		return InvalidOid;
	return dboid;
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

	LWLockAcquire(pc_shared->lock, LW_EXCLUSIVE);
	slot = PcSlotFind(dboid);
	LWLockRelease(pc_shared->lock);
	if (slot == NULL)
		return;
	ConditionVariablePrepareToSleep(&slot->round_done);
	for (;;)
	{
		pid_t		pid = 0;
		Latch	   *latch = NULL;
		long		waited;

		LWLockAcquire(pc_shared->lock, LW_EXCLUSIVE);
		if (slot->dboid == dboid)
		{
			pid = slot->pid;
			latch = slot->latch;
		}
		LWLockRelease(pc_shared->lock);
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
	LWLockAcquire(pc_shared->lock, LW_EXCLUSIVE);
	slot = PcSlotFindOrAlloc(dboid, &hold.allocated);
	if (slot != NULL && (slot->hold_pid == 0 || slot->hold_pid == MyProcPid) &&
		(i < pc_nholds || pc_nholds < PC_MAX_HOLDS))
	{
		mine = true;
		hold.had_worker = slot->pid != 0;
		slot->hold_pid = MyProcPid;
	}
	held = slot != NULL && slot->hold_pid != 0;
	LWLockRelease(pc_shared->lock);

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

	LWLockAcquire(pc_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < pc_nholds; i++)
	{
		PcHold	   *hold = &pc_holds[i];
		PcWorkerSlot *slot = PcSlotFind(hold->dboid);

		if (slot == NULL || slot->hold_pid != MyProcPid)
			continue;
		slot->hold_pid = 0;
		if (slot->pid != 0)
			continue;
		if ((hold->dropping && committed) ||
			(hold->allocated && !slot->wanted))
			PcSlotReset(slot, InvalidOid);
		else if (hold->had_worker)
		{
			slot->wanted = true;
			launcher = pc_shared->launcher_latch;
		}
	}
	LWLockRelease(pc_shared->lock);
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
 * fail with "database is being accessed by other users".
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

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
							queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
}


/* Install the utility hook and the transaction callback; from _PG_init. */
void
pc_worker_hold_init(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = WorkerProcessUtility;
	RegisterXactCallback(HoldXactCallback, NULL);
}
