/*
 * status.c
 *		The connection status state machine and the trigger that enforces it.
 *
 * provider_connections_guard runs BEFORE INSERT OR UPDATE on every row, so a
 * direct UPDATE is held to the same rules as provider_disconnect and
 * provider_refresh_tokens, which consult the same table below:
 *
 *	pending -> active | failed		active -> active | expired | revoked
 *	expired | revoked | failed -> active	any -> disconnected (terminal)
 *
 * and to two invariants on the new row: an active row holds credentials,
 * a disconnected row holds none. New rows start pending or active, and a
 * row's identity (id, user_id, provider_id, created_at) never changes,
 * which is what lets the functions check ownership before taking the lock.
 *
 * Rows that already lived elsewhere come in with the status they had: a
 * COPY (pg_restore, a bulk load of existing connections) and logical
 * replication (session_replication_role = replica) may insert any status.
 * The credentials invariants still apply to them.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_enum.h"
#include "commands/trigger.h"
#include "nodes/parsenodes.h"
#include "nodes/plannodes.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "tcop/pquery.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "status.h"

static const char *const pc_status_names[PC_NUM_STATUSES] = {
	"pending", "active", "expired", "revoked", "failed", "disconnected"
};

/* allowed[from][to]; the diagonal (no change) is handled separately. */
static const bool pc_allowed[PC_NUM_STATUSES][PC_NUM_STATUSES] = {
	/* to:     pending active expired revoked failed disconnected */
	[PC_STATUS_PENDING] = {false, true, false, false, true, true},
	[PC_STATUS_ACTIVE] = {false, true, true, true, false, true},
	[PC_STATUS_EXPIRED] = {false, true, false, false, false, true},
	[PC_STATUS_REVOKED] = {false, true, false, false, false, true},
	[PC_STATUS_FAILED] = {false, true, false, false, false, true},
	[PC_STATUS_DISCONNECTED] = {false, false, false, false, false, true},
};

/* The enum label of a status, as in provider_connection_status. */
static const char *
StatusName(PcStatus status)
{
	Assert(status >= 0 && status < PC_NUM_STATUSES);
	return pc_status_names[status];
}

PcStatus
pc_status_from_name(const char *name)
{
	int			i;

	for (i = 0; i < PC_NUM_STATUSES; i++)
		if (strcmp(name, pc_status_names[i]) == 0)
			return (PcStatus) i;
	elog(ERROR, "unknown provider connection status \"%s\"", name);
	return PC_STATUS_PENDING;			/* keep compiler quiet */
}

bool
pc_transition_allowed(PcStatus from, PcStatus to)
{
	return from == to || pc_allowed[from][to];
}

/* The status held in an enum datum, by its label. */
static PcStatus
StatusFromEnumDatum(Datum value)
{
	HeapTuple	tup;
	PcStatus	status;

	tup = SearchSysCache1(ENUMOID, value);
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for enum value %u", DatumGetObjectId(value));
	status = pc_status_from_name(NameStr(((Form_pg_enum) GETSTRUCT(tup))->enumlabel));
	ReleaseSysCache(tup);
	return status;
}

static int
AttnumOf(Relation rel, const char *name)
{
	int			attnum = SPI_fnumber(RelationGetDescr(rel), name);

	if (attnum <= 0)
		elog(ERROR, "provider_connections has no column \"%s\"", name);
	return attnum;
}

/*
 * Whether the statement being run is COPY ... FROM into rel itself: what
 * pg_restore and bulk loads of existing connections run. A COPY TO whose
 * query calls a function that inserts is not one.
 */
static bool
CopyingInto(Relation rel)
{
	PlannedStmt *stmt;
	CopyStmt   *copy;

	if (ActivePortal == NULL || ActivePortal->commandTag != CMDTAG_COPY ||
		list_length(ActivePortal->stmts) != 1)
		return false;
	stmt = linitial_node(PlannedStmt, ActivePortal->stmts);
	if (stmt->utilityStmt == NULL || !IsA(stmt->utilityStmt, CopyStmt))
		return false;
	copy = (CopyStmt *) stmt->utilityStmt;
	return copy->is_from && copy->relation != NULL &&
		RangeVarGetRelid(copy->relation, NoLock, true) == RelationGetRelid(rel);
}

