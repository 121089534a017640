/*
 * command.c
 *		What the commands (provider_connect, provider_disconnect,
 *		provider_refresh_tokens and the lifecycle functions of lifecycle.c)
 *		share.
 *
 * A call writes its Attempted event first, then does its checks and its
 * write, then writes exactly one outcome event (and, when a connection
 * that needed re-authentication became active, ProviderConnectionRecovered
 * after it) and returns a provider_result row. The events of a call share
 * its call_id. Business failures are results, not errors, so the
 * failure is recorded when the caller commits. The data change runs in a
 * subtransaction (as a PL/pgSQL exception block does): a database error
 * there is rolled back and becomes a database_error result. The outcome
 * event is written after that subtransaction, in the caller's
 * transaction; if it cannot be written the call raises an error, which
 * undoes the change too: no change without its record.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/htup_details.h"
#include "access/xact.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"

#include "clock.h"
#include "command.h"
#include "status.h"
#include "plans.h"
#include "keys.h"
#include "replication.h"

/* Nesting depth of the data changes commands make (pc_guarded_write). */
static int	pc_command_depth = 0;

/* What pc_find_connection reads, by column position. */
enum
{
	Anum_pc_find_user_id = 1,
	Anum_pc_find_provider_id,
	Anum_pc_find_provider_slug,
	Anum_pc_find_status
};

#define PC_FIND_SQL \
	"SELECT user_id, provider_id, provider_slug::pg_catalog.text, status::pg_catalog.text" \
	" FROM %1$s.provider_connections WHERE id OPERATOR(pg_catalog.=) $1"

/* By id alone: on Citus a read of every shard. */
static PcStatement pc_find_connection_stmt = {
	PC_FIND_SQL, 1, {UUIDOID}, .multi_shard = true
};

/* By user and id: on Citus a read of the user's shard only. */
static PcStatement pc_find_user_connection_stmt = {
	PC_FIND_SQL " AND user_id OPERATOR(pg_catalog.=) $2", 2, {UUIDOID, UUIDOID}
};

/*
 * The credential types a connection may hold, and whether the provider can
 * refresh them (provider_claim_expiring serves those): the one list
 * (README too).
 */
static const struct
{
	const char *name;
	bool		refreshable;
}			pc_credential_types[] = {
	{"oauth2", true},
	{"api_key", false},
	{"link_token", true},
	{"certificate", false},
	{"file_import", false},
	{"custom", false},
};

/* Each result code's error_code text and message; %s is the argument. */
static const struct
{
	const char *code;
	const char *message;
}			pc_result_codes[PC_NUM_RESULT_CODES] = {
	[PC_RESULT_INVALID_ARGUMENT] = {"invalid_argument", "%s"},
	[PC_RESULT_INVALID_PROVIDER_SLUG] = {"invalid_provider_slug", "Invalid provider slug"},
	[PC_RESULT_INVALID_CREDENTIALS] = {"invalid_credentials", "Invalid or missing credentials"},
	[PC_RESULT_CREDENTIALS_TOO_LARGE] = {"credentials_too_large",
	"Credentials exceed the maximum size of " CppAsString2(PC_MAX_CREDENTIAL_BYTES) " bytes"},
	[PC_RESULT_INVALID_CREDENTIAL_TYPE] = {"invalid_credential_type", "Invalid credential type (expected %s)"},
	[PC_RESULT_INVALID_ALIAS] = {"invalid_alias", "Alias exceeds maximum length"},
	[PC_RESULT_CONNECTION_NOT_FOUND] = {"connection_not_found", "Connection not found"},
	[PC_RESULT_NOT_OWNED_BY_USER] = {"not_owned_by_user", "Connection not owned by user"},
	[PC_RESULT_NOT_ACTIVE] = {"not_active", "Connection is not active"},
	[PC_RESULT_INVALID_TRANSITION] = {"invalid_transition", "Cannot transition to %s"},
	[PC_RESULT_ENCRYPTION_UNAVAILABLE] = {"encryption_unavailable", "%s"},
	[PC_RESULT_DATABASE_ERROR] = {"database_error", "Database error occurred: %s"},
	[PC_RESULT_LEASE_LOST] = {"lease_lost", "Lease not held: it was ended or claimed again"},
};

/*
 * Connect to SPI and prepare a call of the given command, whose objects live
 * in the schema of the SQL function being called. On a logical replication
 * subscriber the call is refused before anything is written.
 */
void
pc_call_begin(PcCall *call, FunctionCallInfo fcinfo, PcCommand command)
{
	pc_refuse_on_subscriber(fcinfo);
	pc_call_begin_in(call, get_func_namespace(fcinfo->flinfo->fn_oid), command);
}

