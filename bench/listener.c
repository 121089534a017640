/*
 * bench/listener.c
 *
 * The event consumer bench/run.sh keeps connected during every pgbench run.
 * It LISTENs on one channel and, when the run is over, compares what it
 * received with the audit rows the run wrote:
 *
 *   expected    audit rows written during the run (id above the largest id
 *               present when the listener started)
 *   received    notifications received whose payload names one of them
 *   missed      expected rows never received
 *   duplicated  notifications received more than once for the same event
 *   unexpected  notifications naming no audit row of the run (a bug)
 *   earlier     notifications of an earlier run delivered late (ignored)
 *   failed      expected rows whose event_type ends in "Failed" (a sanity
 *               check: a benchmark of the failure path by mistake shows here)
 *
 * Events are matched on the payload's "event_id" (a UUID, unique in the
 * audit log); "audit_id" is used to tell an earlier run's events apart.
 *
 * Latency, two ways, both ending when the notification was read from the
 * socket (one clock: the listener runs on the server's machine):
 *   p50_ms, p99_ms, max_ms: from the payload's "occurred_at", the time the
 *       audit row was written (ISO 8601, microseconds, UTC offset): an
 *       upper bound on commit-to-listener latency, as it includes the rest
 *       of the call and the caller's whole commit;
 *   commit_p50_ms, commit_p99_ms, commit_max_ms: from the commit timestamp
 *       of the transaction that wrote the row (pg_xact_commit_timestamp of
 *       its xmin, read when the run is over), when track_commit_timestamp
 *       is on ("-" otherwise). PostgreSQL takes that timestamp just before
 *       it writes the commit record, so this still includes the caller's
 *       own WAL flush: commit-to-listener as the caller's COMMIT starts.
 * Each event counts once, at its first notification.
 *
 * Usage: listener [--expect-none] CHANNEL AUDIT_TABLE
 *   Connection settings come from the PG* environment variables.
 *   Prints "ready" on stdout once it listens; on SIGTERM or SIGINT it
 *   stops, waits for the notifications still in flight (until every
 *   expected event arrived and 200 ms passed quietly, or nothing arrived
 *   for LISTENER_DRAIN_MS, default 3000), then prints one line:
 *     expected=N received=N missed=N duplicated=N unexpected=N failed=N
 *     earlier=N unparsed=N p50_ms=X p99_ms=X max_ms=X commit_p50_ms=X
 *     commit_p99_ms=X commit_max_ms=X
 *   --expect-none: the target sends no notifications (the floor without
 *   NOTIFY): expected rows are counted but none is reported missed.
 *
 * Build: gcc -O2 -I$(pg_config --includedir) -o listener listener.c -L$(pg_config --libdir) -lpq
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>

#include <libpq-fe.h>

typedef struct EventId
{
	uint64_t	hi;
	uint64_t	lo;
} EventId;

typedef struct Received
{
	EventId		id;
	int64_t		audit_id;		/* -1 when the payload has none */
	int64_t		at;				/* when it was read, us since the epoch */
} Received;

/* An audit row of the run. */
typedef struct Expected
{
	EventId		id;
	int64_t		committed;		/* commit timestamp, us since the epoch; -1: unknown */
} Expected;

static volatile sig_atomic_t stop_requested = 0;

static Received *received = NULL;
static size_t n_received = 0, cap_received = 0;
static double *latencies = NULL;	/* milliseconds, from the write */
static size_t n_latencies = 0, cap_latencies = 0;
static double *commit_latencies = NULL; /* milliseconds, from the commit */
static size_t n_commit_latencies = 0;
static size_t n_unparsed = 0;
static size_t n_earlier = 0;	/* events of an earlier run, delivered late */
static int64_t start_id = 0;	/* largest audit id before the run */

static void
on_signal(int sig)
{
	(void) sig;
	stop_requested = 1;
}

static void
die(PGconn *conn, const char *what)
{
	fprintf(stderr, "listener: %s: %s", what, conn ? PQerrorMessage(conn) : "\n");
	exit(2);
}

