/*
 * retention.h
 *		provider_purge_events: ageing the audit log out.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#ifndef PC_RETENTION_H
#define PC_RETENTION_H

#include "postgres.h"

extern bool pc_purge_in_progress(void);

#endif							/* PC_RETENTION_H */
