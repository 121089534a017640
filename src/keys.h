/*
 * keys.h
 *		The encryption keys: read from a file or a command, never from a
 *		setting's value, and cached per backend until the next reload.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#ifndef PC_KEYS_H
#define PC_KEYS_H

#include "postgres.h"

/* Keys shorter than this are refused: they must not be guessable. */
#define PC_MIN_KEY_LENGTH 32
/* Longest key file or command output read. */
#define PC_MAX_KEY_LENGTH 1024

extern void pc_keys_init(void);
extern const char *pc_key_problem(void);
extern const char *pc_current_key(void);
extern uint32 pc_current_key_id(void);
extern const char *pc_key_with_id(uint32 id);
extern const char *pc_previous_key_problem(void);
extern bool pc_configured_key_ids(uint32 *current, bool *has_previous, uint32 *previous);

#endif							/* PC_KEYS_H */