/* The same for a call made from C (provider_expire_overdue), in schema nsp. */
void
pc_call_begin_in(PcCall *call, Oid nsp, PcCommand command)
{
	pc_plans_use_schema(nsp);
	memset(call, 0, sizeof(*call));
	call->callcxt = CurrentMemoryContext;
	call->event.command = command;
	call->ok = true;
	call->audit_success = true;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

/*
 * Stamp the Attempted event from call->event as it is now, and the call's
 * id. Its row is written with the outcome's, by one INSERT in
 * pc_call_record, Attempted first: the two always go together (if they
 * cannot be written the call raises, undoing its change), and a call pays
 * for one INSERT, not two.
 */
void
pc_call_attempted(PcCall *call)
{
	call->event.outcome = PC_ATTEMPTED;
	pc_event_stamp(&call->event, &call->attempted);
	pc_event_call_id(&call->call_id, &call->attempted);
	call->attempted.event.call_id = &call->call_id;
	call->event.call_id = &call->call_id;
}

/*
 * Record a failure with its code's message, arg standing for its %s (NULL
 * for codes without one). The first failure recorded wins.
 */
void
pc_call_fail(PcCall *call, PcResultCode code, const char *arg)
{
	MemoryContext old;

	Assert(code >= 0 && code < PC_NUM_RESULT_CODES);
	if (!call->ok)
		return;
	old = MemoryContextSwitchTo(call->callcxt);
	call->ok = false;
	call->error_code = pc_result_codes[code].code;
	call->error = strchr(pc_result_codes[code].message, '%') ?
		psprintf(pc_result_codes[code].message, arg ? arg : "") :
		pstrdup(pc_result_codes[code].message);
	MemoryContextSwitchTo(old);
}

/* Record the invalid_transition failure of a refused status change, naming both states. */
void
pc_call_fail_transition(PcCall *call, PcStatus from, PcStatus to)
{
	pc_call_fail(call, PC_RESULT_INVALID_TRANSITION,
				 psprintf("%s from current state (%s)", pc_status_label(to), pc_status_label(from)));
}

/* Record the invalid_argument failure of a NULL argument. */
void
pc_call_fail_null(PcCall *call, const char *argname)
{
	pc_call_fail(call, PC_RESULT_INVALID_ARGUMENT, psprintf("%s cannot be null", argname));
}

/*
 * Write the call's events: Attempted, the outcome (Succeeded unless a
 * failure was recorded, or the call recorded a failure made elsewhere) and
 * ProviderConnectionRecovered when the call repaired a connection; nothing
 * for a success that is not audited.
 */
void
pc_call_record(PcCall *call)
{
	PcWrittenEvent events[PC_MAX_EVENTS_PER_CALL];
	int			n = 0;

	if (call->ok && !call->audit_success)
		return;
	call->event.outcome = (call->ok && call->recorded_failure == NULL) ? PC_SUCCEEDED : PC_FAILED;
	call->event.reason = call->ok ? call->recorded_failure : call->error;
	events[n++] = call->attempted;
	pc_event_stamp(&call->event, &events[n++]);
	if (call->ok && call->recovered)
	{
		PcEvent		notice = call->event;

		notice.command = PC_CMD_RECOVERY;
		notice.outcome = PC_SUCCEEDED;
		pc_event_stamp(&notice, &events[n++]);
	}
	pc_write_events(events, n);
}

/*
 * Write the call's events (pc_call_record), disconnect from SPI and return
 * the provider_result row.
 */
Datum
pc_call_finish(PcCall *call, FunctionCallInfo fcinfo)
{
	TupleDesc	tupdesc;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};
	MemoryContext spicxt;

	pc_call_record(call);

	spicxt = MemoryContextSwitchTo(call->callcxt);
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("function returning provider_result called in a context that cannot accept it")));
	tupdesc = BlessTupleDesc(tupdesc);

	values[0] = BoolGetDatum(call->ok);
	if (call->result_connection_id != NULL)
	{
		pg_uuid_t  *id = palloc(sizeof(pg_uuid_t));

		memcpy(id, call->result_connection_id, sizeof(pg_uuid_t));
		values[1] = UUIDPGetDatum(id);
	}
	else
		nulls[1] = true;
	values[2] = call->error_code ? CStringGetTextDatum(call->error_code) : (Datum) 0;
	nulls[2] = (call->error_code == NULL);
	values[3] = call->error ? CStringGetTextDatum(call->error) : (Datum) 0;
	nulls[3] = (call->error == NULL);
	MemoryContextSwitchTo(spicxt);

	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	MemoryContextSwitchTo(call->callcxt);
	return HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls));
}

