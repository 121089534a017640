/*
 * status.h
 *		The connection status state machine: one transition table used by
 *		the SQL functions and by the trigger that guards direct writes.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#ifndef PC_STATUS_H
#define PC_STATUS_H

#include "postgres.h"

typedef enum PcStatus
{
	PC_STATUS_PENDING,
	PC_STATUS_ACTIVE,
	PC_STATUS_EXPIRED,
	PC_STATUS_REVOKED,
	PC_STATUS_FAILED,
	PC_STATUS_DISCONNECTED,
	PC_NUM_STATUSES
} PcStatus;

/* The status for a label; raises an error for an unknown label. */
extern PcStatus pc_status_from_name(const char *name);
/* The status an enum datum of provider_connection_status holds. */
extern PcStatus pc_status_from_enum(Datum value);
extern const char *pc_status_label(PcStatus status);
extern const char *pc_status_name(PcStatus status);

/*
 * Whether a row may move from one status to another. A status kept as it is
 * is not a transition and is always allowed.
 */
extern bool pc_transition_allowed(PcStatus from, PcStatus to);
extern bool pc_status_change_allowed(PcStatus from, PcStatus to);
extern bool pc_status_needs_reauthentication(PcStatus status);

#endif							/* PC_STATUS_H */
