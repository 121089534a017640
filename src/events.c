/*
 * events.c
 *		Domain events: one audit row and one NOTIFY per event.
 *
 * Every event is written to provider_audit_log in the caller's
 * transaction. Its notification on the channel provider_events is sent,
 * depending on provider_connections.notify, by the caller in the same
 * transaction (commit: listeners see only events of committed transactions,
 * in the order they were written), by the background worker after the
 * caller committed, in feed order (worker), or not at all (off). The
 * setting is cluster-wide (postgresql.conf, reload), and the choice the
 * writer made travels with the event, in its audit row's context ("notify"):
 * the worker sends exactly the events left to it, so a reload that changes
 * the mode while transactions are open neither loses nor doubles a
 * notification.
 *
 * The payload is a small JSON object of ids and facts; free text (the
 * reason, an invalid slug) is clipped so that no payload can reach
 * PostgreSQL's 8000-byte limit, which would abort the caller. Both senders
 * build it with pc_event_payload from the same fields: the caller from the
 * row it writes, the worker from the row it reads. Credentials never reach
 * an event.
 *
 * Copyright (c) 2026, provider_connections developers.
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
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"
#include "utils/memutils.h"
#include "utils/xid8.h"

#include "events.h"
#include "plans.h"
#include "clock.h"
#include "uuid7.h"
#include "worker.h"

/* The audit row's columns, in the order the INSERT below binds them. */
enum
{
	Anum_pc_audit_id = 1,
	Anum_pc_audit_event_id,
	Anum_pc_audit_event_type,
	Anum_pc_audit_action,
	Anum_pc_audit_user_id,
	Anum_pc_audit_connection_id,
	Anum_pc_audit_provider_id,
	Anum_pc_audit_provider_slug,
	Anum_pc_audit_reason,
	Anum_pc_audit_needs_user_action,
	Anum_pc_audit_occurred_at,
	Anum_pc_audit_context,
	Anum_pc_audit_xid,			/* 1.2 on */
	Anum_pc_audit_call_id,		/* 1.3 on */
	Natts_pc_audit_insert = Anum_pc_audit_call_id
};

#define PC_AUDIT_COLUMNS_1_1 \
	"id, event_id, event_type, action, user_id, connection_id, provider_id," \
	" provider_slug, reason, needs_user_action, occurred_at, context"

/* The audit columns a schema has, by its version (plans.c): 1.1, 1.2, 1.3 on (1.4 adds none). */
static const struct
{
	const char *extra;
	int			ncols;
}			pc_audit_shapes[PC_NUM_SCHEMA_LEVELS] = {
	[PC_SCHEMA_1_1] = {"", Anum_pc_audit_context},
	[PC_SCHEMA_1_2] = {", xid", Anum_pc_audit_xid},
	[PC_SCHEMA_1_3] = {", xid, call_id", Anum_pc_audit_call_id},
	[PC_SCHEMA_1_4] = {", xid, call_id", Anum_pc_audit_call_id},
};

/* The INSERTs of 1 to PC_MAX_EVENTS_PER_CALL audit rows, per schema level; made on first use. */
static PcStatement pc_insert_audit[PC_NUM_SCHEMA_LEVELS][PC_MAX_EVENTS_PER_CALL];

/* The parameter types of one audit row, in Anum_pc_audit_* order. */
static const Oid pc_audit_argtypes[Natts_pc_audit_insert] = {
	INT8OID, UUIDOID, TEXTOID, TEXTOID, UUIDOID, UUIDOID, UUIDOID, TEXTOID,
	TEXTOID, BOOLOID, TIMESTAMPTZOID, JSONBOID, XID8OID, UUIDOID
};