/*
 * Whether an error caught in a call must be raised again instead of becoming
 * a database_error result: the caller asked to stop (a cancel or
 * statement_timeout, 57xxx) or must retry its transaction (serialization
 * failure, deadlock, class 40). Recording them would commit a failure the
 * client never asked for, and hide the SQLSTATE it retries on.
 */
static bool
MustReraise(int sqlerrcode)
{
	int			category = ERRCODE_TO_CATEGORY(sqlerrcode);

	return category == ERRCODE_TRANSACTION_ROLLBACK ||
		category == ERRCODE_OPERATOR_INTERVENTION;
}

/*
 * Run write(call, arg) in a subtransaction, as a PL/pgSQL exception block
 * does. An error inside it is rolled back and recorded as database_error
 * (its message only: a detail may quote the row, credentials included), and
 * the caller's transaction stays usable; returns false if that happened.
 * Cancels, timeouts, serialization failures and deadlocks are raised again
 * after the rollback (MustReraise).
 */
bool
pc_guarded_write(PcCall *call, PcWriteFn write, void *arg)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile bool caught = false;
	int			save_depth = pc_command_depth;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);

	PG_TRY();
	{
		pc_command_depth++;
		write(call, arg);
		pc_command_depth--;
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		pc_command_depth = save_depth;
		MemoryContextSwitchTo(call->callcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;

		if (MustReraise(edata->sqlerrcode))
			ReThrowError(edata);
		pc_call_fail(call, PC_RESULT_DATABASE_ERROR, edata->message);
		FreeErrorData(edata);
		caught = true;
	}
	PG_END_TRY();

	return !caught;
}

/*
 * Whether the current write comes from one of our commands: the guard
 * records direct status changes, not those the commands record themselves.
 */
bool
pc_command_writing(void)
{
	return pc_command_depth > 0;
}

/*
 * Credentials argument argno: present, not empty, at most
 * PC_MAX_CREDENTIAL_BYTES, measured before detoasting so an oversized value
 * is never copied.
 */
bool
pc_check_credentials(PcCall *call, FunctionCallInfo fcinfo, int argno)
{
	Size		size;

	size = PG_ARGISNULL(argno) ? 0 : toast_raw_datum_size(PG_GETARG_DATUM(argno)) - VARHDRSZ;
	if (size == 0)
		pc_call_fail(call, PC_RESULT_INVALID_CREDENTIALS, NULL);
	else if (size > PC_MAX_CREDENTIAL_BYTES)
		pc_call_fail(call, PC_RESULT_CREDENTIALS_TOO_LARGE, NULL);
	return size > 0 && size <= PC_MAX_CREDENTIAL_BYTES;
}

/* A provider slug: not NULL, not empty, at most PC_MAX_SLUG_CHARS characters. */
bool
pc_check_slug(PcCall *call, const char *slug)
{
	if (slug == NULL || slug[0] == '\0' ||
		pg_mbstrlen(slug) > PC_MAX_SLUG_CHARS)
	{
		pc_call_fail(call, PC_RESULT_INVALID_PROVIDER_SLUG, NULL);
		return false;
	}
	return true;
}

/* An alias: NULL, or at most PC_MAX_ALIAS_CHARS characters. */
bool
pc_check_alias(PcCall *call, const char *alias)
{
	if (alias != NULL && pg_mbstrlen(alias) > PC_MAX_ALIAS_CHARS)
	{
		pc_call_fail(call, PC_RESULT_INVALID_ALIAS, NULL);
		return false;
	}
	return true;
}

/* The entry of pc_credential_types for type, or -1. */
static int
CredentialTypeIndex(const char *type)
{
	int			i;

	if (type != NULL)
		for (i = 0; i < lengthof(pc_credential_types); i++)
			if (strcmp(type, pc_credential_types[i].name) == 0)
				return i;
	return -1;
}

/* Whether type is one of pc_credential_types. */
static bool
CredentialTypeValid(const char *type)
{
	return CredentialTypeIndex(type) >= 0;
}

/* Whether type is a valid credential type, recording nothing (pc_check_credential_type records). */
bool
pc_credential_type_valid(const char *type)
{
	return CredentialTypeValid(type);
}

/* A credential type; the failure's message lists the valid ones. */
bool
pc_check_credential_type(PcCall *call, const char *type)
{
	StringInfoData list;
	int			i;

	if (CredentialTypeValid(type))
		return true;
	initStringInfo(&list);
	for (i = 0; i < lengthof(pc_credential_types); i++)
		appendStringInfo(&list, "%s%s",
						 i == 0 ? "" : (i == lengthof(pc_credential_types) - 1 ? " or " : ", "),
						 pc_credential_types[i].name);
	pc_call_fail(call, PC_RESULT_INVALID_CREDENTIAL_TYPE, list.data);
	return false;
}

