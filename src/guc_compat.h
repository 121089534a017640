/*
 * guc_compat.h
 *		Allocation of GUC "extra" data across server versions: malloc up to
 *		PostgreSQL 15, guc_malloc from 16 on.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#ifndef PC_GUC_COMPAT_H
#define PC_GUC_COMPAT_H

#include "postgres.h"
#include "utils/guc.h"

#if PG_VERSION_NUM >= 160000
#define PcGucMalloc(size) guc_malloc(LOG, (size))
#define PcGucFree(ptr) guc_free(ptr)
#else
#define PcGucMalloc(size) malloc(size)
#define PcGucFree(ptr) free(ptr)
#endif

#endif							/* PC_GUC_COMPAT_H */