/* The INSERT of nrows audit rows into a schema of the given level. */
static PcStatement *
AuditInsert(int nrows, PcSchemaLevel level)
{
	PcStatement *stmt = &pc_insert_audit[level][nrows - 1];
	int			ncols = pc_audit_shapes[level].ncols;
	StringInfoData sql;
	int			r,
				c;

	StaticAssertStmt(PC_MAX_EVENTS_PER_CALL * Natts_pc_audit_insert <= PC_STATEMENT_MAX_ARGS,
					 "PC_STATEMENT_MAX_ARGS too small for the audit INSERT");
	Assert(nrows >= 1 && nrows <= PC_MAX_EVENTS_PER_CALL);
	if (stmt->sql != NULL)
		return stmt;
	initStringInfo(&sql);
	appendStringInfo(&sql, "INSERT INTO %%1$s.provider_audit_log (%s%s) VALUES ",
					 PC_AUDIT_COLUMNS_1_1, pc_audit_shapes[level].extra);
	for (r = 0; r < nrows; r++)
	{
		appendStringInfoString(&sql, r == 0 ? "(" : ", (");
		for (c = 0; c < ncols; c++)
		{
			appendStringInfo(&sql, "%s$%d", c == 0 ? "" : ", ", r * ncols + c + 1);
			stmt->argtypes[r * ncols + c] = pc_audit_argtypes[c];
		}
		appendStringInfoChar(&sql, ')');
	}
	stmt->nargs = nrows * ncols;
	stmt->sql = MemoryContextStrdup(TopMemoryContext, sql.data);
	pfree(sql.data);
	return stmt;
}

/* Stands for "no user" in the audit log's user_id from 1.4 on; reads show NULL. */
const pg_uuid_t pc_nil_user = {{0}};

/* Every event: its command and outcome, event_type and action. */
typedef struct PcEventKind
{
	PcCommand	command;
	PcOutcome	outcome;
	const char *event_type;
	const char *action;
} PcEventKind;

static const PcEventKind pc_event_kinds[] = {
	{PC_CMD_CONNECT, PC_ATTEMPTED, "ProviderConnectionAttempted", "provider_connection_attempted"},
	{PC_CMD_CONNECT, PC_SUCCEEDED, "ProviderConnectionSucceeded", "provider_connected"},
	{PC_CMD_CONNECT, PC_FAILED, "ProviderConnectionFailed", "provider_connection_failed"},
	{PC_CMD_DISCONNECT, PC_ATTEMPTED, "ProviderDisconnectionAttempted", "provider_disconnection_attempted"},
	{PC_CMD_DISCONNECT, PC_SUCCEEDED, "ProviderDisconnectionSucceeded", "provider_disconnected"},
	{PC_CMD_DISCONNECT, PC_FAILED, "ProviderDisconnectionFailed", "provider_disconnection_failed"},
	{PC_CMD_REFRESH, PC_ATTEMPTED, "ProviderTokenRefreshAttempted", "provider_token_refresh_attempted"},
	{PC_CMD_REFRESH, PC_SUCCEEDED, "ProviderTokenRefreshSucceeded", "provider_token_refreshed"},
	{PC_CMD_REFRESH, PC_FAILED, "ProviderTokenRefreshFailed", "provider_token_refresh_failed"},
	{PC_CMD_BEGIN_CONNECT, PC_ATTEMPTED, "ProviderConnectionBeginAttempted", "provider_connection_begin_attempted"},
	{PC_CMD_BEGIN_CONNECT, PC_SUCCEEDED, "ProviderConnectionBeginSucceeded", "provider_connection_pending"},
	{PC_CMD_BEGIN_CONNECT, PC_FAILED, "ProviderConnectionBeginFailed", "provider_connection_begin_failed"},
	{PC_CMD_MARK_FAILED, PC_ATTEMPTED, "ProviderFailureMarkAttempted", "provider_failure_mark_attempted"},
	{PC_CMD_MARK_FAILED, PC_SUCCEEDED, "ProviderFailureMarkSucceeded", "provider_connection_marked_failed"},
	{PC_CMD_MARK_FAILED, PC_FAILED, "ProviderFailureMarkFailed", "provider_failure_mark_failed"},
	{PC_CMD_MARK_EXPIRED, PC_ATTEMPTED, "ProviderExpiryMarkAttempted", "provider_expiry_mark_attempted"},
	{PC_CMD_MARK_EXPIRED, PC_SUCCEEDED, "ProviderExpiryMarkSucceeded", "provider_connection_marked_expired"},
	{PC_CMD_MARK_EXPIRED, PC_FAILED, "ProviderExpiryMarkFailed", "provider_expiry_mark_failed"},
	{PC_CMD_MARK_REVOKED, PC_ATTEMPTED, "ProviderRevocationMarkAttempted", "provider_revocation_mark_attempted"},
	{PC_CMD_MARK_REVOKED, PC_SUCCEEDED, "ProviderRevocationMarkSucceeded", "provider_connection_marked_revoked"},
	{PC_CMD_MARK_REVOKED, PC_FAILED, "ProviderRevocationMarkFailed", "provider_revocation_mark_failed"},
	/* A successful sync writes no event (syncs are frequent); its kind is listed all the same. */
	{PC_CMD_RECORD_SYNC, PC_ATTEMPTED, "ProviderSyncRecordAttempted", "provider_sync_record_attempted"},
	{PC_CMD_RECORD_SYNC, PC_SUCCEEDED, "ProviderSyncRecordSucceeded", "provider_sync_recorded"},
	{PC_CMD_RECORD_SYNC, PC_FAILED, "ProviderSyncRecordFailed", "provider_sync_record_failed"},
	{PC_CMD_RECOVERY, PC_SUCCEEDED, "ProviderConnectionRecovered", "provider_connection_recovered"},
	{PC_CMD_STATUS_CHANGE, PC_SUCCEEDED, "ProviderConnectionStatusChanged", "provider_connection_status_changed"},
	{PC_CMD_PURGE, PC_SUCCEEDED, "ProviderEventsPurged", "provider_events_purged"},
	{PC_CMD_DELETE, PC_SUCCEEDED, "ProviderConnectionDeleted", "provider_connection_deleted"},
};

