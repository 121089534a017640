/*
 * plans.c
 *		The cache of prepared statements.
 *
 * Every statement names its tables with the extension's schema, quoted, and
 * its operators as OPERATOR(pg_catalog.=), so nothing a caller puts on the
 * search_path can stand in for them; values always travel as parameters.
 * A statement is prepared on first use and kept (SPI_keepplan), as a
 * generic plan: parameters then show as $n in EXPLAIN and auto_explain
 * output instead of their values (sealed credentials among them), and no
 * call pays for planning. PostgreSQL replans a kept plan if the tables are
 * dropped and created again; a plan made for another schema (the extension
 * created again elsewhere) is prepared anew. Also here: where an extension's
 * objects live, and what the current schema holds.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_namespace.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "storage/proc.h"
#include "parser/parse_node.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/fmgroids.h"
#include "utils/plancache.h"
#include "utils/rel.h"

#include "plans.h"

/* PGPROC's local transaction id is vxid.lxid from PostgreSQL 17 on. */
#if PG_VERSION_NUM >= 170000
#define PC_MY_LXID (MyProc->vxid.lxid)
#else
#define PC_MY_LXID (MyProc->lxid)
#endif

static Oid	pc_schema = InvalidOid;

/*
 * Facts about the schema's objects, looked up once per transaction: an OID
 * kept across transactions would go stale when the extension is dropped and
 * created again, or updated.
 */
static LocalTransactionId pc_facts_lxid = InvalidLocalTransactionId;
static Oid	pc_facts_schema = InvalidOid;
static Oid	pc_audit_seq = InvalidOid;
static PcSchemaLevel pc_level = PC_SCHEMA_1_1;
static bool pc_citus = false;	/* the citus extension is in this database */
static bool pc_distributed = false; /* provider_connections is distributed */
static int32 pc_group = 0;		/* this node's Citus group (0: coordinator, or no Citus) */

/*
 * The first int column of the first row of pg_catalog.relname, and whether
 * there is one; or, with match, whether some row's first column equals it.
 * Citus's catalogs are tiny and have no C interface we may link to.
 */
static bool
CitusCatalogLookup(const char *relname, Oid match, int32 *first)
{
	Oid			relid = get_relname_relid(relname, PG_CATALOG_NAMESPACE);
	Relation	rel;
	SysScanDesc scan;
	HeapTuple	tup;
	bool		found = false;

	if (!OidIsValid(relid))
		return false;
	rel = table_open(relid, AccessShareLock);
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	while (!found && HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, 1, RelationGetDescr(rel), &isnull);

		if (isnull)
			continue;
		if (OidIsValid(match))
			found = (DatumGetObjectId(d) == match);
		else
		{
			*first = DatumGetInt32(d);
			found = true;
		}
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/* What Citus says of this database: whether it is there, our tables distributed, our group. */
static void
LoadCitusFacts(void)
{
	/*
	 * CREATE EXTENSION citus makes pg_catalog.pg_dist_partition and DROP
	 * EXTENSION removes it: a relation cache lookup, where looking for the
	 * extension itself scans pg_extension (no cache) once per transaction.
	 */
	pc_citus = OidIsValid(get_relname_relid("pg_dist_partition", PG_CATALOG_NAMESPACE));
	pc_distributed = false;
	pc_group = 0;
	if (!pc_citus)
		return;
	pc_distributed = CitusCatalogLookup("pg_dist_partition",
										get_relname_relid("provider_connections", pc_schema), NULL);
	if (!CitusCatalogLookup("pg_dist_local_group", InvalidOid, &pc_group))
		pc_group = 0;
}

/* Look the schema's facts up again if this transaction has not yet. */
static void
LoadSchemaFacts(void)
{
	if (pc_facts_lxid == PC_MY_LXID && pc_facts_schema == pc_schema)
		return;
	pc_audit_seq = get_relname_relid("provider_audit_log_id_seq", pc_schema);
	if (!OidIsValid(pc_audit_seq))
		elog(ERROR, "sequence provider_audit_log_id_seq is missing");
	if (get_attnum(get_relname_relid("provider_connections", pc_schema), "lease_token") != InvalidAttrNumber)
		pc_level = PC_SCHEMA_1_4;
	else if (get_attnum(get_relname_relid("provider_audit_log", pc_schema), "call_id") != InvalidAttrNumber)
		pc_level = PC_SCHEMA_1_3;
	else if (OidIsValid(get_relname_relid("provider_feed_state", pc_schema)))
		pc_level = PC_SCHEMA_1_2;
	else
		pc_level = PC_SCHEMA_1_1;
	LoadCitusFacts();
	pc_facts_lxid = PC_MY_LXID;
	pc_facts_schema = pc_schema;
}

/*
 * Use the statements of the extension whose objects live in schema nsp (the
 * schema of the SQL function being called). Call once per call, first.
 */
void
pc_plans_use_schema(Oid nsp)
{
	pc_schema = nsp;
}

/* The kept plan of stmt, prepared on first use. The caller is connected to SPI. */
SPIPlanPtr
pc_statement_plan(PcStatement *stmt)
{
	SPIPlanPtr	plan;
	bool		custom;

	Assert(OidIsValid(pc_schema));
	/* Citus plans a statement on several shards only with its values known. */
	custom = stmt->multi_shard && pc_citus_distributed();
	if (stmt->plan != NULL && stmt->schema == pc_schema && stmt->custom == custom)
		return stmt->plan;
	if (stmt->plan != NULL)
	{
		SPI_freeplan(stmt->plan);
		stmt->plan = NULL;
	}

	plan = SPI_prepare_cursor(psprintf(stmt->sql, quote_identifier(get_namespace_name(pc_schema))),
							  stmt->nargs, stmt->argtypes,
							  custom ? CURSOR_OPT_CUSTOM_PLAN : CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for provider_connections statement \"%s\": %s",
			 stmt->sql, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed for provider_connections statement \"%s\"", stmt->sql);
	stmt->plan = plan;
	stmt->schema = pc_schema;
	stmt->custom = custom;
	return plan;
}

/*
 * Whether the extension's tables are distributed by Citus (provider_distribute):
 * then a statement may reach only the shard its user_id names, or must be
 * planned with its values (multi_shard), and batches go row by row.
 */
bool
pc_citus_distributed(void)
{
	LoadSchemaFacts();
	return pc_distributed;
}

/* This node's Citus group id: 0 on the coordinator and without Citus. */
int32
pc_citus_group(void)
{
	LoadSchemaFacts();
	return pc_group;
}

/* The sequence that numbers audit rows. */
Oid
pc_audit_sequence(void)
{
	LoadSchemaFacts();
	return pc_audit_seq;
}

/*
 * The version of the extension's objects in the current schema: a schema
 * of an older version still works with this library until ALTER EXTENSION
 * ... UPDATE (1.1: its events get positions then; 1.2: no call_id, no
 * leases; 1.3: no lease tokens, no refresh attempts), so statements that differ are chosen by it.
 */
PcSchemaLevel
pc_schema_level(void)
{
	LoadSchemaFacts();
	return pc_level;
}

/*
 * The schema an extension was created in, or InvalidOid if it is not
 * installed (extension.c keeps its own lookup static before PostgreSQL 16).
 */
Oid
pc_extension_schema(const char *extname)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			nsp = InvalidOid;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum(extname));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		nsp = ((Form_pg_extension) GETSTRUCT(tup))->extnamespace;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return nsp;
}