static void *
grow(void *p, size_t *cap, size_t elem)
{
	*cap = *cap ? *cap * 2 : 65536;
	p = realloc(p, *cap * elem);
	if (p == NULL)
	{
		fprintf(stderr, "listener: out of memory\n");
		exit(2);
	}
	return p;
}

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * The value of "key" in a flat JSON object, as written by PostgreSQL
 * (json_build_object puts spaces around the colon, the extension does not).
 * Returns a pointer to the first character of the value (after the opening
 * quote for a string) or NULL.
 */
static const char *
json_value(const char *json, const char *key)
{
	char		pattern[64];
	const char *p;

	snprintf(pattern, sizeof(pattern), "\"%s\"", key);
	for (p = strstr(json, pattern); p != NULL; p = strstr(p + 1, pattern))
	{
		const char *v = p + strlen(pattern);

		while (isspace((unsigned char) *v))
			v++;
		if (*v != ':')
			continue;			/* the key text inside some value */
		v++;
		while (isspace((unsigned char) *v))
			v++;
		if (*v == '"')
			v++;
		return v;
	}
	return NULL;
}

/* 32 hex digits, dashes ignored. */
static int
parse_uuid(const char *s, EventId *out)
{
	int			digits = 0;

	out->hi = out->lo = 0;
	for (; *s && digits < 32; s++)
	{
		int			v;

		if (*s == '-')
			continue;
		if (*s >= '0' && *s <= '9')
			v = *s - '0';
		else if (*s >= 'a' && *s <= 'f')
			v = *s - 'a' + 10;
		else if (*s >= 'A' && *s <= 'F')
			v = *s - 'A' + 10;
		else
			return 0;
		if (digits < 16)
			out->hi = (out->hi << 4) | (uint64_t) v;
		else
			out->lo = (out->lo << 4) | (uint64_t) v;
		digits++;
	}
	return digits == 32;
}

/*
 * "2026-01-05T06:07:08.123456+00:00" (fraction of 0 to 6 digits, offset
 * Z, +HH, +HHMM, +HH:MM or absent meaning UTC) to microseconds since the
 * Unix epoch. Returns 0 on success.
 */
static int
parse_timestamp(const char *s, int64_t *out)
{
	struct tm	tm;
	int			consumed = 0;
	int64_t		frac = 0;
	int			frac_digits = 0;
	int			offset_min = 0;
	time_t		t;

	memset(&tm, 0, sizeof(tm));
	if (sscanf(s, "%4d-%2d-%2d%*1[T ]%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
			   &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &consumed) != 6 || consumed == 0)
		return -1;
	s += consumed;
	if (*s == '.')
	{
		for (s++; isdigit((unsigned char) *s); s++)
			if (frac_digits < 6)
			{
				frac = frac * 10 + (*s - '0');
				frac_digits++;
			}
		for (; frac_digits < 6; frac_digits++)
			frac *= 10;
	}
	if (*s == '+' || *s == '-')
	{
		int			sign = (*s == '+') ? 1 : -1;
		int			hh = 0,
					mm = 0;

		s++;
		if (!isdigit((unsigned char) s[0]) || !isdigit((unsigned char) s[1]))
			return -1;
		hh = (s[0] - '0') * 10 + (s[1] - '0');
		s += 2;
		if (*s == ':')
			s++;
		if (isdigit((unsigned char) s[0]) && isdigit((unsigned char) s[1]))
			mm = (s[0] - '0') * 10 + (s[1] - '0');
		offset_min = sign * (hh * 60 + mm);
	}
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	t = timegm(&tm);
	*out = ((int64_t) t - (int64_t) offset_min * 60) * 1000000 + frac;
	return 0;
}

static void
take_notification(const PGnotify *n, int64_t received_at)
{
	const char *v;
	Received	r;
	int64_t		occurred;

	v = json_value(n->extra, "event_id");
	if (v == NULL || !parse_uuid(v, &r.id))
	{
		n_unparsed++;
		return;
	}
	v = json_value(n->extra, "audit_id");
	r.audit_id = v ? strtoll(v, NULL, 10) : -1;
	r.at = received_at;
	if (r.audit_id >= 0 && r.audit_id <= start_id)
	{
		n_earlier++;
		return;
	}
	if (n_received == cap_received)
		received = grow(received, &cap_received, sizeof(Received));
	received[n_received++] = r;

	v = json_value(n->extra, "occurred_at");
	if (v != NULL && parse_timestamp(v, &occurred) == 0)
	{
		if (n_latencies == cap_latencies)
			latencies = grow(latencies, &cap_latencies, sizeof(double));
		latencies[n_latencies++] = (double) (received_at - occurred) / 1000.0;
	}
}