/* SQL function: provider_credential_type_valid(text), for the table's CHECK */
PG_FUNCTION_INFO_V1(provider_credential_type_valid);

/* Whether a credential type is one of pc_credential_types. */
Datum
provider_credential_type_valid(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(CredentialTypeValid(text_to_cstring(PG_GETARG_TEXT_PP(0))));
}

/* SQL function: provider_credential_type_refreshable(text), for the overview and the claim */
PG_FUNCTION_INFO_V1(provider_credential_type_refreshable);

/* Whether credentials of this type can be refreshed (false for an unknown type). */
Datum
provider_credential_type_refreshable(PG_FUNCTION_ARGS)
{
	int			i = CredentialTypeIndex(text_to_cstring(PG_GETARG_TEXT_PP(0)));

	PG_RETURN_BOOL(i >= 0 && pc_credential_types[i].refreshable);
}

/*
 * An expiry argument: NULL (never expires) or a real time, not -infinity;
 * with in_future, also not in the past (pc_now), which would make new
 * credentials dead on arrival.
 */
bool
pc_check_expires_at(PcCall *call, FunctionCallInfo fcinfo, int argno, bool in_future)
{
	if (PG_ARGISNULL(argno))
		return true;
	if (TIMESTAMP_IS_NOBEGIN(PG_GETARG_TIMESTAMPTZ(argno)))
	{
		pc_call_fail(call, PC_RESULT_INVALID_ARGUMENT, "expires_at cannot be -infinity");
		return false;
	}
	if (in_future && PG_GETARG_TIMESTAMPTZ(argno) <= pc_now())
	{
		pc_call_fail(call, PC_RESULT_INVALID_ARGUMENT, "expires_at is in the past");
		return false;
	}
	return true;
}

/* The encryption key can be used (keys.c says why not). */
bool
pc_check_key(PcCall *call)
{
	const char *problem = pc_key_problem();

	if (problem != NULL)
		pc_call_fail(call, PC_RESULT_ENCRYPTION_UNAVAILABLE, problem);
	return problem == NULL;
}

/*
 * Read connection id without locking it; false if there is none. With
 * user_id, only among that user's connections (on Citus: in that user's
 * shard only); without, by id alone. The row's owner and provider cannot
 * change (status.c), so checks made on them here still hold once the row
 * is locked, and every later statement of the call names the row by its
 * owner and id (row->user_id), the key Citus routes by.
 */
