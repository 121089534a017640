/*
 * bench/catchup.c
 *
 * The consumer side of issue 18's target 1, driven by bench/catchup.sh.
 *
 * catchup read PAGE PASSES
 *   Reads the whole numbered feed from position 0, in pages of PAGE rows,
 *   two ways:
 *     ext  SELECT * FROM provider_events_since($1, $2)
 *     raw  the same rows and columns by a keyset read of the tables
 *          (positions by their index, each audit row by its id), as a
 *          consumer with SELECT on the tables could write it
 *   both as prepared statements, text results received whole by libpq, the
 *   next page starting after the last position received. Each page is read
 *   both ways one right after the other (which goes first alternates page
 *   by page), so load elsewhere on the machine hits both alike; each way's
 *   time is the sum of its pages'. One unmeasured pass warms the cache.
 *   Prints one line per pass:
 *     pass=N ext_s=X raw_s=Y events=N ratio=raw_s/ext_s
 *   (ratio: the extension's speed as a fraction of the raw read's).
 *
 * catchup head CALLS
 *   At the head: CALLS times, a writer session commits one provider_connect
 *   (two events), then the reader calls provider_events_since(last, 1000)
 *   and must get exactly those two events (the Succeeded one naming the
 *   new connection). Times the reader's call only; prints
 *     calls=N p50_ms=X p90_ms=X p99_ms=X max_ms=X wrong=N
 *   wrong: calls that did not return exactly the events committed before.
 *
 * Connection settings come from the PG* environment variables.
 * Build: gcc -O2 -I$(pg_config --includedir) -o catchup catchup.c -L$(pg_config --libdir) -lpq
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#define COLUMNS \
	"p.global_position, a.id, a.event_id, a.event_type, a.action," \
	" NULLIF(a.user_id, '00000000-0000-0000-0000-000000000000'), a.connection_id," \
	" a.provider_id, a.provider_slug, a.reason, a.needs_user_action, a.occurred_at, a.context"

static const char *ext_sql = "SELECT * FROM provider_events_since($1::bigint, $2::integer)";
static const char *raw_sql =
	"SELECT " COLUMNS
	"  FROM provider_event_positions p JOIN provider_audit_log a ON a.id = p.audit_id"
	" WHERE p.global_position > $1::bigint ORDER BY p.global_position LIMIT $2::integer";

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static PGconn *
connect_or_die(void)
{
	PGconn	   *c = PQconnectdb("");

	if (PQstatus(c) != CONNECTION_OK)
	{
		fprintf(stderr, "catchup: %s", PQerrorMessage(c));
		exit(1);
	}
	return c;
}

static void
prepare_or_die(PGconn *c, const char *name, const char *sql)
{
	PGresult   *r = PQprepare(c, name, sql, 0, NULL);

	if (PQresultStatus(r) != PGRES_COMMAND_OK)
	{
		fprintf(stderr, "catchup: prepare %s: %s", name, PQerrorMessage(c));
		exit(1);
	}
	PQclear(r);
}

static PGresult *
page(PGconn *c, const char *name, const char *after, const char *size)
{
	const char *params[2] = {after, size};
	PGresult   *r = PQexecPrepared(c, name, 2, params, NULL, NULL, 0);

	if (PQresultStatus(r) != PGRES_TUPLES_OK)
	{
		fprintf(stderr, "catchup: %s: %s", name, PQerrorMessage(c));
		exit(1);
	}
	return r;
}

/*
 * One pass: the whole feed from 0 to its end, page by page, each page read
 * through both statements one right after the other (which goes first
 * alternates from page to page), so that a burst of load elsewhere on the
 * machine hits both alike. Adds each statement's time to t[0] (ext) and
 * t[1] (raw); returns the events read (the same through both, checked).
 */
