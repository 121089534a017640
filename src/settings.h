/*
 * settings.h
 *		Module initialisation and the extension's settings (GUCs).
 */
#ifndef PC_SETTINGS_H
#define PC_SETTINGS_H

#include "postgres.h"
#include "utils/timestamp.h"

/* The encryption keys as set; NULL or "" when unset. */
extern char *pc_encryption_key;
extern char *pc_encryption_key_previous;

/*
 * Why the current key cannot be used, as a sentence for a result row, or
 * NULL when it can.
 */
extern const char *pc_key_problem(void);

/* The time every row and event of a call is stamped with. */
extern TimestampTz pc_now(void);

/* True while provider_connections.test_clock pins the clock (tests only). */
extern bool pc_test_clock_active(void);

#endif							/* PC_SETTINGS_H */
