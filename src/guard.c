/*
 * guard.c
 *		The trigger that holds every write path to the state machine.
 *
 * provider_connections_guard runs BEFORE INSERT OR UPDATE OR DELETE on
 * every row, so a direct UPDATE is held to the same rules as
 * provider_disconnect and provider_refresh_tokens, which consult the same
 * table (status.c), and to two invariants on the new row: an active row
 * holds credentials, a disconnected row holds none. New rows start pending
 * or active, and a row's identity (id, user_id, provider_id, created_at) never changes,
 * which is what lets the functions check ownership before taking the lock.
 *
 * Rows that already lived elsewhere come in with the status they had: a
 * COPY (pg_restore, a bulk load of existing connections) and logical
 * replication (session_replication_role = replica) may insert any status.
 * The credentials invariants still apply to them, and so does the seal: a
 * value stored in encrypted_credentials must start with our seal header.
 *
 * No write path escapes the trail: a status change made by a direct UPDATE,
 * not by one of our functions (which record their own events), is recorded
 * here as a ProviderConnectionStatusChanged event, with the old and new
 * status and the role, and notified like the others (1.3 schemas on); a
 * direct DELETE as a ProviderConnectionDeleted event (1.4 on). TRUNCATE,
 * which could record neither, is refused by the same function, as a
 * statement trigger. Only a real
 * apply worker, and an operator's repair on a subscriber, write unrecorded:
 * session_replication_role = replica alone hides nothing.
 *
 * On a logical replication subscriber (replication.c) the rows come from
 * the publisher: other writes are refused there, but an operator's under
 * session_replication_role = replica, and the apply worker does not check
 * transitions again (it applies what the publisher's guard accepted, also
 * to a row that diverged on the subscriber, which then converges). The
 * invariants and the identity check still apply to it.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "nodes/plannodes.h"
#include "tcop/pquery.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/rel.h"
#include "utils/uuid.h"

#include "command.h"
#include "crypto.h"
#include "events.h"
#include "plans.h"
#include "replication.h"
#include "status.h"

/* The attribute number of column name of provider_connections. */
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

/* A uuid column of a row, or NULL. */
static const pg_uuid_t *
UuidAttr(Relation rel, HeapTuple tup, const char *name)
{
	bool		isnull;
	Datum		d = heap_getattr(tup, AttnumOf(rel, name), RelationGetDescr(rel), &isnull);

	return isnull ? NULL : DatumGetUUIDP(d);
}

/*
 * Whether an UPDATE names a new call in last_call_id (1.4 on): our commands
 * do, and record their own events. Read on a distributed install only: on
 * one node pc_command_writing() says it, and a direct UPDATE that sets the
 * column is still recorded. Where the command ran is not always
 * where the row is: on Citus a call run on the coordinator changes a shard
 * on a worker, whose guard cannot see pc_command_writing(). A direct
 * UPDATE leaves the column alone and is recorded; one that sets it says it
 * is a call recording itself (the column is documented so).
 */
static bool
CallDeclared(Relation rel, HeapTuple oldtup, HeapTuple newtup)
{
	int			att = SPI_fnumber(RelationGetDescr(rel), "last_call_id");
	bool		oldnull,
				newnull;
	Datum		oldval,
				newval;

	if (att <= 0)
		return false;
	newval = heap_getattr(newtup, att, RelationGetDescr(rel), &newnull);
	if (newnull)
		return false;
	oldval = heap_getattr(oldtup, att, RelationGetDescr(rel), &oldnull);
	return oldnull || memcmp(DatumGetUUIDP(oldval), DatumGetUUIDP(newval), sizeof(pg_uuid_t)) != 0;
}

/* Whether Citus distributes the table rel (our tables are distributed together). */
static bool
Distributed(Relation rel)
{
	pc_plans_use_schema(RelationGetNamespace(rel));
	return pc_citus_distributed();
}

/*
 * Write the notice of a direct write to a row: one event of the given kind
 * about the connection in tup, whose details are the members in details,
 * with the role that wrote it; in the writing transaction, so it commits
 * or rolls back with the write.
 */
