/*
 * refresh_policy.c
 *		The refresh settings and what follows from them: how long a claim
 *		may lease a connection, how long a connection waits after a failed
 *		refresh, after how many it is no longer claimed, and when the
 *		overview calls credentials "expiring soon".
 *
 * max_lease only bounds what a caller asks for (each claimer checks its
 * own request), so a superuser may set it per session. The others are
 * read by every claimer, by every worker recording a failure and by the
 * overview: two sessions with different values would disagree on whether
 * a connection may be claimed, so they are cluster-wide (postgresql.conf,
 * reload), as the notification settings are. The SQL side reads them all
 * through provider_refresh_settings(), which also loads this library in a
 * session that has not loaded it yet.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "refresh_policy.h"

/* In milliseconds, as the settings are declared. */
static int	pc_max_lease_ms = 10 * 60 * 1000;
static int	pc_refresh_backoff_ms = 30 * 1000;
static int	pc_refresh_backoff_max_ms = 60 * 60 * 1000;
static int	pc_max_refresh_attempts_value = 5;
static int	pc_expiring_soon_ms = 5 * 60 * 1000;

/* An interval of ms milliseconds, palloc'd. */
static Interval *
MsInterval(int ms)
{
	Interval   *iv = palloc0(sizeof(Interval));

	iv->time = (int64) ms * 1000;
	return iv;
}

/* Consecutive failed refreshes after which a connection is no longer claimed. */
int
pc_max_refresh_attempts(void)
{
	return pc_max_refresh_attempts_value;
}

/*
 * When a connection may be claimed again after its attempt-th consecutive
 * failed refresh (1 for the first): refresh_backoff doubled per earlier
 * failure, at most refresh_backoff_max.
 */
TimestampTz
pc_refresh_backoff_until(TimestampTz now, int attempt)
{
	int64		delay = (int64) pc_refresh_backoff_ms * 1000;
	int64		cap = (int64) pc_refresh_backoff_max_ms * 1000;
	int			i;

	for (i = 1; i < attempt && delay < cap; i++)
		delay *= 2;
	if (delay > cap)
		delay = cap;
	return now + delay;
}

/*
 * The latest time a provider's retry_after may set, from now: the backoff's
 * cap, refresh_backoff_max. A provider asking for longer (or a worker
 * passing '100 years') would park the connection, neither claimed nor
 * counted as exhausted, beyond what the settings allow.
 */
TimestampTz
pc_refresh_retry_limit(TimestampTz now)
{
	return now + (int64) pc_refresh_backoff_max_ms * 1000;
}

/* SQL function: provider_refresh_settings() */
PG_FUNCTION_INFO_V1(provider_refresh_settings);

/* The settings in force, one row (see provider_connections--1.3--1.4.sql). */
Datum
provider_refresh_settings(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "provider_refresh_settings must return a row");
	tupdesc = BlessTupleDesc(tupdesc);
	values[0] = IntervalPGetDatum(MsInterval(pc_max_lease_ms));
	values[1] = IntervalPGetDatum(MsInterval(pc_refresh_backoff_ms));
	values[2] = IntervalPGetDatum(MsInterval(pc_refresh_backoff_max_ms));
	values[3] = Int32GetDatum(pc_max_refresh_attempts_value);
	values[4] = IntervalPGetDatum(MsInterval(pc_expiring_soon_ms));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* Define the settings; called from _PG_init. */
void
pc_refresh_policy_init(void)
{
	DefineCustomIntVariable("provider_connections.max_lease",
							"Longest lease provider_claim_expiring and provider_renew_lease give.",
							"A worker that dies holding a lease delays its connections until the lease ends.",
							&pc_max_lease_ms,
							10 * 60 * 1000, 1, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("provider_connections.refresh_backoff",
							"Wait before a connection is claimed again after its first failed refresh.",
							"Doubled after each further consecutive failure, up to refresh_backoff_max.",
							&pc_refresh_backoff_ms,
							30 * 1000, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("provider_connections.refresh_backoff_max",
							"Longest wait between two refresh attempts of a connection.",
							NULL,
							&pc_refresh_backoff_max_ms,
							60 * 60 * 1000, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("provider_connections.max_refresh_attempts",
							"Consecutive failed refreshes after which a connection is no longer claimed.",
							"Its user must connect again, or new credentials arrive otherwise.",
							&pc_max_refresh_attempts_value,
							5, 1, INT_MAX,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("provider_connections.expiring_soon",
							"Window in which the overview calls an active connection's credentials expiring soon.",
							NULL,
							&pc_expiring_soon_ms,
							5 * 60 * 1000, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
}
