/*
 * crypto.h
 *		Sealing and opening credentials with pgcrypto.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#ifndef PC_CRYPTO_H
#define PC_CRYPTO_H

#include "postgres.h"

/* Bytes of our header in front of each pgcrypto message. */
#define PC_SEAL_HEADER_LEN 7

/*
 * Seal plain bytes under the current key. The caller has checked
 * pc_key_problem() first.
 */
extern bytea *pc_seal(const bytea *plain);

/*
 * Open sealed bytes with whichever configured key (current or previous)
 * sealed them; raises an error if neither did.
 */
extern bytea *pc_open(const bytea *sealed);
extern bool pc_seal_header_valid(const bytea *sealed);
extern int64 pc_header_key_id(const uint8 *p, Size len);

/* Where the 4-byte key id sits in sealed bytes (after "PC" and a version). */
#define PC_SEAL_KEY_ID_OFFSET 3

extern void pc_current_key_id_bytes(uint8 out[4]);

#endif							/* PC_CRYPTO_H */