/* provider_connections.notify: who sends the notifications. */
typedef enum PcNotifyMode
{
	PC_NOTIFY_COMMIT,			/* the caller, in its transaction */
	PC_NOTIFY_WORKER,			/* the background worker, after commit */
	PC_NOTIFY_OFF				/* nobody: the feed only */
} PcNotifyMode;

/* The modes' names, as the setting and the audit row's context spell them; indexed by PcNotifyMode. */
static const struct config_enum_entry pc_notify_options[] = {
	{"commit", PC_NOTIFY_COMMIT, false},
	{"worker", PC_NOTIFY_WORKER, false},
	{"off", PC_NOTIFY_OFF, false},
	{NULL, 0, false}
};

/* provider_connections.notify_payload: what a notification says. */
typedef enum PcPayloadMode
{
	PC_PAYLOAD_FULL,			/* ids and facts of the event */
	PC_PAYLOAD_IDS				/* event_type, event_id, call_id, audit_id, global_position */
} PcPayloadMode;

static const struct config_enum_entry pc_payload_options[] = {
	{"full", PC_PAYLOAD_FULL, false},
	{"ids", PC_PAYLOAD_IDS, false},
	{NULL, 0, false}
};

static int	pc_notify_mode = PC_NOTIFY_COMMIT;
static int	pc_payload_mode = PC_PAYLOAD_FULL;
static bool pc_events_preloaded = false;

/* The entry of pc_event_kinds for command and outcome. */
static const PcEventKind *
EventKind(PcCommand command, PcOutcome outcome)
{
	int			i;

	for (i = 0; i < lengthof(pc_event_kinds); i++)
		if (pc_event_kinds[i].command == command && pc_event_kinds[i].outcome == outcome)
			return &pc_event_kinds[i];
	elog(ERROR, "unknown provider_connections event %d/%d", (int) command, (int) outcome);
	return NULL;				/* keep compiler quiet */
}

/* The command and outcome an event_type names; false for an unknown one. */
bool
pc_event_from_type(const char *event_type, PcCommand *command, PcOutcome *outcome)
{
	int			i;

	for (i = 0; i < lengthof(pc_event_kinds); i++)
		if (strcmp(pc_event_kinds[i].event_type, event_type) == 0)
		{
			*command = pc_event_kinds[i].command;
			*outcome = pc_event_kinds[i].outcome;
			return true;
		}
	return false;
}

/*
 * Whether the background worker sends the notifications. In worker mode
 * without the library preloaded there is no worker: callers notify.
 */
bool
pc_events_notify_by_worker(void)
{
	return pc_notify_mode == PC_NOTIFY_WORKER && pc_events_preloaded;
}

/* s cut to at most maxbytes without splitting a character; NULL stays NULL. */
const char *
pc_clip(const char *s, int maxbytes)
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

/*
 * Append "key":"value" (null for NULL) to JSON members being built: a comma
 * first unless buf is empty or only holds the opening brace.
 */
void
pc_json_text_member(StringInfo buf, const char *key, const char *value)
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
	pc_json_text_member(buf, key, value == NULL ? NULL :
			 DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(value))));
}

/*
 * The members of an audit row's context that say who made the call and who
 * notifies its events; every other member is a detail of the event, and
 * goes into its payload (see pc_event_payload).
 */
