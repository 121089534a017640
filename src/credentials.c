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

#define PC_READ_CREDENTIALS_SQL \
	"SELECT encrypted_credentials FROM %1$s.provider_connections" \
	" WHERE id OPERATOR(pg_catalog.=) $1"

/* By id alone: on Citus a read of every shard. */
static PcStatement pc_read_credentials = {
	PC_READ_CREDENTIALS_SQL, 1, {UUIDOID}, .multi_shard = true
};

/* By owner and id: on Citus a read of the owner's shard. */
static PcStatement pc_read_user_credentials = {
	PC_READ_CREDENTIALS_SQL " AND user_id OPERATOR(pg_catalog.=) $2", 2, {UUIDOID, UUIDOID}
};

/*
 * The plain credentials of a connection, opened with whichever configured
 * key sealed them; NULL when the connection holds none (or does not exist,
 * or, by_user, is not that user's). by_user: the 1.4 form, the owner's id
 * first. Grant it only to the roles that call providers (README,
 * "Security model").
 */
static Datum
Credentials(FunctionCallInfo fcinfo, bool by_user)
{
	MemoryContext callcxt = CurrentMemoryContext;
	Datum		args[2];
	bool		isnull = true;
	Datum		sealed = (Datum) 0;
	bytea	   *plain = NULL;
	int			id_arg = by_user ? 1 : 0;

	if (PG_ARGISNULL(id_arg) || (by_user && PG_ARGISNULL(0)))
		PG_RETURN_NULL();
	args[0] = PG_GETARG_DATUM(id_arg);
	args[1] = by_user ? PG_GETARG_DATUM(0) : (Datum) 0;

	pc_plans_use_schema(get_func_namespace(fcinfo->flinfo->fn_oid));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_plan(pc_statement_plan(by_user ? &pc_read_user_credentials : &pc_read_credentials),
						 args, NULL, true, 1) != SPI_OK_SELECT)
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

/* SQL function: provider_credentials(connection_id) */
PG_FUNCTION_INFO_V1(provider_credentials);

/* provider_credentials by connection id (Credentials). */
Datum
provider_credentials(PG_FUNCTION_ARGS)
{
	return Credentials(fcinfo, false);
}

/* SQL function: provider_credentials(user_id, connection_id) */
PG_FUNCTION_INFO_V1(provider_credentials_of_user);

/* provider_credentials by owner and connection id (Credentials). */
Datum
provider_credentials_of_user(PG_FUNCTION_ARGS)
{
	return Credentials(fcinfo, true);
}
