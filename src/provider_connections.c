/*
 * provider_connections.c
 *		Module entry point: the magic block and _PG_init, which only starts
 *		each subsystem; every subsystem defines its own settings.
 *
 * Copyright (c) 2026, provider_connections developers.
 * Released under the PostgreSQL License (see LICENSE).
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "clock.h"
#include "events.h"
#include "feed_shards.h"
#include "keys.h"
#include "refresh_policy.h"
#include "replication.h"
#include "worker.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * Module load. Runs in the postmaster when the library is preloaded, and
 * otherwise in each backend on first use; the background worker and its
 * shared memory exist only in the first case.
 */
void
_PG_init(void)
{
	pc_keys_init();
	pc_clock_init();
	pc_events_init();
	pc_worker_api_init();
	pc_refresh_policy_init();
	if (process_shared_preload_libraries_in_progress)
	{
		pc_worker_init();
		pc_feed_shards_init();
		pc_worker_hold_init();
		pc_replication_init();
		pc_launcher_init();
	}
	MarkGUCPrefixReserved("provider_connections");
}
