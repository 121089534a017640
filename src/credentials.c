/*
 * credentials.c
 *		provider_credentials: hand a worker the decrypted credentials.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/uuid.h"

#include "crypto.h"
#include "catalog/pg_type.h"
#include "plans.h"

static PcStatement pc_read_credentials = {
	"SELECT encrypted_credentials FROM %1$s.provider_connections"
	" WHERE id OPERATOR(pg_catalog.=) $1",
	1, {UUIDOID}
};

/* SQL function: provider_credentials(connection_id) */
PG_FUNCTION_INFO_V1(provider_credentials);

/*
 * The plain credentials of a connection, opened with whichever configured
 * key sealed them; NULL when the connection holds none (or does not exist).
 * Grant it only to the roles that call providers (README, "Security model").
 */
Datum
provider_credentials(PG_FUNCTION_ARGS)
{
	MemoryContext callcxt = CurrentMemoryContext;
	Datum		arg;
	bool		isnull = true;
	Datum		sealed = (Datum) 0;
	bytea	   *plain = NULL;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	arg = PG_GETARG_DATUM(0);

	pc_plans_use_schema(get_func_namespace(fcinfo->flinfo->fn_oid));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_plan(pc_statement_plan(&pc_read_credentials), &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read provider connection");
	if (SPI_processed > 0)
		sealed = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
	{
		bytea	   *opened = pc_open(DatumGetByteaPP(sealed));
		MemoryContext spicxt = MemoryContextSwitchTo(callcxt);

		plain = DatumGetByteaPCopy(PointerGetDatum(opened));
		MemoryContextSwitchTo(spicxt);
		/* The copy is the caller's; leave no other plain copy behind. */
		explicit_bzero(VARDATA_ANY(opened), VARSIZE_ANY_EXHDR(opened));
	}
	SPI_finish();

	if (plain == NULL)
		PG_RETURN_NULL();
	PG_RETURN_BYTEA_P(plain);
}
