/*
 * events.c
 *		Domain events: one audit row and one NOTIFY per event.
 *
 * Every event is written to provider_audit_log and sent on the channel
 * provider_events in the caller's transaction, so listeners see only events
 * of committed transactions, in the order they were written. The payload is
 * a small JSON object of ids and facts; free text (the reason, an invalid
 * slug) is clipped so that no payload can reach PostgreSQL's 8000-byte
 * limit, which would abort the caller. Credentials never reach an event.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "events.h"
#include "feed.h"
#include "plans.h"
#include "settings.h"
#include "uuid7.h"

#define PC_CHANNEL "provider_events"

static const char *const pc_event_types[PC_NUM_COMMANDS][PC_NUM_OUTCOMES] = {
	[PC_CMD_CONNECT] = {"ProviderConnectionAttempted", "ProviderConnectionSucceeded",
	"ProviderConnectionFailed"},
	[PC_CMD_DISCONNECT] = {"ProviderDisconnectionAttempted", "ProviderDisconnectionSucceeded",
	"ProviderDisconnectionFailed"},
	[PC_CMD_REFRESH] = {"ProviderTokenRefreshAttempted", "ProviderTokenRefreshSucceeded",
	"ProviderTokenRefreshFailed"},
};

static const char *const pc_actions[PC_NUM_COMMANDS][PC_NUM_OUTCOMES] = {
	[PC_CMD_CONNECT] = {"provider_connection_attempted", "provider_connected",
	"provider_connection_failed"},
	[PC_CMD_DISCONNECT] = {"provider_disconnection_attempted", "provider_disconnected",
	"provider_disconnection_failed"},
	[PC_CMD_REFRESH] = {"provider_token_refresh_attempted", "provider_token_refreshed",
	"provider_token_refresh_failed"},
};

const char *
pc_event_type(PcCommand command, PcOutcome outcome)
{
	return pc_event_types[command][outcome];
}

/* s cut to at most maxbytes without splitting a character; NULL stays NULL. */
static const char *
Clip(const char *s, int maxbytes)
{
	int			len;

	if (s == NULL)
		return NULL;
	len = strlen(s);
	if (len <= maxbytes)
		return s;
	return pnstrdup(s, pg_mbcliplen(s, len, maxbytes));
}

static void
JsonKey(StringInfo buf, const char *key)
{
	if (buf->len > 1)
		appendStringInfoChar(buf, ',');
	escape_json(buf, key);
	appendStringInfoChar(buf, ':');
}

static void
JsonText(StringInfo buf, const char *key, const char *value)
{
	JsonKey(buf, key);
	if (value == NULL)
		appendStringInfoString(buf, "null");
	else
		escape_json(buf, value);
}

static void
JsonUuid(StringInfo buf, const char *key, const pg_uuid_t *value)
{
	JsonText(buf, key, value == NULL ? NULL :
			 DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(value))));
}

/* Who made the call: the role outside any SECURITY DEFINER function. */
static char *
ContextJson(void)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	JsonText(&buf, "current_user", GetUserNameFromId(GetOuterUserId(), true));
	JsonText(&buf, "session_user", GetUserNameFromId(GetSessionUserId(), true));
	JsonText(&buf, "application_name", application_name);
	JsonKey(&buf, "backend_pid");
	appendStringInfo(&buf, "%d", MyProcPid);
	JsonKey(&buf, "transaction_id");
	appendStringInfo(&buf, UINT64_FORMAT,
					 U64FromFullTransactionId(GetTopFullTransactionId()));
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

static char *
PayloadJson(const PcEvent *ev, int64 audit_id, const pg_uuid_t *event_id,
			TimestampTz occurred_at, const char *slug, const char *reason)
{
	StringInfoData buf;
	const int	utc = 0;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	JsonText(&buf, "event_type", pc_event_type(ev->command, ev->outcome));
	JsonUuid(&buf, "event_id", event_id);
	JsonKey(&buf, "audit_id");
	appendStringInfo(&buf, INT64_FORMAT, audit_id);
	JsonText(&buf, "occurred_at",
			 JsonEncodeDateTime(NULL, TimestampTzGetDatum(occurred_at),
								TIMESTAMPTZOID, &utc));
	JsonUuid(&buf, "user_id", ev->user_id);
	JsonUuid(&buf, "connection_id", ev->connection_id);
	JsonUuid(&buf, "provider_id", ev->provider_id);
	JsonText(&buf, "provider_slug", slug);
	if (ev->outcome == PC_FAILED)
		JsonText(&buf, "reason", reason);
	if (ev->outcome == PC_FAILED && ev->command == PC_CMD_REFRESH)
	{
		JsonKey(&buf, "needs_user_action");
		appendStringInfoString(&buf, ev->needs_user_action ? "true" : "false");
	}
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

int64
pc_emit_event(const PcEvent *ev)
{
	Datum		values[12];
	char		nulls[12];
	int64		audit_id;
	pg_uuid_t	event_id;
	TimestampTz occurred_at = pc_now();
	const char *slug = Clip(ev->provider_slug, PC_MAX_EVENT_SLUG_BYTES);
	const char *reason = ev->outcome == PC_FAILED ?
		Clip(ev->reason, PC_MAX_REASON_BYTES) : NULL;
	bool		has_needs_action = (ev->outcome == PC_FAILED &&
									ev->command == PC_CMD_REFRESH);
	int			rc;

	audit_id = DatumGetInt64(DirectFunctionCall1(nextval_oid,
												 ObjectIdGetDatum(pc_audit_sequence())));
	pc_uuid7(&event_id, occurred_at, (uint64) audit_id);

	memset(nulls, ' ', sizeof(nulls));
	values[0] = Int64GetDatum(audit_id);
	values[1] = UUIDPGetDatum(&event_id);
	values[2] = CStringGetTextDatum(pc_event_type(ev->command, ev->outcome));
	values[3] = CStringGetTextDatum(pc_actions[ev->command][ev->outcome]);
	values[4] = UUIDPGetDatum(ev->user_id);
	nulls[4] = ev->user_id ? ' ' : 'n';
	values[5] = UUIDPGetDatum(ev->connection_id);
	nulls[5] = ev->connection_id ? ' ' : 'n';
	values[6] = UUIDPGetDatum(ev->provider_id);
	nulls[6] = ev->provider_id ? ' ' : 'n';
	values[7] = slug ? CStringGetTextDatum(slug) : (Datum) 0;
	nulls[7] = slug ? ' ' : 'n';
	values[8] = reason ? CStringGetTextDatum(reason) : (Datum) 0;
	nulls[8] = reason ? ' ' : 'n';
	values[9] = BoolGetDatum(ev->needs_user_action);
	nulls[9] = has_needs_action ? ' ' : 'n';
	values[10] = TimestampTzGetDatum(occurred_at);
	values[11] = CStringGetTextDatum(ContextJson());

	rc = SPI_execute_plan(pc_plan(PC_PLAN_INSERT_AUDIT), values, nulls, false, 0);
	if (rc != SPI_OK_INSERT || SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not write the provider_connections audit row")));

	Async_Notify(PC_CHANNEL, PayloadJson(ev, audit_id, &event_id, occurred_at,
										 slug, reason));
	pc_feed_note_event(pc_plans_schema(), audit_id);
	return audit_id;
}
