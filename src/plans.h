/*
 * plans.h
 *		The cache of prepared statements, and the extension schema they are
 *		prepared for. Each statement lives beside the code that binds it.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#ifndef PC_PLANS_H
#define PC_PLANS_H

#include "postgres.h"
#include "executor/spi.h"

#define PC_STATEMENT_MAX_ARGS 48

/*
 * One statement: its SQL (%1$s stands for the quoted extension schema), its
 * parameter types, and the plan kept for it.
 */
typedef struct PcStatement
{
	const char *sql;
	int			nargs;
	Oid			argtypes[PC_STATEMENT_MAX_ARGS];
	SPIPlanPtr	plan;			/* kept plan, or NULL */
	Oid			schema;			/* the schema plan was prepared for */
	bool		multi_shard;	/* may read several Citus shards: custom plans there */
	bool		custom;			/* plan was prepared for custom plans */
} PcStatement;

extern void pc_plans_use_schema(Oid nsp);
extern SPIPlanPtr pc_statement_plan(PcStatement *stmt);
extern Oid	pc_audit_sequence(void);
extern bool pc_citus_distributed(void);
extern int32 pc_citus_group(void);
/* The version of the schema's objects, where this library's statements differ. */
typedef enum PcSchemaLevel
{
	PC_SCHEMA_1_1,				/* audit rows without xid */
	PC_SCHEMA_1_2,				/* xid; positions assigned after commit */
	PC_SCHEMA_1_3,				/* call_id, leases */
	PC_SCHEMA_1_4,				/* lease tokens, refresh attempts */
	PC_NUM_SCHEMA_LEVELS
} PcSchemaLevel;

extern PcSchemaLevel pc_schema_level(void);
extern Oid	pc_extension_schema(const char *extname);

#endif							/* PC_PLANS_H */