static const char *const pc_context_caller_keys[] = {
	"current_user", "session_user", "application_name", "backend_pid",
	"transaction_id", "notify"
};

/* Whether the context member key (len bytes) is one of pc_context_caller_keys. */
static bool
IsCallerKey(const char *key, int len)
{
	int			i;

	for (i = 0; i < lengthof(pc_context_caller_keys); i++)
		if (strlen(pc_context_caller_keys[i]) == len &&
			memcmp(pc_context_caller_keys[i], key, len) == 0)
			return true;
	return false;
}

/* Push a member's key into a jsonb object being built. */
static void
PushKey(JsonbParseState **state, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(state, WJB_KEY, &k);
}

/* Push "key": value (a JSON string, null for NULL) into a jsonb being built. */
static void
PushTextMember(JsonbParseState **state, const char *key, const char *value)
{
	JsonbValue	v;

	PushKey(state, key);
	if (value == NULL)
		v.type = jbvNull;
	else
	{
		v.type = jbvString;
		v.val.string.val = (char *) value;
		v.val.string.len = strlen(value);
	}
	pushJsonbValue(state, WJB_VALUE, &v);
}

/* Push "key": number (its decimal digits, read as jsonb_in reads a number). */
static void
PushNumberMember(JsonbParseState **state, const char *key, const char *digits)
{
	JsonbValue	v;

	PushKey(state, key);
	v.type = jbvNumeric;
	v.val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(digits),
														ObjectIdGetDatum(InvalidOid),
														Int32GetDatum(-1)));
	pushJsonbValue(state, WJB_VALUE, &v);
}

/*
 * The context of a call's audit rows as jsonb: who made the call (the role
 * outside any SECURITY DEFINER function) and who notifies its events
 * (notify: the mode's name), pushed into the jsonb directly (printing and
 * parsing it cost a few percent of a call); then the event's details, if
 * any (a JSON fragment, the same for every event of a call, read by
 * jsonb_in), whose members win over ours on a shared key as the last
 * member does in jsonb_in.
 */
static Datum
ContextJsonb(const char *details, PcNotifyMode notify)
{
	JsonbParseState *state = NULL;
	JsonbValue *object;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	PushTextMember(&state, "current_user", GetUserNameFromId(GetOuterUserId(), true));
	PushTextMember(&state, "session_user", GetUserNameFromId(GetSessionUserId(), true));
	PushTextMember(&state, "application_name", application_name);
	PushNumberMember(&state, "backend_pid", psprintf("%d", MyProcPid));
	PushNumberMember(&state, "transaction_id",
					 psprintf(UINT64_FORMAT, U64FromFullTransactionId(GetTopFullTransactionId())));
	PushTextMember(&state, "notify", pc_notify_options[notify].name);
	if (details != NULL)
	{
		Jsonb	   *extra = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
															   CStringGetDatum(psprintf("{%s}", details))));
		JsonbIterator *it = JsonbIteratorInit(&extra->root);
		JsonbIteratorToken token;
		JsonbValue	v;

		/* Its members, nested values whole, without its own braces. */
		(void) JsonbIteratorNext(&it, &v, false);
		while ((token = JsonbIteratorNext(&it, &v, false)) != WJB_END_OBJECT)
			(void) pushJsonbValue(&state, token, token < WJB_BEGIN_ARRAY ? &v : NULL);
	}
	object = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbPGetDatum(JsonbValueToJsonb(object));
}

/*
 * Who notifies the events a caller writes now: the caller itself (commit),
 * the worker (worker) or nobody (off). In worker mode the caller notifies
 * when no worker can: without the library preloaded, or in a database that
 * provider_connections.worker_databases leaves out.
 */
static PcNotifyMode
NotifierNow(void)
{
	if (pc_notify_mode == PC_NOTIFY_WORKER &&
		(!pc_events_preloaded || !pc_worker_database_listed()))
		return PC_NOTIFY_COMMIT;
	return (PcNotifyMode) pc_notify_mode;
}

/*
 * Whether the event whose audit row has this context was left to the
 * worker to notify. Rows written before 1.4 do not say: the worker's own
 * setting decides for them, as it did then.
 */