static void
RecordDirectWrite(Relation rel, HeapTuple tup, PcCommand command, StringInfo details)
{
	PcEvent		ev;
	bool		isnull;
	Datum		slug;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	pc_plans_use_schema(RelationGetNamespace(rel));
	if (pc_schema_level() < PC_SCHEMA_1_3)
	{
		SPI_finish();
		return;
	}
	pc_json_text_member(details, "role", GetUserNameFromId(GetUserId(), true));

	memset(&ev, 0, sizeof(ev));
	ev.command = command;
	ev.user_id = UuidAttr(rel, tup, "user_id");
	ev.connection_id = UuidAttr(rel, tup, "id");
	ev.provider_id = UuidAttr(rel, tup, "provider_id");
	slug = heap_getattr(tup, AttnumOf(rel, "provider_slug"), RelationGetDescr(rel), &isnull);
	ev.provider_slug = isnull ? NULL : TextDatumGetCString(slug);
	ev.details = details->data;
	pc_write_notice(&ev);
	SPI_finish();
}

/*
 * Record a status change made by a direct UPDATE: one
 * ProviderConnectionStatusChanged event with both statuses.
 */
static void
RecordStatusChange(Relation rel, HeapTuple newtup, PcStatus from, PcStatus to)
{
	StringInfoData details;

	initStringInfo(&details);
	/* pc_json_text_member puts the commas between members. */
	pc_json_text_member(&details, "old_status", pc_status_name(from));
	pc_json_text_member(&details, "new_status", pc_status_name(to));
	RecordDirectWrite(rel, newtup, PC_CMD_STATUS_CHANGE, &details);
}

/*
 * Record a connection removed by a direct DELETE: one
 * ProviderConnectionDeleted event with the status it had (1.4 schemas,
 * where the guard fires on DELETE).
 */
static void
RecordDeletion(Relation rel, HeapTuple oldtup, PcStatus from)
{
	StringInfoData details;

	initStringInfo(&details);
	pc_json_text_member(&details, "old_status", pc_status_name(from));
	RecordDirectWrite(rel, oldtup, PC_CMD_DELETE, &details);
}

/*
 * Whether a direct write goes unrecorded because it is not this database's
 * to record: the apply worker applies what the publisher recorded, and an
 * operator's repair on a subscriber under session_replication_role =
 * replica is a local fix of a copy. On a database that subscribes to
 * nothing the replica role hides nothing.
 */
static bool
WriteIsReplicas(Relation rel)
{
	return pc_replica_applying() ||
		(SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA &&
		 pc_replica_subscribed(RelationGetNamespace(rel)));
}

/*
 * encrypted_credentials of a new row version: NULL, kept as it was, or
 * starting with our seal header. Only the header's bytes are read.
 */
static void
CheckSealed(Relation rel, HeapTuple oldtup, HeapTuple newtup, int creds_att)
{
	TupleDesc	desc = RelationGetDescr(rel);
	bool		isnull;
	Datum		value = heap_getattr(newtup, creds_att, desc, &isnull);

	if (isnull)
		return;
	if (oldtup != NULL)
	{
		bool		oldnull;
		Datum		old = heap_getattr(oldtup, creds_att, desc, &oldnull);

		/* Unchanged (compares toast pointers, not the values they point to). */
		if (!oldnull && datumIsEqual(old, value, false, -1))
			return;
	}
	if (!pc_seal_header_valid(DatumGetByteaPSlice(value, 0, PC_SEAL_HEADER_LEN + 1)))
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("encrypted_credentials must hold a value sealed by provider_connections"),
				 errhint("Store credentials with provider_connect or provider_refresh_tokens.")));
}

/*
 * The guard's DELETE: a connection may be deleted (an application erasing
 * a user's data), but never silently. Before the row goes (BEFORE): refused
 * on a subscriber, as every write there is, but the apply worker's and an
 * operator's repair. Once it went (AFTER, the provider_connections_deleted
 * trigger): recorded, so that a later BEFORE trigger of the owner's that
 * cancels the DELETE leaves no event for a row that is still there.
 */
