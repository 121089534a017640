/*
 * clock.c
 *		The time every row and event of a call is stamped with, and
 *		provider_connections.test_clock, which pins it.
 *
 * test_clock exists for the regression suites, which compare events byte
 * for byte: it pins the clock and the random part of generated UUIDs. It is
 * superuser-only and empty in production. It stays in every build because
 * `make installcheck` on a user's own server needs it.
 *
 * Its check hook parses the value itself instead of calling timestamptz_in:
 * a hook that raises an ERROR is FATAL in the postmaster at reload, and
 * timestamptz_in depends on DateStyle, so a value ALTER SYSTEM accepted in
 * one session could be refused by the postmaster later. Only one format is
 * accepted, ISO 8601 with an explicit UTC offset: 2026-01-02 03:04:05.678901+00.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#include "postgres.h"

#include <ctype.h>

#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "clock.h"
#include "guc_compat.h"

static char *pc_test_clock_text = NULL;
static bool pc_test_clock_set = false;
static TimestampTz pc_test_clock_value = 0;

/* Read exactly n digits at *p into *out; false if they are not there. */
static bool
ReadDigits(const char **p, int n, int *out)
{
	int			v = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		if (!isdigit((unsigned char) (*p)[i]))
			return false;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return true;
}

/*
 * Parse "YYYY-MM-DD HH:MM:SS[.ffffff](+|-)HH[:MM]" (a 'T' may separate date
 * and time, 'Z' may stand for +00) without raising; false if s is not one.
 */
static bool
ParseIsoTimestamp(const char *s, TimestampTz *result)
{
	int			y,
				mo,
				d,
				h,
				mi,
				sec,
				tzh = 0,
				tzm = 0,
				sign = 1;
	int64		usec = 0;
	int			scale = 100000;
	int64		days;

	if (!ReadDigits(&s, 4, &y) || *s++ != '-' || !ReadDigits(&s, 2, &mo) ||
		*s++ != '-' || !ReadDigits(&s, 2, &d) || (*s != ' ' && *s != 'T'))
		return false;
	s++;
	if (!ReadDigits(&s, 2, &h) || *s++ != ':' || !ReadDigits(&s, 2, &mi) ||
		*s++ != ':' || !ReadDigits(&s, 2, &sec))
		return false;
	if (*s == '.')
	{
		s++;
		if (!isdigit((unsigned char) *s))
			return false;
		for (; isdigit((unsigned char) *s); s++)
		{
			if (scale == 0)
				return false;	/* more than microseconds */
			usec += (*s - '0') * scale;
			scale /= 10;
		}
	}
	if (*s == 'Z')
		s++;
	else if (*s == '+' || *s == '-')
	{
		sign = (*s++ == '-') ? -1 : 1;
		if (!ReadDigits(&s, 2, &tzh))
			return false;
		if (*s == ':')
		{
			s++;
			if (!ReadDigits(&s, 2, &tzm))
				return false;
		}
	}
	else
		return false;
	if (*s != '\0')
		return false;

	if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > day_tab[isleap(y)][mo - 1] ||
		h > 23 || mi > 59 || sec > 59 || tzh > 15 || tzm > 59)
		return false;

	days = date2j(y, mo, d) - POSTGRES_EPOCH_JDATE;
	*result = days * USECS_PER_DAY +
		((int64) h * SECS_PER_HOUR + mi * SECS_PER_MINUTE + sec) * USECS_PER_SEC +
		usec - sign * ((int64) tzh * SECS_PER_HOUR + tzm * SECS_PER_MINUTE) * USECS_PER_SEC;
	return true;
}

/* Check hook: a value we cannot parse is refused, never raised. */
static bool
CheckTestClock(char **newval, void **extra, GucSource source)
{
	TimestampTz value;
	TimestampTz *saved;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (!ParseIsoTimestamp(*newval, &value))
	{
		GUC_check_errdetail("provider_connections.test_clock takes an ISO 8601 timestamp with a UTC offset, such as 2026-01-02 03:04:05.678901+00, or an empty string.");
		return false;
	}
	saved = PcGucMalloc(sizeof(TimestampTz));
	if (saved == NULL)
		return false;
	*saved = value;
	*extra = saved;
	return true;
}

static void
AssignTestClock(const char *newval, void *extra)
{
	pc_test_clock_set = (extra != NULL);
	if (extra != NULL)
		pc_test_clock_value = *(TimestampTz *) extra;
}

/* The time a call stamps its rows and events with. */
TimestampTz
pc_now(void)
{
	return pc_test_clock_set ? pc_test_clock_value : GetCurrentTimestamp();
}

/* True while provider_connections.test_clock pins the clock (tests only). */
bool
pc_test_clock_active(void)
{
	return pc_test_clock_set;
}

/* Define provider_connections.test_clock; called from _PG_init. */
void
pc_clock_init(void)
{
	DefineCustomStringVariable("provider_connections.test_clock",
							   "Pins the clock and generated ids, for reproducible tests only.",
							   "An ISO 8601 timestamp with a UTC offset; leave empty in production.",
							   &pc_test_clock_text,
							   "",
							   PGC_SUSET,
							   GUC_NOT_IN_SAMPLE | GUC_NO_SHOW_ALL,
							   CheckTestClock, AssignTestClock, NULL);
}