/* Wait up to timeout_ms for notifications; returns how many were taken. */
static size_t
pump(PGconn *conn, int timeout_ms)
{
	int			sock = PQsocket(conn);
	fd_set		fds;
	struct timeval tv;
	PGnotify   *n;
	size_t		taken = 0;
	int64_t		at;

	FD_ZERO(&fds);
	FD_SET(sock, &fds);
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	if (select(sock + 1, &fds, NULL, NULL, &tv) < 0)
	{
		if (errno == EINTR)
			return 0;
		die(NULL, "select failed");
	}
	if (!PQconsumeInput(conn))
		die(conn, "connection lost");
	at = now_us();
	while ((n = PQnotifies(conn)) != NULL)
	{
		take_notification(n, at);
		PQfreemem(n);
		taken++;
	}
	return taken;
}

static int
cmp_id(const EventId *a, const EventId *b)
{
	if (a->hi != b->hi)
		return a->hi < b->hi ? -1 : 1;
	if (a->lo != b->lo)
		return a->lo < b->lo ? -1 : 1;
	return 0;
}

static int
cmp_received(const void *a, const void *b)
{
	return cmp_id(&((const Received *) a)->id, &((const Received *) b)->id);
}

static int
cmp_expected(const void *a, const void *b)
{
	return cmp_id(&((const Expected *) a)->id, &((const Expected *) b)->id);
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return (x > y) - (x < y);
}

/* The p-quantile of n sorted values (0 when there are none). */
static double
percentile(const double *values, size_t n, double p)
{
	size_t		i;

	if (n == 0)
		return 0.0;
	i = (size_t) (p * (double) n + 0.999999);
	if (i < 1)
		i = 1;
	if (i > n)
		i = n;
	return values[i - 1];
}

static PGresult *
query(PGconn *conn, const char *sql)
{
	PGresult   *res = PQexec(conn, sql);

	if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK)
		die(conn, sql);
	return res;
}