bool
pc_event_left_to_worker(Jsonb *context)
{
	JsonbValue *v;

	v = context == NULL ? NULL :
		getKeyJsonValueFromContainer(&context->root, "notify", strlen("notify"), NULL);
	if (v == NULL || v->type != jbvString)
		return pc_events_notify_by_worker();
	return v->val.string.len == strlen("worker") &&
		memcmp(v->val.string.val, "worker", v->val.string.len) == 0;
}

/*
 * Whether the JSON object being built in buf already has the member key:
 * the payload's keys are ours and never hold an escaped quote, so looking
 * for "key": is exact.
 */
static bool
JsonHasKey(StringInfo buf, const char *key)
{
	char	   *quoted = psprintf("\"%s\":", key);
	bool		found = strstr(buf->data, quoted) != NULL;

	pfree(quoted);
	return found;
}

/*
 * Append the details in an audit row's context (its members but the
 * caller's) to a payload being built, in the context's (jsonb) order. A
 * detail whose key the payload already has is left out: the event's own
 * column says it (a failed mark's reason is why it failed; the reason the
 * mark was asked for stays in the audit row's context).
 */
static void
AppendDetails(StringInfo buf, Jsonb *context)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;

	if (context == NULL || !JB_ROOT_IS_OBJECT(context))
		return;
	it = JsonbIteratorInit(&context->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			key = IsCallerKey(v.val.string.val, v.val.string.len) ? NULL :
				pnstrdup(v.val.string.val, v.val.string.len);
			continue;
		}
		if (tok != WJB_VALUE || key == NULL)
			continue;
		if (JsonHasKey(buf, key))
			continue;
		JsonKey(buf, key);
		switch (v.type)
		{
			case jbvNull:
				appendStringInfoString(buf, "null");
				break;
			case jbvString:
				escape_json(buf, pnstrdup(v.val.string.val, v.val.string.len));
				break;
			case jbvNumeric:
				appendStringInfoString(buf, DatumGetCString(DirectFunctionCall1(numeric_out,
																				 NumericGetDatum(v.val.numeric))));
				break;
			case jbvBool:
				appendStringInfoString(buf, v.val.boolean ? "true" : "false");
				break;
			default:
				/* A nested object or array (none so far): as jsonb prints it. */
				appendStringInfoString(buf, JsonbToCString(NULL, v.val.binary.data, v.val.binary.len));
				break;
		}
	}
}

/*
 * The notification payload of a written event, whose audit row's context is
 * context (the details are read from it): a small JSON object of ids and
 * facts (provider_connections.notify_payload = full) or of ids only (ids).
 * Free text is already clipped, so no payload nears the 8000-byte limit.
 * global_position is included once known (worker mode). The caller and the
 * worker both build it here, from the same fields, so that the payloads of
 * an event differ only by global_position.
 */
