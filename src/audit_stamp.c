/*
 * audit_stamp.c
 *		The trigger that stamps an audit row with the xid of the node that
 *		stores it.
 *
 * A call writes its audit rows with its own top-level xid, by which the
 * feed's rounds find them once that transaction committed (feed.c). On
 * Citus the call may run on the coordinator while the rows are stored in
 * a shard on a worker node, whose rounds compare xids with that node's
 * snapshots: the coordinator's xid means nothing there. This BEFORE INSERT
 * trigger, which Citus runs on the node holding the shard, replaces the
 * xid with the storing transaction's own, and wakes that node's worker at
 * commit as a local call would. provider_distribute() enables it; on one
 * node it stays disabled, since there a call's xid is already the storing
 * node's.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/rel.h"
#include "utils/xid8.h"

#include "worker.h"

/* SQL trigger function: provider_audit_log_stamp() */
PG_FUNCTION_INFO_V1(provider_audit_log_stamp);

/* Return the new row with its xid column set to this node's top-level xid. */
Datum
provider_audit_log_stamp(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	int			attnum;
	Datum		value;
	bool		isnull = false;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) || !TRIGGER_FIRED_BEFORE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("provider_audit_log_stamp must be called as a BEFORE INSERT row trigger")));

	desc = RelationGetDescr(trigdata->tg_relation);
	attnum = SPI_fnumber(desc, "xid");
	if (attnum <= 0)
		return PointerGetDatum(trigdata->tg_trigtuple);
	value = FullTransactionIdGetDatum(GetTopFullTransactionId());
	pc_worker_note_shard(RelationGetRelid(trigdata->tg_relation));
	pc_worker_note_event(true);
	return PointerGetDatum(heap_modify_tuple_by_cols(trigdata->tg_trigtuple, desc,
													 1, &attnum, &value, &isnull));
}
