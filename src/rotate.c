/*
 * rotate.c
 *		provider_rotate_credentials: re-seal credentials under the current key.
 *
 * Key rotation: point provider_connections.encryption_key_file at the new
 * key and encryption_key_previous_file at the old one, reload, then call
 * this function until it reports nothing remaining, and clear the previous
 * key. Each call re-seals one batch in the caller's transaction; rows a
 * caller is changing are skipped (SKIP LOCKED) and picked up by a later
 * call, so callers never wait on a rotation for longer than one batch.
 *
 * A full batch reports remaining as NULL ("call again") instead of counting:
 * counting scans every sealed row, and doing it per batch made a rotation
 * quadratic. Only a batch that found fewer rows than it could take counts
 * what is left (rows skipped because a caller held them).
 *
 * provider_key_status (1.4) tells an operator, per database, which keys seal
 * the stored credentials, so that a rotation of a cluster is known to be
 * finished in every database before the previous key is removed.
 *
 * Copyright (c) 2026, provider_connections developers.
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
#include "utils/tuplestore.h"
#include "utils/uuid.h"

#include "crypto.h"
#include "keys.h"
#include "plans.h"
#include "replication.h"

/* pg_catalog.substring counts from 1: the key id's first byte. */
#define PC_KEY_ID_SQL_START CppAsString2(PC_SEAL_KEY_ID_OFFSET) " + 1"

/* Rows sealed under another key than $1: up to $2. */
#define PC_ROTATE_BATCH_SQL \
	"SELECT id, encrypted_credentials, user_id FROM %1$s.provider_connections" \
	" WHERE encrypted_credentials IS NOT NULL" \
	" AND pg_catalog.substring(encrypted_credentials, " PC_KEY_ID_SQL_START ", 4)" \
	" OPERATOR(pg_catalog.<>) $1" \
	" LIMIT $2"

/* Locked, skipping rows others hold. */
static PcStatement pc_rotate_batch = {
	PC_ROTATE_BATCH_SQL " FOR UPDATE SKIP LOCKED", 2, {BYTEAOID, INT4OID}
};

/*
 * On Citus, which locks rows of one user's shard only: unlocked, from every
 * shard; the store below then changes a row only if it still holds what
 * was read.
 */
static PcStatement pc_rotate_batch_distributed = {
	PC_ROTATE_BATCH_SQL, 2, {BYTEAOID, INT4OID}, .multi_shard = true
};

/* Store $2 in connection $1 of user $3 if it still holds $4. */
static PcStatement pc_rotate_store = {
	"UPDATE %1$s.provider_connections SET encrypted_credentials = $2"
	" WHERE id OPERATOR(pg_catalog.=) $1 AND user_id OPERATOR(pg_catalog.=) $3"
	" AND encrypted_credentials OPERATOR(pg_catalog.=) $4",
	4, {UUIDOID, BYTEAOID, UUIDOID, BYTEAOID}
};

static PcStatement pc_rotate_remaining = {
	"SELECT pg_catalog.count(*) FROM %1$s.provider_connections"
	" WHERE encrypted_credentials IS NOT NULL"
	" AND pg_catalog.substring(encrypted_credentials, " PC_KEY_ID_SQL_START ", 4)"
	" OPERATOR(pg_catalog.<>) $1",
	1, {BYTEAOID}, .multi_shard = true
};

/* The current key's id as a bytea, as sealed values store it. */
static bytea *
CurrentKeyId(void)
{
	bytea	   *out = palloc(VARHDRSZ + 4);

	SET_VARSIZE(out, VARHDRSZ + 4);
	pc_current_key_id_bytes((uint8 *) VARDATA(out));
	return out;
}

/* Error context: which connection's credentials could not be rotated. */
static void
RotateErrorContext(void *arg)
{
	errcontext("while rotating the credentials of provider connection %s",
			   DatumGetCString(DirectFunctionCall1(uuid_out, *(Datum *) arg)));
}

/*
 * Re-seal one row's credentials under the current key and store them;
 * the plain bytes are wiped before returning. Returns rows updated.
 */
