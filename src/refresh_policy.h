/*
 * refresh_policy.h
 *		The refresh settings: lease bound, backoff, attempts, the
 *		expiring-soon window.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#ifndef PC_REFRESH_POLICY_H
#define PC_REFRESH_POLICY_H

#include "postgres.h"
#include "utils/timestamp.h"

extern void pc_refresh_policy_init(void);
extern int	pc_max_refresh_attempts(void);
extern TimestampTz pc_refresh_backoff_until(TimestampTz now, int attempt);
extern TimestampTz pc_refresh_retry_limit(TimestampTz now);

#endif							/* PC_REFRESH_POLICY_H */
