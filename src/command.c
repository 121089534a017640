/*
 * command.c
 *		What provider_connect, provider_disconnect and provider_refresh_tokens
 *		share.
 *
 * A call writes its Attempted event first, then does its checks and its
 * write, then writes exactly one outcome event and returns a
 * provider_result row. Business failures are results, not errors, so the
 * failure is recorded when the caller commits. The data change runs in a
 * subtransaction (as a PL/pgSQL exception block does): a database error
 * there is rolled back and becomes a database_error result. The outcome
 * event is written after that subtransaction, in the caller's
 * transaction; if it cannot be written the call raises an error, which
 * undoes the change too: no change without its record.
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

#include "command.h"
#include "plans.h"
#include "settings.h"

static const char *const pc_credential_types[] = {
	"oauth2", "api_key", "link_token", "certificate", "file_import", "custom"
};

void
pc_call_begin(PcCall *call, FunctionCallInfo fcinfo, PcCommand command)
{
	pc_plans_use_schema(get_func_namespace(fcinfo->flinfo->fn_oid));
	memset(call, 0, sizeof(*call));
	call->callcxt = CurrentMemoryContext;
	call->event.command = command;
	call->ok = true;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

void
pc_call_attempted(PcCall *call)
{
	call->event.outcome = PC_ATTEMPTED;
	call->attempted_id = pc_emit_event(&call->event);
}

void
pc_call_fail(PcCall *call, const char *error_code, const char *error)
{
	if (!call->ok)
		return;
	call->ok = false;
	call->error_code = error_code;
	call->error = MemoryContextStrdup(call->callcxt, error);
}

Datum
pc_call_finish(PcCall *call, FunctionCallInfo fcinfo)
{
	TupleDesc	tupdesc;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};
	MemoryContext spicxt;

	call->event.outcome = call->ok ? PC_SUCCEEDED : PC_FAILED;
	call->event.reason = call->error;
	pc_emit_event(&call->event);

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

bool
pc_guarded_write(PcCall *call, PcWriteFn write, void *arg)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile bool caught = false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);

	PG_TRY();
	{
		write(call, arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(call->callcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;

		/* Only the message: a detail may quote the row, credentials included. */
		pc_call_fail(call, "database_error",
					 psprintf("Database error occurred: %s", edata->message));
		FreeErrorData(edata);
		caught = true;
	}
	PG_END_TRY();

	return !caught;
}

bool
pc_check_credentials(PcCall *call, FunctionCallInfo fcinfo, int argno)
{
	Size		size;

	if (PG_ARGISNULL(argno))
	{
		pc_call_fail(call, "invalid_credentials", "Invalid or missing credentials");
		return false;
	}
	/* Measure before detoasting, so an oversized value is never copied. */
	size = toast_raw_datum_size(PG_GETARG_DATUM(argno)) - VARHDRSZ;
	if (size == 0)
	{
		pc_call_fail(call, "invalid_credentials", "Invalid or missing credentials");
		return false;
	}
	if (size > PC_MAX_CREDENTIAL_BYTES)
	{
		pc_call_fail(call, "credentials_too_large",
					 psprintf("Credentials exceed the maximum size of %d bytes",
							  PC_MAX_CREDENTIAL_BYTES));
		return false;
	}
	return true;
}

bool
pc_check_credential_type(PcCall *call, const char *type)
{
	int			i;

	if (type != NULL)
		for (i = 0; i < lengthof(pc_credential_types); i++)
			if (strcmp(type, pc_credential_types[i]) == 0)
				return true;
	pc_call_fail(call, "invalid_credential_type",
				 "Invalid credential type (expected oauth2, api_key, link_token, certificate, file_import or custom)");
	return false;
}

bool
pc_check_expires_at(PcCall *call, FunctionCallInfo fcinfo, int argno)
{
	if (!PG_ARGISNULL(argno) && TIMESTAMP_IS_NOBEGIN(PG_GETARG_TIMESTAMPTZ(argno)))
	{
		pc_call_fail(call, "invalid_argument", "expires_at cannot be -infinity");
		return false;
	}
	return true;
}

bool
pc_check_key(PcCall *call)
{
	const char *problem = pc_key_problem();

	if (problem != NULL)
	{
		pc_call_fail(call, "encryption_unavailable", problem);
		return false;
	}
	return true;
}

bool
pc_find_connection(const pg_uuid_t *id, PcConnectionRow *row)
{
	Datum		arg = UUIDPGetDatum(id);
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;

	if (SPI_execute_plan(pc_plan(PC_PLAN_FIND_CONNECTION), &arg, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read provider connection");
	if (SPI_processed == 0)
		return false;

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	memcpy(&row->user_id, DatumGetUUIDP(SPI_getbinval(tup, desc, 1, &isnull)), sizeof(pg_uuid_t));
	memcpy(&row->provider_id, DatumGetUUIDP(SPI_getbinval(tup, desc, 2, &isnull)), sizeof(pg_uuid_t));
	row->provider_slug = SPI_getvalue(tup, desc, 3);
	row->status = SPI_getvalue(tup, desc, 4);
	return true;
}

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
