/*
 * status.c
 *		The connection status state machine: the statuses, the transitions
 *		the table below allows, and the labels results and events use.
 *
 *	pending -> active | failed		active -> active | expired | revoked
 *	expired | revoked | failed -> active	any -> disconnected (terminal)
 *
 * The SQL functions consult it before they write, and the guard trigger
 * (guard.c) holds every other write path to it. This file depends on no
 * other file of the extension.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_enum.h"
#include "fmgr.h"
#include "utils/syscache.h"

#include "status.h"

static const char *const pc_status_names[PC_NUM_STATUSES] = {
	"pending", "active", "expired", "revoked", "failed", "disconnected"
};

/* allowed[from][to]; the diagonal (no change) is handled separately. */
static const bool pc_allowed[PC_NUM_STATUSES][PC_NUM_STATUSES] = {
	/* to:     pending active expired revoked failed disconnected */
	[PC_STATUS_PENDING] = {false, true, false, false, true, true},
	[PC_STATUS_ACTIVE] = {false, true, true, true, false, true},
	[PC_STATUS_EXPIRED] = {false, true, false, false, false, true},
	[PC_STATUS_REVOKED] = {false, true, false, false, false, true},
	[PC_STATUS_FAILED] = {false, true, false, false, false, true},
	[PC_STATUS_DISCONNECTED] = {false, false, false, false, false, true},
};


/* The enum label of a status, as in provider_connection_status. */
const char *
pc_status_name(PcStatus status)
{
	Assert(status >= 0 && status < PC_NUM_STATUSES);
	return pc_status_names[status];
}

/* A status as result messages name it, as the seed's enum did: ACTIVE. */
const char *
pc_status_label(PcStatus status)
{
	static char labels[PC_NUM_STATUSES][16];

	Assert(status >= 0 && status < PC_NUM_STATUSES);
	if (labels[status][0] == '\0')
	{
		int			i;

		for (i = 0; pc_status_names[status][i] != '\0' && i < sizeof(labels[0]) - 1; i++)
			labels[status][i] = pg_ascii_toupper((unsigned char) pc_status_names[status][i]);
	}
	return labels[status];
}

/* Whether a connection in this status waits for the user to connect again. */
bool
pc_status_needs_reauthentication(PcStatus status)
{
	return status == PC_STATUS_EXPIRED || status == PC_STATUS_REVOKED ||
		status == PC_STATUS_FAILED;
}

/* A real change of status that the table allows (not the diagonal). */
bool
pc_status_change_allowed(PcStatus from, PcStatus to)
{
	return from != to && pc_allowed[from][to];
}

PcStatus
pc_status_from_name(const char *name)
{
	int			i;

	for (i = 0; i < PC_NUM_STATUSES; i++)
		if (strcmp(name, pc_status_names[i]) == 0)
			return (PcStatus) i;
	elog(ERROR, "unknown provider connection status \"%s\"", name);
	return PC_STATUS_PENDING;			/* keep compiler quiet */
}

bool
pc_transition_allowed(PcStatus from, PcStatus to)
{
	return from == to || pc_allowed[from][to];
}

/* The status held in an enum datum of provider_connection_status, by its label. */
PcStatus
pc_status_from_enum(Datum value)
{
	HeapTuple	tup;
	PcStatus	status;

	tup = SearchSysCache1(ENUMOID, value);
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for enum value %u", DatumGetObjectId(value));
	status = pc_status_from_name(NameStr(((Form_pg_enum) GETSTRUCT(tup))->enumlabel));
	ReleaseSysCache(tup);
	return status;
}

/* SQL function: provider_status_needs_reauthentication(provider_connection_status) */
PG_FUNCTION_INFO_V1(provider_status_needs_reauthentication);

/* For the overview view: pc_status_needs_reauthentication of an enum value. */
Datum
provider_status_needs_reauthentication(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(pc_status_needs_reauthentication(pc_status_from_enum(PG_GETARG_DATUM(0))));
}