static uint64
RotateRow(Datum id, Datum sealed, Datum user_id)
{
	Datum		store[4];
	bytea	   *plain = pc_open(DatumGetByteaPP(sealed));

	store[0] = id;
	store[1] = PointerGetDatum(pc_seal(plain));
	store[2] = user_id;
	store[3] = sealed;
	explicit_bzero(VARDATA_ANY(plain), VARSIZE_ANY_EXHDR(plain));
	if (SPI_execute_plan(pc_statement_plan(&pc_rotate_store), store, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not store rotated credentials");
	return SPI_processed;
}

/* SQL function: provider_rotate_credentials(batch_size) */
PG_FUNCTION_INFO_V1(provider_rotate_credentials);

/*
 * Re-seal up to batch_size credentials that were sealed with another key
 * than the current one. Returns (rotated, remaining), remaining NULL after a
 * full batch. Superuser only.
 */
Datum
provider_rotate_credentials(PG_FUNCTION_ARGS)
{
	MemoryContext callcxt = CurrentMemoryContext;
	MemoryContext rowcxt;
	int32		batch_size = PG_ARGISNULL(0) ? 1000 : PG_GETARG_INT32(0);
	const char *problem;
	TupleDesc	tupdesc;
	SPITupleTable *batch;
	Datum		args[2];
	Datum		values[2];
	bool		nulls[2] = {false, false};
	int64		rotated = 0;
	bool		isnull;
	uint64		i;
	uint64		n;
	Datum		current_id = 0;
	ErrorContextCallback errcallback;

	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be superuser to rotate provider credentials")));
	/* A subscriber receives the publisher's rotated rows. */
	pc_refuse_on_subscriber(fcinfo);
	problem = pc_key_problem();
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
	if (SPI_execute_plan(pc_statement_plan(pc_citus_distributed() ? &pc_rotate_batch_distributed : &pc_rotate_batch),
						 args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not select credentials to rotate");
	batch = SPI_tuptable;
	n = SPI_processed;

	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "provider_connections rotation row",
								   ALLOCSET_DEFAULT_SIZES);
	errcallback.callback = RotateErrorContext;
	errcallback.arg = &current_id;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;
	for (i = 0; i < n; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(rowcxt);

		current_id = SPI_getbinval(batch->vals[i], batch->tupdesc, 1, &isnull);
		rotated += RotateRow(current_id,
							 SPI_getbinval(batch->vals[i], batch->tupdesc, 2, &isnull),
							 SPI_getbinval(batch->vals[i], batch->tupdesc, 3, &isnull));
		MemoryContextSwitchTo(old);
		MemoryContextReset(rowcxt);
	}
	error_context_stack = errcallback.previous;

	if (n == (uint64) batch_size)
		nulls[1] = true;		/* more may remain: call again */
	else
	{
		if (SPI_execute_plan(pc_statement_plan(&pc_rotate_remaining), args, NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not count credentials left to rotate");
		values[1] = Int64GetDatum(DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
															  SPI_tuptable->tupdesc, 1, &isnull)));
	}
	SPI_finish();

	MemoryContextSwitchTo(callcxt);
	values[0] = Int64GetDatum(rotated);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}

/*
 * The stored credentials by their first bytes: the header (the key id is
 * in it) and whether anything follows it. Grouped in SQL; crypto.c reads
 * the header.
 */
static PcStatement pc_key_status_counts = {
	"SELECT pg_catalog.substring(encrypted_credentials, 1, " CppAsString2(PC_SEAL_HEADER_LEN) "),"
	" pg_catalog.length(encrypted_credentials) OPERATOR(pg_catalog.>) " CppAsString2(PC_SEAL_HEADER_LEN) ","
	" pg_catalog.count(*)"
	" FROM %1$s.provider_connections WHERE encrypted_credentials IS NOT NULL"
	" GROUP BY 1, 2",
	0, {InvalidOid}, .multi_shard = true
};

/* One row of provider_key_status. */
typedef struct PcKeyCount
{
	int64		id;				/* -1: not our header */
	int64		count;
} PcKeyCount;

/* Add n credentials under id to counts[0..*used), a new entry if needed. */
static void
AddKeyCount(PcKeyCount *counts, int *used, int64 id, int64 n)
{
	int			i;

	for (i = 0; i < *used; i++)
		if (counts[i].id == id)
		{
			counts[i].count += n;
			return;
		}
	counts[*used].id = id;
	counts[*used].count = n;
	(*used)++;
}

/* SQL function: provider_key_status() */
PG_FUNCTION_INFO_V1(provider_key_status);

/*
 * For this database, one row per key id: the id (8 hex digits, as errors
 * print it; NULL for values without our header), its role ('current' or
 * 'previous' when a configured key has that id, otherwise 'unknown') and how
 * many stored credentials it seals. The configured keys always have a row,
 * with 0 when they seal nothing. Superuser only; an error without a usable
 * current key (its id is unknown then).
 */
Datum
provider_key_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext callcxt = CurrentMemoryContext;
	const char *problem;
	uint32		current_id;
	uint32		previous_id = 0;
	bool		has_previous;
	PcKeyCount *counts;
	int			used = 0;
	uint64		i;
	int			k;

	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be superuser to read the key status of provider credentials")));
	problem = pc_key_problem();
	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot report the key status of provider credentials: %s", problem)));
	if (!pc_configured_key_ids(&current_id, &has_previous, &previous_id))
		elog(ERROR, "provider_connections: no usable encryption key");

	InitMaterializedSRF(fcinfo, 0);
	pc_plans_use_schema(get_func_namespace(fcinfo->flinfo->fn_oid));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_plan(pc_statement_plan(&pc_key_status_counts), NULL, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not count credentials by key");

	/* Configured keys first, then what the rows hold, in the order found. */
	counts = MemoryContextAlloc(callcxt, sizeof(PcKeyCount) * (SPI_processed + 2));
	AddKeyCount(counts, &used, current_id, 0);
	if (has_previous)
		AddKeyCount(counts, &used, previous_id, 0);
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		bytea	   *header = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[i],
														   SPI_tuptable->tupdesc, 1, &isnull));
		bool		long_enough = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i],
															 SPI_tuptable->tupdesc, 2, &isnull));
		int64		n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
													SPI_tuptable->tupdesc, 3, &isnull));
		/* Only the header is here; the length that follows was checked in SQL. */
		int64		id = long_enough ?
			pc_header_key_id((const uint8 *) VARDATA_ANY(header), PC_SEAL_HEADER_LEN + 1) : -1;

		AddKeyCount(counts, &used, id, n);
	}
	SPI_finish();

	for (k = 0; k < used; k++)
	{
		Datum		values[3];
		bool		nulls[3] = {false, false, false};
		const char *role = "unknown";

		if (counts[k].id < 0)
			nulls[0] = true;
		else
		{
			values[0] = CStringGetTextDatum(psprintf("%08llx", (unsigned long long) counts[k].id));
			if ((uint32) counts[k].id == current_id)
				role = "current";
			else if (has_previous && (uint32) counts[k].id == previous_id)
				role = "previous";
		}
		values[1] = CStringGetTextDatum(role);
		values[2] = Int64GetDatum(counts[k].count);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