bool
pc_find_connection(const pg_uuid_t *id, const pg_uuid_t *user_id, PcConnectionRow *row)
{
	Datum		args[2];
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;

	args[0] = UUIDPGetDatum(id);
	args[1] = UUIDPGetDatum(user_id);
	if (SPI_execute_plan(pc_statement_plan(user_id ? &pc_find_user_connection_stmt : &pc_find_connection_stmt),
						 args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read provider connection");
	if (SPI_processed == 0)
		return false;

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	memcpy(&row->user_id, DatumGetUUIDP(SPI_getbinval(tup, desc, Anum_pc_find_user_id, &isnull)),
		   sizeof(pg_uuid_t));
	memcpy(&row->provider_id, DatumGetUUIDP(SPI_getbinval(tup, desc, Anum_pc_find_provider_id, &isnull)),
		   sizeof(pg_uuid_t));
	row->provider_slug = SPI_getvalue(tup, desc, Anum_pc_find_provider_slug);
	row->status = pc_status_from_name(SPI_getvalue(tup, desc, Anum_pc_find_status));
	return true;
}

/*
 * Read connection id of user_id (pc_find_connection), for a call made on
 * the user's behalf; if the user has no such connection, record why:
 * not_owned_by_user when the id is another user's (found by id alone, on
 * this failure path only: on Citus a read of every shard),
 * connection_not_found otherwise.
 */
bool
pc_find_owned_connection(PcCall *call, const pg_uuid_t *id, const pg_uuid_t *user_id,
						 PcConnectionRow *row)
{
	if (pc_find_connection(id, user_id, row))
		return true;
	if (pc_find_connection(id, NULL, row))
		pc_call_fail(call, PC_RESULT_NOT_OWNED_BY_USER, NULL);
	else
		pc_call_fail(call, PC_RESULT_CONNECTION_NOT_FOUND, NULL);
	return false;
}

/*
 * The connection a call names (id), found by id alone, or with by_user
 * among user_id's connections only (the user-first forms; none when
 * user_id is NULL); what the call's events say of it (pc_call_describe,
 * with the caller's user when it was not found by a user-first form), and
 * the id as the result's. Returns whether it was found, in *row.
 */
bool
pc_call_find_connection(PcCall *call, bool by_user, const pg_uuid_t *user_id,
						const pg_uuid_t *id, PcConnectionRow *row)
{
	bool		found = false;

	if (id != NULL && (!by_user || user_id != NULL))
		found = pc_find_connection(id, by_user ? user_id : NULL, row);
	pc_call_describe(call, found ? row : NULL);
	if (!found && by_user)
		call->event.user_id = user_id;
	call->event.connection_id = id;
	call->result_connection_id = id;
	return found;
}

/*
 * A user_id argument: not NULL, and not the nil UUID, which the audit log
 * stores for "no user" (a call made without one).
 */
bool
pc_check_user(PcCall *call, const pg_uuid_t *user_id)
{
	if (user_id == NULL)
		pc_call_fail_null(call, "user_id");
	else if (memcmp(user_id, &pc_nil_user, sizeof(pg_uuid_t)) == 0)
		pc_call_fail(call, PC_RESULT_INVALID_ARGUMENT, "user_id cannot be the nil UUID");
	else
		return true;
	return false;
}

/* Lock connection $1 of user $3; whether lease token $2 is in force on it (NULL: no such row). */
static PcStatement pc_lock_lease = {
	"SELECT lease_until IS NOT NULL AND lease_token OPERATOR(pg_catalog.=) $2"
	" FROM %1$s.provider_connections WHERE id OPERATOR(pg_catalog.=) $1"
	" AND user_id OPERATOR(pg_catalog.=) $3 FOR UPDATE",
	3, {UUIDOID, UUIDOID, UUIDOID}
};

/*
 * The fence, inside a guarded write, before its UPDATE: with a lease token
 * (1.4 schemas: only their functions take one), lock the row and check
 * that this lease is in force (not ended, not replaced by a newer claim);
 * if not, record lease_lost and return false: the caller changes nothing.
 * The lock keeps it in force until the caller's transaction ends. A lease
 * that ran out but was not claimed again is still in force: nobody else
 * can have used the credentials. Without a token (callers that do not
 * claim) there is no fence. A row that is gone is left to the UPDATE to
 * report. user_id is the row's owner (pc_find_connection).
 */
bool
pc_check_lease(PcCall *call, const pg_uuid_t *id, const pg_uuid_t *user_id, const pg_uuid_t *lease_token)
{
	Datum		values[3];
	bool		isnull;
	bool		held;

	if (lease_token == NULL)
		return true;
	values[0] = UUIDPGetDatum(id);
	values[1] = UUIDPGetDatum(lease_token);
	values[2] = UUIDPGetDatum(user_id);
	if (SPI_execute_plan(pc_statement_plan(&pc_lock_lease), values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not lock provider connection");
	if (SPI_processed == 0)
		return true;
	held = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (isnull || !held)
	{
		pc_call_fail(call, PC_RESULT_LEASE_LOST, NULL);
		return false;
	}
	return true;
}

/*
 * What the call's events say of an existing connection: its owner,
 * provider and slug, or nothing known when row is NULL (not found).
 */
void
pc_call_describe(PcCall *call, const PcConnectionRow *row)
{
	call->event.user_id = row ? &row->user_id : NULL;
	call->event.provider_id = row ? &row->provider_id : NULL;
	call->event.provider_slug = row ? row->provider_slug : NULL;
}

/*
 * Describe the call by its connection's row once its Attempted event is
 * stamped already (a refresh's fast path learns the row from its UPDATE):
 * the Attempted event gets the facts it would have had if the row had been
 * read first, as pc_event_stamp copies them (the slug clipped).
 */
void
pc_call_describe_attempted(PcCall *call, const PcConnectionRow *row)
{
	pc_call_describe(call, row);
	call->attempted.event.user_id = call->event.user_id;
	call->attempted.event.provider_id = call->event.provider_id;
	call->attempted.event.provider_slug = pc_clip(row->provider_slug, PC_MAX_EVENT_SLUG_BYTES);
}

/* Argument helpers: NULL for a NULL argument. */
pg_uuid_t *
pc_arg_uuid(FunctionCallInfo fcinfo, int argno)
{
	return PG_ARGISNULL(argno) ? NULL : PG_GETARG_UUID_P(argno);
}

char *
pc_arg_text(FunctionCallInfo fcinfo, int argno)
{
	return PG_ARGISNULL(argno) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(argno));
}