static Datum
GuardDelete(Relation rel, HeapTuple oldtup, bool after)
{
	bool		isnull;
	Datum		status;

	if (!after)
	{
		if (SessionReplicationRole != SESSION_REPLICATION_ROLE_REPLICA)
			pc_refuse_on_subscriber_in(RelationGetNamespace(rel),
									   "DELETE from provider_connections");
		return PointerGetDatum(oldtup);
	}
	status = heap_getattr(oldtup, AttnumOf(rel, "status"), RelationGetDescr(rel), &isnull);
	if (!isnull && !WriteIsReplicas(rel))
		RecordDeletion(rel, oldtup, pc_status_from_enum(status));
	return PointerGetDatum(NULL);
}

/* SQL trigger function: provider_connections_guard() */
PG_FUNCTION_INFO_V1(provider_connections_guard);

/*
 * BEFORE INSERT OR UPDATE OR DELETE row trigger on provider_connections:
 * rejects any write that breaks the state machine or its invariants, and
 * records the direct writes our functions did not make (1.4 schemas also
 * fire it on DELETE, and AFTER DELETE to record a deletion, and BEFORE
 * TRUNCATE to refuse it). SQLSTATE 55000
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
		(TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ==
		 TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event)) ||
		(!TRIGGER_FIRED_BEFORE(trigdata->tg_event) &&
		 !(TRIGGER_FIRED_AFTER(trigdata->tg_event) && TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("provider_connections_guard must run BEFORE INSERT OR UPDATE OR DELETE or AFTER DELETE FOR EACH ROW, or BEFORE TRUNCATE")));

	rel = trigdata->tg_relation;
	desc = RelationGetDescr(rel);
	if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
	{
		if (!WriteIsReplicas(rel))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("TRUNCATE is not allowed on %s: it would remove connections without a trace",
							RelationGetRelationName(rel)),
					 errhint("DELETE the rows instead: each deletion is recorded as an event.")));
		return PointerGetDatum(NULL);
	}
	if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		return GuardDelete(rel, trigdata->tg_trigtuple, TRIGGER_FIRED_AFTER(trigdata->tg_event));
	newtup = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
		trigdata->tg_newtuple : trigdata->tg_trigtuple;
	/* A subscriber's rows are the publisher's. */
	if (SessionReplicationRole != SESSION_REPLICATION_ROLE_REPLICA)
		pc_refuse_on_subscriber_in(RelationGetNamespace(rel),
								   TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ?
								   "INSERT into provider_connections" :
								   "UPDATE of provider_connections");
	status_att = AttnumOf(rel, "status");
	creds_att = AttnumOf(rel, "encrypted_credentials");

	/* status is NOT NULL; let that constraint report a NULL. */
	value = heap_getattr(newtup, status_att, desc, &isnull);
	if (isnull)
		return PointerGetDatum(newtup);
	to = pc_status_from_enum(value);

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		if (to != PC_STATUS_PENDING && to != PC_STATUS_ACTIVE && !InsertingExistingRows(rel))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("a new provider connection cannot start as \"%s\"",
							pc_status_name(to)),
					 errdetail("New connections start as \"pending\" or \"active\".")));
	}
	else
	{
		HeapTuple	oldtup = trigdata->tg_trigtuple;
		PcStatus	from;

		CheckIdentityKept(rel, oldtup, newtup);
		from = pc_status_from_enum(heap_getattr(oldtup, status_att, desc, &isnull));
		/* The apply worker applies the publisher's row, whatever ours was. */
		if (!pc_transition_allowed(from, to) && !pc_replica_applying())
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("illegal provider connection status transition from \"%s\" to \"%s\"",
							pc_status_name(from), pc_status_name(to)),
					 from == PC_STATUS_DISCONNECTED ?
					 errdetail("\"disconnected\" is terminal; create a new connection instead.") : 0));
		if (from != to && !pc_command_writing() &&
			!(CallDeclared(rel, oldtup, newtup) && Distributed(rel)) &&
			!WriteIsReplicas(rel))
			RecordStatusChange(rel, newtup, from, to);
	}
	CheckSealed(rel, TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ? trigdata->tg_trigtuple : NULL,
				newtup, creds_att);

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
