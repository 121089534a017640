/*
 * worker.h
 *		The background workers: a launcher, and one worker per database
 *		that assigns feed positions and, in notify = worker mode, sends the
 *		notifications.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#ifndef PC_WORKER_H
#define PC_WORKER_H

#include "postgres.h"

extern void pc_worker_init(void);
extern void pc_worker_wake(bool round_needed);
extern bool pc_worker_serving(void);
extern bool pc_worker_database_listed(void);
extern bool pc_worker_sync(void);

#endif							/* PC_WORKER_H */
