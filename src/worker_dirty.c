/*
 * worker_dirty.c
 *		Which audit shards of a distributed install got events since the
 *		worker's last round, so that its rounds visit those shards only.
 *
 * On Citus a node's worker runs a round per audit shard placed on the node
 * (feed_shards.c), five or six statements each. Visiting every placement on
 * every wake cost the workers about a third of a node's CPU under load,
 * most of it on shards where nothing had happened. So the INSERT trigger
 * that stamps an audit row with the storing node's xid (audit_stamp.c)
 * notes the shard in a backend-local set; the commit that makes the rows
 * visible ORs that set into the database's slot (pc_worker_wake, under the
 * slots' lock, after the commit is visible to new snapshots); a round takes
 * and clears the slot's set before its first snapshot and visits the shards
 * in it. A commit that lands after the take leaves its bit for the next
 * round, and every row committed before the take is in the snapshots the
 * round's statements take after it: no shard with a committed, unnumbered
 * row is skipped.
 *
 * The set is a bitmap of PC_DIRTY_SHARD_BITS bits indexed by the shard
 * table's OID modulo its size: two shards on one bit only cost a visit.
 * What the commits do not mark is covered otherwise:
 *  - the first round of a worker visits every placement (a reset slot's
 *    set is full);
 *  - a prepared transaction's rows (Citus commits a transaction that wrote
 *    on several nodes with two-phase commit) are published by a COMMIT
 *    PREPARED in another session: PREPARE TRANSACTION keeps the shards in
 *    shared memory under the GID (PC_MAX_PREPARED of them), and a COMMIT
 *    PREPARED of that GID that succeeded marks them;
 *  - a round that failed, also at commit (a NOTIFY can fail there), keeps
 *    what it took for the next round (carry; the worker settles a round
 *    only once it committed);
 *  - a round that does not notify (notifications held, or backing off
 *    after they failed) keeps every shard it visits, whose numbered rows
 *    wait for a notifying round;
 *  - a placement whose round left work (a full notification batch, xids
 *    left to the next round) stays in the set (pc_worker_keep_shard);
 *  - anything else (rows written with the trigger disabled, a shard that
 *    arrived by a move or a split, a prepared transaction that outlived a
 *    restart or did not fit): a sweep of every placement, due half a
 *    worker_naptime after the last one, so at most 1.5 naptimes apart as
 *    the worker sleeps up to a naptime between rounds.
 * The worker's rounds run read committed (worker_main.c), so every
 * statement sees what committed before the round took the set.
 *
 * Copyright (c) 2026, provider_connections developers.
 * Released under the PostgreSQL License (see LICENSE).
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "utils/timestamp.h"

#include "worker_internal.h"

/* Shards this backend's transaction wrote audit rows into; published at commit. */
static PcDirtyShards pc_my_dirty;
static bool pc_my_dirty_any = false;

/* The worker's own: what its round in progress took, and what it keeps for the next. */
static PcDirtyShards pc_carry;
static PcDirtyShards pc_keep;
static bool pc_carry_valid = false;
static TimestampTz pc_last_sweep = 0;

/* The GID of the PREPARE TRANSACTION this backend runs, until the transaction is prepared. */
static char pc_prepare_gid[GIDSIZE];


/* Set the bit of relid in set. */
static inline void
DirtySet(PcDirtyShards *set, Oid relid)
{
	uint32		bit = relid % PC_DIRTY_SHARD_BITS;

	set->words[bit / 32] |= UINT32_C(1) << (bit % 32);
}

/* Add the shards of src to dst. */
static inline void
DirtyUnion(PcDirtyShards *dst, const PcDirtyShards *src)
{
	for (int i = 0; i < PC_DIRTY_SHARD_WORDS; i++)
		dst->words[i] |= src->words[i];
}

/* Fill set: every shard is to be visited. */
static void
DirtyFill(PcDirtyShards *set)
{
	memset(set->words, 0xff, sizeof(set->words));
}

/*
 * Note that the current transaction wrote an audit row into shard table
 * relid (the stamp trigger, on the node that stores it, which also wakes
 * the worker at commit): its commit marks the shard for the next round.
 */
void
pc_worker_note_shard(Oid relid)
{
	DirtySet(&pc_my_dirty, relid);
	pc_my_dirty_any = true;
}

/* PREPARE TRANSACTION gid runs: PcDirtyPrepared keeps this transaction's shards under gid. */
void
PcDirtyPreparing(const char *gid)
{
	strlcpy(pc_prepare_gid, gid, GIDSIZE);
}

/*
 * OR what this backend's transaction noted into slot's set and forget it;
 * called at commit under the slots' lock (pc_worker_wake). Without a slot
 * (slot NULL), or at abort and prepare, just forget.
 */
