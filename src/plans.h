/*
 * plans.h
 *		The SQL statements the commands run, prepared once per backend.
 */
#ifndef PC_PLANS_H
#define PC_PLANS_H

#include "postgres.h"
#include "executor/spi.h"

typedef enum PcPlanId
{
	PC_PLAN_INSERT_AUDIT,
	PC_PLAN_INSERT_CONNECTION,
	PC_PLAN_FIND_CONNECTION,
	PC_PLAN_DISCONNECT,
	PC_PLAN_REFRESH,
	PC_PLAN_CREDENTIALS,
	PC_PLAN_FEED_OWN_ROWS,
	PC_PLAN_FEED_INSERT,
	PC_PLAN_ROTATE_BATCH,
	PC_PLAN_ROTATE_STORE,
	PC_PLAN_ROTATE_REMAINING,
	PC_NUM_PLANS
} PcPlanId;

/*
 * Use the plans of the extension whose objects live in schema nsp (the
 * schema of the SQL function being called). Call once per call, first.
 */
extern void pc_plans_use_schema(Oid nsp);

/* The kept plan for a statement. The caller is connected to SPI. */
extern SPIPlanPtr pc_plan(PcPlanId id);

/* The schema set by pc_plans_use_schema. */
extern Oid	pc_plans_schema(void);

/* The sequence that numbers audit rows. */
extern Oid	pc_audit_sequence(void);

#endif							/* PC_PLANS_H */