static long
read_pass(PGconn *c, const char *size, int page_size, double *t)
{
	char		after[32] = "0";
	long		events = 0;
	int			k = 0;

	for (;;)
	{
		PGresult   *r[2];
		int			n[2];
		int			i;

		for (i = 0; i < 2; i++)
		{
			int			which = (k % 2) ? 1 - i : i;
			double		t0 = now_s();

			r[which] = page(c, which == 0 ? "ext" : "raw", after, size);
			t[which] += now_s() - t0;
		}
		k++;
		n[0] = PQntuples(r[0]);
		n[1] = PQntuples(r[1]);
		if (n[0] != n[1] ||
			(n[0] > 0 && strcmp(PQgetvalue(r[0], n[0] - 1, 0), PQgetvalue(r[1], n[1] - 1, 0)) != 0))
		{
			fprintf(stderr, "catchup: after %s, ext read %d events, raw %d\n", after, n[0], n[1]);
			exit(1);
		}
		events += n[0];
		if (n[0] > 0)
			snprintf(after, sizeof(after), "%s", PQgetvalue(r[0], n[0] - 1, 0));
		PQclear(r[0]);
		PQclear(r[1]);
		if (n[0] < page_size)
			return events;
	}
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return (x > y) - (x < y);
}

static int
run_read(int page_size, int passes)
{
	PGconn	   *c = connect_or_die();
	char		size[16];
	double		warm[2] = {0, 0};
	int			pass;

	snprintf(size, sizeof(size), "%d", page_size);
	prepare_or_die(c, "ext", ext_sql);
	prepare_or_die(c, "raw", raw_sql);
	/* Warm the cache (and the prepared statements' plans): not measured. */
	read_pass(c, size, page_size, warm);
	for (pass = 1; pass <= passes; pass++)
	{
		double		t[2] = {0, 0};
		long		ev = read_pass(c, size, page_size, t);

		printf("pass=%d ext_s=%.3f raw_s=%.3f events=%ld ratio=%.3f\n",
			   pass, t[0], t[1], ev, t[1] / t[0]);
		fflush(stdout);
	}
	PQfinish(c);
	return 0;
}

static int
run_head(int calls)
{
	PGconn	   *w = connect_or_die();
	PGconn	   *c = connect_or_die();
	double	   *ms = malloc(sizeof(double) * calls);
	char		after[32];
	int			wrong = 0;
	int			i;
	PGresult   *r;

	prepare_or_die(c, "ext", ext_sql);
	prepare_or_die(w, "connect",
				   "SELECT connection_id FROM provider_connect(gen_random_uuid(),"
				   " 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab',"
				   " '\\x7b226163636573735f746f6b656e223a22746f6b656e2d31227d', 'oauth2',"
				   " now() + interval '1 hour') WHERE ok");
	/* The head as it is now. */
	r = PQexec(c, "SELECT coalesce(max(global_position), 0) FROM provider_events_since(0, 0)");
	PQclear(r);
	r = PQexec(c, "SELECT coalesce(max(global_position), 0) FROM provider_event_positions");
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
	{
		fprintf(stderr, "catchup: %s", PQerrorMessage(c));
		return 1;
	}
	snprintf(after, sizeof(after), "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	for (i = 0; i < calls; i++)
	{
		char		cid[64];
		double		t0;
		int			n;

		r = PQexecPrepared(w, "connect", 0, NULL, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
		{
			fprintf(stderr, "catchup: connect: %s", PQerrorMessage(w));
			return 1;
		}
		snprintf(cid, sizeof(cid), "%s", PQgetvalue(r, 0, 0));
		PQclear(r);

		t0 = now_s();
		r = page(c, "ext", after, "1000");
		ms[i] = (now_s() - t0) * 1000;
		n = PQntuples(r);
		/* column 6 is connection_id: the Succeeded event names the new connection */
		if (n != 2 || strcmp(PQgetvalue(r, 1, 6), cid) != 0)
			wrong++;
		if (n > 0)
			snprintf(after, sizeof(after), "%s", PQgetvalue(r, n - 1, 0));
		PQclear(r);
	}
	qsort(ms, calls, sizeof(double), cmp_double);
	printf("calls=%d p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f wrong=%d\n",
		   calls, ms[calls / 2], ms[(int) (calls * 0.9)], ms[(int) (calls * 0.99)],
		   ms[calls - 1], wrong);
	PQfinish(c);
	PQfinish(w);
	return wrong ? 2 : 0;
}

int
main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "read") == 0)
		return run_read(atoi(argv[2]), atoi(argv[3]));
	if (argc == 3 && strcmp(argv[1], "head") == 0)
		return run_head(atoi(argv[2]));
	fprintf(stderr, "usage: catchup read PAGE PASSES | catchup head CALLS\n");
	return 1;
}
