/*
 * append_only.c
 *		The trigger that keeps provider_audit_log append-only.
 *
 * It runs BEFORE UPDATE OR DELETE on each row and BEFORE TRUNCATE, and is
 * ENABLE ALWAYS, so it refuses the owner and superusers alike, including
 * under session_replication_role = replica. INSERT (and so a pg_dump
 * restore) is untouched. The exceptions are provider_purge_events
 * (retention.c), whose own DELETEs of old events pass while it runs, and
 * on Citus a feed round's own UPDATE of its positions' notify_pending
 * (feed_shards.c), which changes no position.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/rel.h"

#include "feed_shards.h"
#include "retention.h"

/* SQL trigger function: provider_audit_log_append_only() */
PG_FUNCTION_INFO_V1(provider_audit_log_append_only);

/*
 * Refuse any change to existing audit rows with SQLSTATE 42501
 * (insufficient_privilege): no role holds the right to rewrite history.
 */
Datum
provider_audit_log_append_only(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	const char *command;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("provider_audit_log_append_only must be called as a trigger")));

	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		/* Only a round's own UPDATE of notify_pending, on a positions shard. */
		if (pc_feed_shards_flagging() &&
			strncmp(RelationGetRelationName(trigdata->tg_relation), "provider_event_positions",
					strlen("provider_event_positions")) == 0)
			return PointerGetDatum(trigdata->tg_newtuple);
		command = "UPDATE";
	}
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
	{
		if (pc_purge_in_progress())
			return PointerGetDatum(trigdata->tg_trigtuple);
		command = "DELETE";
	}
	else if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		command = "TRUNCATE";
	else
		return PointerGetDatum(trigdata->tg_trigtuple);

	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("%s is not allowed on %s: the audit log is append-only",
					command, RelationGetRelationName(trigdata->tg_relation)),
			 errdetail("Audit rows cannot be changed or removed by any role.")));
	PG_RETURN_NULL();			/* keep compiler quiet */
}