void
PcDirtyPublish(PcWorkerSlot *slot)
{
	if (!pc_my_dirty_any)
		return;
	if (slot != NULL)
		DirtyUnion(&slot->dirty, &pc_my_dirty);
	memset(&pc_my_dirty, 0, sizeof(pc_my_dirty));
	pc_my_dirty_any = false;
}

/*
 * The worker, at the start of a round: into *set, the shards to visit,
 * taking them out of the slot. Returns false when the round must visit
 * every placement instead (see the file header). Whatever it returns is
 * carried to the next round until pc_worker_shards_settled says this one
 * finished.
 */
bool
pc_worker_take_dirty_shards(PcDirtyShards *set)
{
	TimestampTz now = GetCurrentTimestamp();
	PcWorkerSlot *slot;
	bool		sweep;
	int			i;

	/*
	 * Half the naptime: the worker may sleep a whole naptime after a round
	 * that was not a sweep, so sweeps come at most 1.5 naptimes apart.
	 */
	sweep = TimestampDifferenceExceeds(pc_last_sweep, now, pc_worker_naptime / 2);
	LWLockAcquire(pc_shared->lock, LW_EXCLUSIVE);
	slot = PcSlotFind(MyDatabaseId);
	if (slot == NULL)
		sweep = true;
	else
	{
		*set = slot->dirty;
		memset(&slot->dirty, 0, sizeof(slot->dirty));
	}
	LWLockRelease(pc_shared->lock);

	if (sweep)
	{
		DirtyFill(set);
		pc_last_sweep = now;
	}
	if (pc_carry_valid)
		DirtyUnion(set, &pc_carry);
	pc_carry = *set;
	pc_carry_valid = true;
	memset(&pc_keep, 0, sizeof(pc_keep));
	for (i = 0; i < PC_DIRTY_SHARD_WORDS; i++)
		if (set->words[i] != PG_UINT32_MAX)
			return true;
	return false;
}

/* Whether shard table relid is in set. */
bool
pc_worker_shard_dirty(const PcDirtyShards *set, Oid relid)
{
	uint32		bit = relid % PC_DIRTY_SHARD_BITS;

	return (set->words[bit / 32] & (UINT32_C(1) << (bit % 32))) != 0;
}

/* The worker: shard table relid has work left; visit it in the next round too. */
void
pc_worker_keep_shard(Oid relid)
{
	DirtySet(&pc_keep, relid);
}

/* The worker: the round that took the set finished; carry only what it kept. */
void
pc_worker_shards_settled(void)
{
	pc_carry = pc_keep;
	pc_carry_valid = true;
}

/*
 * At PREPARE TRANSACTION of a transaction that wrote audit rows (called from
 * the commit callback, once the transaction is prepared): keep its shards
 * under its GID in shared memory, for its COMMIT PREPARED to mark. When
 * the table is full, every later COMMIT PREPARED marks every shard.
 */
void
PcDirtyPrepared(void)
{
	int			i;

	if (pc_my_dirty_any && pc_shared != NULL && pc_prepare_gid[0] != '\0')
	{
		LWLockAcquire(pc_shared->lock, LW_EXCLUSIVE);
		for (i = 0; i < PC_MAX_PREPARED; i++)
			if (!OidIsValid(pc_shared->prepared[i].dboid))
				break;
		/* Past PC_MAX_PREPARED the sweep finds the rows, as after a restart. */
		if (i < PC_MAX_PREPARED)
		{
			PcPreparedShards *entry = &pc_shared->prepared[i];

			entry->dboid = MyDatabaseId;
			strlcpy(entry->gid, pc_prepare_gid, GIDSIZE);
			entry->shards = pc_my_dirty;
		}
		LWLockRelease(pc_shared->lock);
	}
	pc_prepare_gid[0] = '\0';
	PcDirtyPublish(NULL);
}

/*
 * After COMMIT PREPARED or ROLLBACK PREPARED of gid ran, in this database:
 * take the entry PcDirtyPrepared kept (called once the statement
 * succeeded, so a COMMIT PREPARED that failed leaves it for the retry). On
 * commit its shards are marked when this statement's own transaction
 * commits, as the prepared transaction's rows are visible by then; returns
 * whether there are any (the caller then wakes the worker at that commit).
 */
bool
PcDirtyFinishPrepared(const char *gid, bool commit)
{
	bool		found = false;
	int			i;

	if (pc_shared == NULL || gid == NULL)
		return false;
	LWLockAcquire(pc_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < PC_MAX_PREPARED && !found; i++)
	{
		PcPreparedShards *entry = &pc_shared->prepared[i];

		if (entry->dboid == MyDatabaseId && strcmp(entry->gid, gid) == 0)
		{
			found = true;
			if (commit)
				DirtyUnion(&pc_my_dirty, &entry->shards);
			entry->dboid = InvalidOid;
		}
	}
	LWLockRelease(pc_shared->lock);
	if (!commit || !found)
		return false;
	pc_my_dirty_any = true;
	return true;
}
