/*
 * plans.c
 *		The SQL statements the commands run, prepared once per backend.
 *
 * Every statement names its tables with the extension's schema, quoted, and
 * its operators as OPERATOR(pg_catalog.=), so nothing a caller puts on the
 * search_path can stand in for them; values always travel as parameters.
 * Plans are prepared on first use and kept (SPI_keepplan); PostgreSQL
 * replans them if the tables are dropped and created again, and they are
 * rebuilt if the extension comes back in another schema.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "plans.h"

typedef struct PcPlanSpec
{
	const char *sql;			/* %1$s is the quoted extension schema */
	int			nargs;
	Oid			argtypes[12];
} PcPlanSpec;

static const PcPlanSpec pc_plan_specs[PC_NUM_PLANS] = {
	[PC_PLAN_INSERT_AUDIT] = {
		"INSERT INTO %1$s.provider_audit_log (id, event_id, event_type, action, user_id,"
		" connection_id, provider_id, provider_slug, reason, needs_user_action, occurred_at, context)"
		" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::pg_catalog.jsonb)",
		12, {INT8OID, UUIDOID, TEXTOID, TEXTOID, UUIDOID, UUIDOID, UUIDOID, TEXTOID,
		TEXTOID, BOOLOID, TIMESTAMPTZOID, TEXTOID}
	},
	[PC_PLAN_INSERT_CONNECTION] = {
		"INSERT INTO %1$s.provider_connections (id, user_id, provider_id, provider_slug, status,"
		" alias, credential_type, encrypted_credentials, credentials_expires_at,"
		" connected_at, created_at, updated_at)"
		" VALUES ($1, $2, $3, $4, 'active', $5, $6, $7, $8, $9, $9, $9)",
		9, {UUIDOID, UUIDOID, UUIDOID, TEXTOID, TEXTOID, TEXTOID, BYTEAOID,
		TIMESTAMPTZOID, TIMESTAMPTZOID}
	},
	[PC_PLAN_FIND_CONNECTION] = {
		"SELECT user_id, provider_id, provider_slug::pg_catalog.text, status::pg_catalog.text"
		" FROM %1$s.provider_connections WHERE id OPERATOR(pg_catalog.=) $1",
		1, {UUIDOID}
	},
	[PC_PLAN_DISCONNECT] = {
		"UPDATE %1$s.provider_connections SET status = 'disconnected',"
		" encrypted_credentials = NULL, credential_type = NULL,"
		" credentials_expires_at = NULL, updated_at = $2"
		" WHERE id OPERATOR(pg_catalog.=) $1",
		2, {UUIDOID, TIMESTAMPTZOID}
	},
	[PC_PLAN_REFRESH] = {
		/* Rechecked on the newest row version after a lock wait. */
		"UPDATE %1$s.provider_connections SET encrypted_credentials = $2,"
		" credentials_expires_at = $3,"
		" credential_type = COALESCE($4, credential_type), updated_at = $5"
		" WHERE id OPERATOR(pg_catalog.=) $1"
		" AND status OPERATOR(pg_catalog.=) 'active'::%1$s.provider_connection_status",
		5, {UUIDOID, BYTEAOID, TIMESTAMPTZOID, TEXTOID, TIMESTAMPTZOID}
	},
	[PC_PLAN_CREDENTIALS] = {
		"SELECT encrypted_credentials FROM %1$s.provider_connections"
		" WHERE id OPERATOR(pg_catalog.=) $1",
		1, {UUIDOID}
	},
	[PC_PLAN_FEED_OWN_ROWS] = {
		/* The caller keeps the rows whose xmin is one of its own xids. */
		"SELECT id, xmin FROM %1$s.provider_audit_log"
		" WHERE id OPERATOR(pg_catalog.>=) $1 AND id OPERATOR(pg_catalog.<=) $2 ORDER BY id",
		2, {INT8OID, INT8OID}
	},
	[PC_PLAN_FEED_INSERT] = {
		"INSERT INTO %1$s.provider_event_positions (global_position, audit_id)"
		" SELECT * FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]),"
		" pg_catalog.unnest($2::pg_catalog.int8[]))",
		2, {INT8ARRAYOID, INT8ARRAYOID}
	},
	[PC_PLAN_ROTATE_BATCH] = {
		/*
		 * SKIP LOCKED: rows a caller is changing are left for a later batch.
		 * substring(.., 4, 4) is the key id at PC_SEAL_KEY_ID_OFFSET (crypto.h).
		 */
		"SELECT id, encrypted_credentials FROM %1$s.provider_connections"
		" WHERE encrypted_credentials IS NOT NULL"
		" AND pg_catalog.substring(encrypted_credentials, 4, 4) OPERATOR(pg_catalog.<>) $1"
		" LIMIT $2 FOR UPDATE SKIP LOCKED",
		2, {BYTEAOID, INT4OID}
	},
	[PC_PLAN_ROTATE_STORE] = {
		"UPDATE %1$s.provider_connections SET encrypted_credentials = $2"
		" WHERE id OPERATOR(pg_catalog.=) $1",
		2, {UUIDOID, BYTEAOID}
	},
	[PC_PLAN_ROTATE_REMAINING] = {
		"SELECT pg_catalog.count(*) FROM %1$s.provider_connections"
		" WHERE encrypted_credentials IS NOT NULL"
		" AND pg_catalog.substring(encrypted_credentials, 4, 4) OPERATOR(pg_catalog.<>) $1",
		1, {BYTEAOID}
	},
};

static Oid	pc_schema = InvalidOid;
static SPIPlanPtr pc_plans[PC_NUM_PLANS];

void
pc_plans_use_schema(Oid nsp)
{
	int			i;

	if (nsp == pc_schema)
		return;
	/* Created again elsewhere: plans made for the old schema are stale. */
	for (i = 0; i < PC_NUM_PLANS; i++)
	{
		if (pc_plans[i] != NULL)
			SPI_freeplan(pc_plans[i]);
		pc_plans[i] = NULL;
	}
	pc_schema = nsp;
}

SPIPlanPtr
pc_plan(PcPlanId id)
{
	const PcPlanSpec *spec = &pc_plan_specs[id];
	SPIPlanPtr	plan;

	Assert(OidIsValid(pc_schema));
	if (pc_plans[id] != NULL)
		return pc_plans[id];

	plan = SPI_prepare(psprintf(spec->sql, quote_identifier(get_namespace_name(pc_schema))),
					   spec->nargs,
					   (Oid *) spec->argtypes);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for provider_connections statement %d: %s",
			 (int) id, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed for provider_connections statement %d", (int) id);
	pc_plans[id] = plan;
	return plan;
}

Oid
pc_plans_schema(void)
{
	return pc_schema;
}

/*
 * Looked up on each call (a syscache hit): an OID kept across calls would go
 * stale when the extension is dropped and created again.
 */
Oid
pc_audit_sequence(void)
{
	Oid			seq = get_relname_relid("provider_audit_log_id_seq", pc_schema);

	if (!OidIsValid(seq))
		elog(ERROR, "sequence provider_audit_log_id_seq is missing");
	return seq;
}
