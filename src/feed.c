/*
 * feed.c
 *		Commit-ordered positions for the event feed.
 *
 * A consumer that was not listening when a NOTIFY went out catches up with
 * provider_events_since(after_position), reading audit rows in
 * global_position order. For "never miss, never twice" a position must be
 * final once a reader can see it: no event may later become visible with a
 * smaller position. Neither audit ids nor transaction ids give that: a
 * transaction can take id 5, another id 6 and commit first (so a reader
 * that saw 6 skips 5), and xids are taken in start order, not commit order.
 *
 * Positions are therefore handed out in commit order. At pre-commit, a
 * transaction that wrote audit rows takes the lock PostgreSQL's own NOTIFY
 * uses to put notifications in commit order (async.c, PreCommit_Notify: an
 * AccessExclusiveLock on database 0, held until after the commit is
 * visible), numbers its rows from provider_event_position_seq and commits.
 * The next such transaction can only number its rows after the previous one
 * is visible, so a snapshot that sees position p sees every committed
 * position below p. Our transactions NOTIFY anyway and would take that lock
 * a moment later, so this adds no new point of serialization.
 *
 * Positions live in provider_event_positions, dumped with the extension's
 * data, so they survive pg_dump and restore, and restored rows (which do not
 * pass through this code) keep theirs.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_class.h"
#include "catalog/pg_database.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "feed.h"
#include "plans.h"

/* The range of audit ids the current transaction wrote; 0 when none. */
static int64 pc_feed_min_id = 0;
static int64 pc_feed_max_id = 0;
static Oid	pc_feed_schema = InvalidOid;

void
pc_feed_note_event(Oid nsp, int64 audit_id)
{
	if (pc_feed_max_id == 0)
		pc_feed_min_id = audit_id;
	pc_feed_min_id = Min(pc_feed_min_id, audit_id);
	pc_feed_max_id = Max(pc_feed_max_id, audit_id);
	pc_feed_schema = nsp;
}

static Oid	RelationOwner(Oid relid);

static void
Forget(void)
{
	pc_feed_min_id = pc_feed_max_id = 0;
	pc_feed_schema = InvalidOid;
}

/*
 * Give this transaction's audit rows their positions. Rows of ours in the
 * noted id range are those inserted by this transaction or one of its
 * committed subtransactions; rows of aborted subtransactions are invisible.
 */
static void
AssignPositions(void)
{
	Datum		args[2];
	Datum	   *ids;
	Datum	   *positions;
	int			n = 0;
	uint64		i;
	Oid			seq;

	Oid			save_userid;
	int			save_sec_context;

	/* Before 1.1 there is no feed table: nothing to do. */
	seq = get_relname_relid("provider_event_position_seq", pc_feed_schema);
	if (!OidIsValid(seq))
		return;

	LockSharedObject(DatabaseRelationId, InvalidOid, 0, AccessExclusiveLock);

	/*
	 * At commit the caller's SECURITY DEFINER context is gone; callers hold
	 * no rights on the feed tables, so act as their owner, restricted the way
	 * PostgreSQL's own maintenance commands are.
	 */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(RelationOwner(seq),
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);

	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	pc_plans_use_schema(pc_feed_schema);

	args[0] = Int64GetDatum(pc_feed_min_id);
	args[1] = Int64GetDatum(pc_feed_max_id);
	if (SPI_execute_plan(pc_plan(PC_PLAN_FEED_OWN_ROWS), args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read this transaction's audit rows");

	ids = palloc(sizeof(Datum) * (SPI_processed + 1));
	positions = palloc(sizeof(Datum) * (SPI_processed + 1));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		bool		isnull;
		TransactionId xmin = DatumGetTransactionId(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));

		if (!TransactionIdIsCurrentTransactionId(xmin))
			continue;
		ids[n] = SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull);
		positions[n] = DirectFunctionCall1(nextval_oid, ObjectIdGetDatum(seq));
		n++;
	}

	if (n > 0)
	{
		args[0] = PointerGetDatum(construct_array(positions, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		args[1] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		if (SPI_execute_plan(pc_plan(PC_PLAN_FEED_INSERT), args, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not record event positions");
	}

	SPI_finish();
	PopActiveSnapshot();
	SetUserIdAndSecContext(save_userid, save_sec_context);
}

/* The owner of a relation, from the syscache. */
static Oid
RelationOwner(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

static void
FeedXactCallback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (pc_feed_max_id != 0)
			{
				AssignPositions();
				Forget();
			}
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			Forget();
			break;
		default:
			break;
	}
}

void
pc_feed_init(void)
{
	RegisterXactCallback(FeedXactCallback, NULL);
}
