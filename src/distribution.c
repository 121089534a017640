/*
 * distribution.c
 *		provider_distributed(): whether Citus distributes the extension's
 *		tables in this database (provider_distribute() in the install
 *		script does it). The facts themselves are read in plans.c, where the
 *		statements that depend on them are prepared.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/lsyscache.h"

#include "plans.h"

/* SQL function: provider_distributed() */
PG_FUNCTION_INFO_V1(provider_distributed);

/*
 * Whether provider_connections is a Citus distributed table here: then the
 * SQL functions route each statement by user_id, and the batches read every
 * shard without locking (docs/citus.md).
 */
Datum
provider_distributed(PG_FUNCTION_ARGS)
{
	pc_plans_use_schema(get_func_namespace(fcinfo->flinfo->fn_oid));
	PG_RETURN_BOOL(pc_citus_distributed());
}
