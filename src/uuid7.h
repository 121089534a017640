/*
 * uuid7.h
 *		UUIDv7 generation (RFC 9562) for connection ids and event ids.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#ifndef PC_UUID7_H
#define PC_UUID7_H

#include "postgres.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

/*
 * Fill *out with a UUIDv7 stamped with "now". test_seed is used only under
 * provider_connections.test_clock, where it replaces the random bits so the
 * id is reproducible; callers pass something unique per id.
 */
extern void pc_uuid7(pg_uuid_t *out, TimestampTz now, uint64 test_seed);

/*
 * The seed spaces, so that ids of different kinds never share a seed: each
 * is or-ed with the audit id of the event that made the id (unique).
 */
#define PC_SEED_EVENT 0						/* event ids */
#define PC_SEED_CONNECTION (UINT64CONST(1) << 40)	/* connection ids */
#define PC_SEED_CALL (UINT64CONST(1) << 41)		/* call ids */

#endif							/* PC_UUID7_H */