/* Whether the rows being inserted existed before (a restore or a replica). */
static bool
InsertingExistingRows(Relation rel)
{
	return SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA ||
		CopyingInto(rel);
}

/* Identity columns must keep their value across an UPDATE. */
static void
CheckIdentityKept(Relation rel, HeapTuple oldtup, HeapTuple newtup)
{
	static const char *const identity[] = {"id", "user_id", "provider_id", "created_at"};
	TupleDesc	desc = RelationGetDescr(rel);
	int			i;

	for (i = 0; i < lengthof(identity); i++)
	{
		int			attnum = AttnumOf(rel, identity[i]);
		Form_pg_attribute att = TupleDescAttr(desc, attnum - 1);
		bool		oldnull,
					newnull;
		Datum		oldval = heap_getattr(oldtup, attnum, desc, &oldnull);
		Datum		newval = heap_getattr(newtup, attnum, desc, &newnull);

		if (oldnull != newnull ||
			(!oldnull && !datumIsEqual(oldval, newval, att->attbyval, att->attlen)))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("column \"%s\" of a provider connection cannot be changed",
							identity[i]),
					 errhint("Disconnect the connection and create a new one instead.")));
	}
}

/* SQL trigger function: provider_connections_guard() */
PG_FUNCTION_INFO_V1(provider_connections_guard);

/*
 * BEFORE INSERT OR UPDATE row trigger on provider_connections: rejects any
 * write that breaks the state machine or its invariants. SQLSTATE 55000
 * (object_not_in_prerequisite_state) for a refused status change, 23514
 * (check_violation) for a broken credentials invariant.
 */
Datum
provider_connections_guard(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	HeapTuple	newtup;
	int			status_att;
	int			creds_att;
	bool		isnull;
	Datum		value;
	PcStatus	to;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!(TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		  TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event)))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("provider_connections_guard must run BEFORE INSERT OR UPDATE FOR EACH ROW")));

	rel = trigdata->tg_relation;
	desc = RelationGetDescr(rel);
	newtup = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
		trigdata->tg_newtuple : trigdata->tg_trigtuple;
	status_att = AttnumOf(rel, "status");
	creds_att = AttnumOf(rel, "encrypted_credentials");

	/* status is NOT NULL; let that constraint report a NULL. */
	value = heap_getattr(newtup, status_att, desc, &isnull);
	if (isnull)
		return PointerGetDatum(newtup);
	to = StatusFromEnumDatum(value);

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		if (to != PC_STATUS_PENDING && to != PC_STATUS_ACTIVE && !InsertingExistingRows(rel))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("a new provider connection cannot start as \"%s\"",
							StatusName(to)),
					 errdetail("New connections start as \"pending\" or \"active\".")));
	}
	else
	{
		HeapTuple	oldtup = trigdata->tg_trigtuple;
		PcStatus	from;

		CheckIdentityKept(rel, oldtup, newtup);
		from = StatusFromEnumDatum(heap_getattr(oldtup, status_att, desc, &isnull));
		if (!pc_transition_allowed(from, to))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("illegal provider connection status transition from \"%s\" to \"%s\"",
							StatusName(from), StatusName(to)),
					 from == PC_STATUS_DISCONNECTED ?
					 errdetail("\"disconnected\" is terminal; create a new connection instead.") : 0));
	}

	(void) heap_getattr(newtup, creds_att, desc, &isnull);
	if (to == PC_STATUS_ACTIVE && isnull)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("an active provider connection must hold credentials")));
	if (to == PC_STATUS_DISCONNECTED && !isnull)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("a disconnected provider connection cannot hold credentials")));

	return PointerGetDatum(newtup);
}
