/*
 * worker.h
 *		What the rest of the extension calls of the background workers: the
 *		setup from _PG_init, and the backend-side API (worker_api.c). The
 *		design is in src/README.md.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#ifndef PC_WORKER_H
#define PC_WORKER_H

#include "postgres.h"

/* Setup from _PG_init; all but pc_worker_api_init only when preloaded. */
extern void pc_worker_api_init(void);	/* worker_api.c: the commit callback */
extern void pc_worker_init(void);	/* worker_shmem.c: settings, shared memory */
extern void pc_worker_hold_init(void);	/* worker_hold.c: utility hook */
extern void pc_launcher_init(void); /* launcher.c: register the launcher */

/* worker_api.c: what backends call. */
extern void pc_worker_note_event(bool for_worker);
extern void pc_worker_wake(bool round_needed);
extern bool pc_worker_serving(void);
extern bool pc_worker_database_listed(void);
extern bool pc_worker_sync(void);

#endif							/* PC_WORKER_H */
