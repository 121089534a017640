/*
 * rotate.c
 *		provider_rotate_credentials: re-seal credentials under the current key.
 *
 * Key rotation: set the new key as provider_connections.encryption_key and
 * the old one as provider_connections.encryption_key_previous, then call
 * this function until it reports nothing remaining, and clear the previous
 * key. Each call re-seals one batch in the caller's transaction; rows a
 * caller is changing are skipped (SKIP LOCKED) and picked up by a later
 * call, so callers never wait on a rotation for longer than one batch.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/uuid.h"

#include "crypto.h"
#include "plans.h"
#include "settings.h"

/* The current key's id as a bytea, as sealed values store it. */
static bytea *
CurrentKeyId(void)
{
	bytea	   *out = palloc(VARHDRSZ + 4);

	SET_VARSIZE(out, VARHDRSZ + 4);
	pc_key_id_bytes(pc_encryption_key, (uint8 *) VARDATA(out));
	return out;
}

/* Error context: which connection's credentials could not be rotated. */
static void
RotateErrorContext(void *arg)
{
	errcontext("while rotating the credentials of provider connection %s",
			   DatumGetCString(DirectFunctionCall1(uuid_out, *(Datum *) arg)));
}

/* SQL function: provider_rotate_credentials(batch_size) */
PG_FUNCTION_INFO_V1(provider_rotate_credentials);

/*
 * Re-seal up to batch_size credentials that were sealed with another key
 * than the current one. Returns (rotated, remaining). Superuser only.
 */
Datum
provider_rotate_credentials(PG_FUNCTION_ARGS)
{
	MemoryContext callcxt = CurrentMemoryContext;
	int32		batch_size = PG_ARGISNULL(0) ? 1000 : PG_GETARG_INT32(0);
	const char *problem = pc_key_problem();
	TupleDesc	tupdesc;
	Datum		args[2];
	Datum		values[2];
	bool		nulls[2] = {false, false};
	int64		rotated = 0;
	int64		remaining;
	bool		isnull;
	uint64		i;
	uint64		n;

	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be superuser to rotate provider credentials")));
	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot rotate provider credentials: %s", problem)));
	if (batch_size < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch_size must be at least 1")));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	pc_plans_use_schema(get_func_namespace(fcinfo->flinfo->fn_oid));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	args[0] = PointerGetDatum(CurrentKeyId());
	args[1] = Int32GetDatum(batch_size);
	if (SPI_execute_plan(pc_plan(PC_PLAN_ROTATE_BATCH), args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not select credentials to rotate");

	n = SPI_processed;
	{
		SPITupleTable *batch = SPI_tuptable;
		Datum		store[2];
		ErrorContextCallback errcallback;

		errcallback.callback = RotateErrorContext;
		errcallback.arg = &store[0];
		errcallback.previous = error_context_stack;
		error_context_stack = &errcallback;

		for (i = 0; i < n; i++)
		{
			bytea	   *plain;

			store[0] = SPI_getbinval(batch->vals[i], batch->tupdesc, 1, &isnull);
			plain = pc_open(DatumGetByteaPP(SPI_getbinval(batch->vals[i], batch->tupdesc, 2, &isnull)));
			store[1] = PointerGetDatum(pc_seal(plain));
			/* Leave no plain copy behind in memory. */
			explicit_bzero(VARDATA_ANY(plain), VARSIZE_ANY_EXHDR(plain));
			if (SPI_execute_plan(pc_plan(PC_PLAN_ROTATE_STORE), store, NULL, false, 0) != SPI_OK_UPDATE)
				elog(ERROR, "could not store rotated credentials");
			rotated += SPI_processed;
		}
		error_context_stack = errcallback.previous;
	}

	if (SPI_execute_plan(pc_plan(PC_PLAN_ROTATE_REMAINING), args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not count credentials left to rotate");
	remaining = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();

	MemoryContextSwitchTo(callcxt);
	values[0] = Int64GetDatum(rotated);
	values[1] = Int64GetDatum(remaining);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}