char *
pc_event_payload(const PcWrittenEvent *w, Jsonb *context)
{
	const PcEvent *ev = &w->event;
	StringInfoData buf;
	const int	utc = 0;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	pc_json_text_member(&buf, "event_type", EventKind(ev->command, ev->outcome)->event_type);
	JsonUuid(&buf, "event_id", &w->event_id);
	if (ev->call_id != NULL)
		JsonUuid(&buf, "call_id", ev->call_id);
	JsonKey(&buf, "audit_id");
	appendStringInfo(&buf, INT64_FORMAT, w->audit_id);
	if (w->global_position > 0)
	{
		JsonKey(&buf, "global_position");
		appendStringInfo(&buf, INT64_FORMAT, w->global_position);
	}
	if (w->shard_id > 0)
	{
		JsonKey(&buf, "shard_id");
		appendStringInfo(&buf, INT64_FORMAT, w->shard_id);
	}
	if (pc_payload_mode == PC_PAYLOAD_FULL)
	{
		pc_json_text_member(&buf, "occurred_at",
				 JsonEncodeDateTime(NULL, TimestampTzGetDatum(w->occurred_at),
									TIMESTAMPTZOID, &utc));
		JsonUuid(&buf, "user_id", ev->user_id);
		JsonUuid(&buf, "connection_id", ev->connection_id);
		JsonUuid(&buf, "provider_id", ev->provider_id);
		pc_json_text_member(&buf, "provider_slug", ev->provider_slug);
		if (ev->outcome == PC_FAILED)
			pc_json_text_member(&buf, "reason", ev->reason);
		if (ev->outcome == PC_FAILED && ev->command == PC_CMD_REFRESH)
		{
			JsonKey(&buf, "needs_user_action");
			appendStringInfoString(&buf, ev->needs_user_action ? "true" : "false");
		}
		AppendDetails(&buf, context);
	}
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

/*
 * A new audit id: the next value of the audit sequence, offset on Citus by
 * the node's group, so that ids made on different nodes (calls run on the
 * coordinator, the guard's events written on the worker that holds the
 * row) never meet: group g numbers from g << 48 + 1 on. Citus gives a
 * bigserial column such a range itself, but not a sequence an extension
 * owns; doing it here also covers nodes added later.
 */
static int64
NextAuditId(void)
{
	int64		next = DatumGetInt64(DirectFunctionCall1(nextval_oid,
														 ObjectIdGetDatum(pc_audit_sequence())));
	int32		group = pc_citus_group();

	if (group == 0)
		return next;
	if (next >= PC_AUDIT_IDS_PER_GROUP || group >= (int32) (PG_INT64_MAX / PC_AUDIT_IDS_PER_GROUP))
		ereport(ERROR,
				(errcode(ERRCODE_SEQUENCE_GENERATOR_LIMIT_EXCEEDED),
				 errmsg("provider_audit_log_id_seq is beyond the ids of one Citus group")));
	return (int64) group * PC_AUDIT_IDS_PER_GROUP + next;
}

/*
 * Fix what an event's audit row will say: its audit id (from the audit
 * sequence, so ids follow the order events are stamped in), event id and
 * time; free text clipped. The facts are copied as they are now.
 */
void
pc_event_stamp(const PcEvent *ev, PcWrittenEvent *w)
{
	memset(w, 0, sizeof(*w));
	w->event = *ev;
	w->event.provider_slug = pc_clip(ev->provider_slug, PC_MAX_EVENT_SLUG_BYTES);
	w->event.reason = ev->outcome == PC_FAILED ? pc_clip(ev->reason, PC_MAX_REASON_BYTES) : NULL;
	w->occurred_at = pc_now();
	w->audit_id = NextAuditId();
	pc_uuid7(&w->event_id, w->occurred_at, PC_SEED_EVENT | (uint64) w->audit_id);
}

/* The id of a new call, whose first event is first (stamped). */
void
pc_event_call_id(pg_uuid_t *out, const PcWrittenEvent *first)
{
	pc_uuid7(out, first->occurred_at, PC_SEED_CALL | (uint64) first->audit_id);
}

/*
 * Write a notice: a single Succeeded event that is a call of its own (a
 * direct status change, a purge), with a call id of its own.
 */
void
pc_write_notice(PcEvent *ev)
{
	PcWrittenEvent w;
	pg_uuid_t	call_id;

	ev->outcome = PC_SUCCEEDED;
	pc_event_stamp(ev, &w);
	pc_event_call_id(&call_id, &w);
	w.event.call_id = &call_id;
	pc_write_events(&w, 1);
}

/* Bind one audit row at values/nulls, in Anum_pc_audit_* order. */
static void
BindAuditRow(const PcWrittenEvent *w, Datum context, PcSchemaLevel level, Datum *values, char *nulls)
{
	const PcEvent *ev = &w->event;
	const PcEventKind *kind = EventKind(ev->command, ev->outcome);
	bool		has_needs_action = (ev->outcome == PC_FAILED && ev->command == PC_CMD_REFRESH);

	memset(nulls, ' ', Natts_pc_audit_insert);
	values[Anum_pc_audit_id - 1] = Int64GetDatum(w->audit_id);
	values[Anum_pc_audit_event_id - 1] = UUIDPGetDatum(&w->event_id);
	values[Anum_pc_audit_event_type - 1] = CStringGetTextDatum(kind->event_type);
	values[Anum_pc_audit_action - 1] = CStringGetTextDatum(kind->action);
	/* The column is part of the key (the Citus distribution column): never NULL. */
	values[Anum_pc_audit_user_id - 1] = UUIDPGetDatum(ev->user_id ? ev->user_id : &pc_nil_user);
	nulls[Anum_pc_audit_user_id - 1] = (ev->user_id || level >= PC_SCHEMA_1_4) ? ' ' : 'n';
	values[Anum_pc_audit_connection_id - 1] = UUIDPGetDatum(ev->connection_id);
	nulls[Anum_pc_audit_connection_id - 1] = ev->connection_id ? ' ' : 'n';
	values[Anum_pc_audit_provider_id - 1] = UUIDPGetDatum(ev->provider_id);
	nulls[Anum_pc_audit_provider_id - 1] = ev->provider_id ? ' ' : 'n';
	values[Anum_pc_audit_provider_slug - 1] = ev->provider_slug ? CStringGetTextDatum(ev->provider_slug) : (Datum) 0;
	nulls[Anum_pc_audit_provider_slug - 1] = ev->provider_slug ? ' ' : 'n';
	values[Anum_pc_audit_reason - 1] = ev->reason ? CStringGetTextDatum(ev->reason) : (Datum) 0;
	nulls[Anum_pc_audit_reason - 1] = ev->reason ? ' ' : 'n';
	values[Anum_pc_audit_needs_user_action - 1] = BoolGetDatum(ev->needs_user_action);
	nulls[Anum_pc_audit_needs_user_action - 1] = has_needs_action ? ' ' : 'n';
	values[Anum_pc_audit_occurred_at - 1] = TimestampTzGetDatum(w->occurred_at);
	values[Anum_pc_audit_context - 1] = context;
	values[Anum_pc_audit_xid - 1] = FullTransactionIdGetDatum(GetTopFullTransactionId());
	values[Anum_pc_audit_call_id - 1] = UUIDPGetDatum(ev->call_id);
	nulls[Anum_pc_audit_call_id - 1] = ev->call_id ? ' ' : 'n';
}

/*
 * Write the audit rows of stamped events, in order, with one INSERT, in the
 * current transaction, each saying in its context who notifies it; when
 * that is the caller (NotifierNow), also queue their notifications, in the
 * same order. Raises an error if the rows cannot be written: no change
 * goes unrecorded. The caller is connected to SPI. Each row carries the
 * top-level transaction id, by which the feed finds it once that
 * transaction has committed (feed.c).
 */
void
pc_write_events(const PcWrittenEvent *events, int n)
{
	Datum		values[PC_MAX_EVENTS_PER_CALL * Natts_pc_audit_insert];
	char		nulls[PC_MAX_EVENTS_PER_CALL * Natts_pc_audit_insert];
	PcSchemaLevel level = pc_schema_level();
	int			ncols = pc_audit_shapes[level].ncols;
	const char *details = NULL;
	PcNotifyMode notifier = NotifierNow();
	Datum		context;
	int			i;
	int			rc;

	Assert(n >= 1 && n <= PC_MAX_EVENTS_PER_CALL);
	/* The events of a call share their caller and details: one jsonb. */
	for (i = 0; i < n && details == NULL; i++)
		details = events[i].event.details;
	context = ContextJsonb(details, notifier);
	for (i = 0; i < n; i++)
	{
		Datum		rowvalues[Natts_pc_audit_insert];
		char		rownulls[Natts_pc_audit_insert];

		BindAuditRow(&events[i], context, level, rowvalues, rownulls);
		memcpy(&values[i * ncols], rowvalues, ncols * sizeof(Datum));
		memcpy(&nulls[i * ncols], rownulls, ncols);
	}

	rc = SPI_execute_plan(pc_statement_plan(AuditInsert(n, level)), values, nulls, false, 0);
	if (rc != SPI_OK_INSERT || SPI_processed != (uint64) n)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not write the provider_connections audit rows")));

	if (notifier == PC_NOTIFY_COMMIT)
		for (i = 0; i < n; i++)
			Async_Notify(PC_CHANNEL, pc_event_payload(&events[i], DatumGetJsonbP(context)));
	pc_worker_note_event(notifier == PC_NOTIFY_WORKER);
}

/* Define the notification settings; called from _PG_init. */
void
pc_events_init(void)
{
	pc_events_preloaded = process_shared_preload_libraries_in_progress;

	DefineCustomEnumVariable("provider_connections.notify",
							 "Who sends each event's notification on provider_events.",
							 "commit: the caller, in its transaction; worker: the background worker, after commit, in feed order; off: nobody (read the feed).",
							 &pc_notify_mode,
							 PC_NOTIFY_COMMIT,
							 pc_notify_options,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);
	DefineCustomEnumVariable("provider_connections.notify_payload",
							 "What a notification carries.",
							 "full: the event's ids and facts; ids: event_type, event_id, call_id, audit_id and global_position only (any role can LISTEN).",
							 &pc_payload_mode,
							 PC_PAYLOAD_FULL,
							 pc_payload_options,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);
}