int
main(int argc, char **argv)
{
	int			expect_none = 0;
	const char *channel,
			   *table;
	PGconn	   *listen_conn,
			   *query_conn;
	PGresult   *res;
	char		sql[512];
	char	   *start_mark;
	Expected   *expected;
	int			have_commit_ts;
	size_t		n_expected,
				n_failed = 0,
				missed = 0,
				duplicated = 0,
				unexpected = 0,
				i,
				j;
	int64_t		last_arrival;
	int			drain_ms = getenv("LISTENER_DRAIN_MS") ? atoi(getenv("LISTENER_DRAIN_MS")) : 3000;
	struct sigaction sa;

	if (argc > 1 && strcmp(argv[1], "--expect-none") == 0)
	{
		expect_none = 1;
		argc--;
		argv++;
	}
	if (argc != 3)
	{
		fprintf(stderr, "usage: listener [--expect-none] CHANNEL AUDIT_TABLE\n");
		return 2;
	}
	channel = argv[1];
	table = argv[2];

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	/* One connection only listens, so query round trips never delay a read. */
	listen_conn = PQconnectdb("application_name=bench_listener");
	if (PQstatus(listen_conn) != CONNECTION_OK)
		die(listen_conn, "could not connect");
	query_conn = PQconnectdb("application_name=bench_listener_query");
	if (PQstatus(query_conn) != CONNECTION_OK)
		die(query_conn, "could not connect");

	{
		char	   *ident = PQescapeIdentifier(listen_conn, channel, strlen(channel));

		snprintf(sql, sizeof(sql), "LISTEN %s", ident);
		PQfreemem(ident);
		PQclear(query(listen_conn, sql));
	}
	/* The table name is trusted input from run.sh ("schema.table"). */
	snprintf(sql, sizeof(sql), "SELECT coalesce(max(id), 0) FROM %s", table);
	res = query(query_conn, sql);
	start_mark = strdup(PQgetvalue(res, 0, 0));
	start_id = strtoll(start_mark, NULL, 10);
	PQclear(res);

	printf("ready\n");
	fflush(stdout);

	while (!stop_requested)
		pump(listen_conn, 100);

	/*
	 * The run is over: every audit row it wrote is committed. The rows'
	 * xmin is their writer's xid (the log is append-only), or the xid of
	 * the subtransaction that wrote them, which has its commit timestamp too.
	 */
	res = query(query_conn, "SELECT current_setting('track_commit_timestamp')::bool");
	have_commit_ts = PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	snprintf(sql, sizeof(sql),
			 "SELECT event_id::text, event_type LIKE '%%Failed', %s FROM %s WHERE id > %s",
			 have_commit_ts ?
			 "(extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000)::int8" : "NULL::int8",
			 table, start_mark);
	res = query(query_conn, sql);
	n_expected = (size_t) PQntuples(res);
	expected = malloc((n_expected + 1) * sizeof(Expected));
	for (i = 0; i < n_expected; i++)
	{
		if (!parse_uuid(PQgetvalue(res, (int) i, 0), &expected[i].id))
			die(NULL, "bad event_id in the audit log");
		if (PQgetvalue(res, (int) i, 1)[0] == 't')
			n_failed++;
		expected[i].committed = PQgetisnull(res, (int) i, 2) ? -1 :
			strtoll(PQgetvalue(res, (int) i, 2), NULL, 10);
	}
	PQclear(res);

	/* Drain what is still in flight (a worker NOTIFYs after the commit). */
	last_arrival = now_us();
	if (!expect_none)
		for (;;)
		{
			size_t		got = pump(listen_conn, 50);
			int64_t		now = now_us();

			if (got > 0)
				last_arrival = now;
			else if (n_received >= n_expected && now - last_arrival >= 200000)
				break;
			if (now - last_arrival >= (int64_t) drain_ms * 1000)
				break;
		}
	else
		pump(listen_conn, 0);

	/* Match received against expected, both sorted by event_id. */
	qsort(received, n_received, sizeof(Received), cmp_received);
	qsort(expected, n_expected, sizeof(Expected), cmp_expected);
	commit_latencies = malloc((n_expected + 1) * sizeof(double));
	i = j = 0;
	while (i < n_expected || j < n_received)
	{
		int			c;

		if (i == n_expected)
			c = 1;
		else if (j == n_received)
			c = -1;
		else
			c = cmp_id(&expected[i].id, &received[j].id);

		if (c < 0)
		{
			missed++;
			i++;
		}
		else if (c > 0)
		{
			unexpected++;		/* names no audit row of this run */
			j++;
		}
		else
		{
			size_t		k = j + 1;
			int64_t		first = received[j].at;

			while (k < n_received && cmp_id(&received[k].id, &expected[i].id) == 0)
			{
				if (received[k].at < first)
					first = received[k].at;
				k++;
			}
			if (expected[i].committed >= 0)
				commit_latencies[n_commit_latencies++] =
					(double) (first - expected[i].committed) / 1000.0;
			duplicated += k - j - 1;
			i++;
			j = k;
		}
	}
	if (expect_none)
		missed = 0;

	qsort(latencies, n_latencies, sizeof(double), cmp_double);
	qsort(commit_latencies, n_commit_latencies, sizeof(double), cmp_double);
	printf("expected=%zu received=%zu missed=%zu duplicated=%zu unexpected=%zu failed=%zu "
		   "earlier=%zu unparsed=%zu p50_ms=%.2f p99_ms=%.2f max_ms=%.2f",
		   n_expected, n_received, missed, duplicated, unexpected, n_failed, n_earlier, n_unparsed,
		   percentile(latencies, n_latencies, 0.50), percentile(latencies, n_latencies, 0.99),
		   n_latencies ? latencies[n_latencies - 1] : 0.0);
	if (n_commit_latencies > 0)
		printf(" commit_p50_ms=%.2f commit_p99_ms=%.2f commit_max_ms=%.2f\n",
			   percentile(commit_latencies, n_commit_latencies, 0.50),
			   percentile(commit_latencies, n_commit_latencies, 0.99),
			   commit_latencies[n_commit_latencies - 1]);
	else
		printf(" commit_p50_ms=- commit_p99_ms=- commit_max_ms=-\n");
	fflush(stdout);

	PQfinish(listen_conn);
	PQfinish(query_conn);
	free(expected);
	free(received);
	free(latencies);
	free(commit_latencies);
	free(start_mark);
	return 0;
}
