/*
 * clock.h
 *		The time calls are stamped with, and the test clock that pins it.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#ifndef PC_CLOCK_H
#define PC_CLOCK_H

#include "postgres.h"
#include "utils/timestamp.h"

extern void pc_clock_init(void);
extern TimestampTz pc_now(void);
extern bool pc_test_clock_active(void);

#endif							/* PC_CLOCK_H */
