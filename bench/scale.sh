#!/usr/bin/env bash
# bench/scale.sh: issue 6's scale target, on a throwaway cluster.
#
#   "at 1,000,000 connections and 10,000,000 audit rows, each function's
#    latency within 1.2x of its latency at 10,000 rows; position assignment
#    per event flat; provider_events_since at the head of the log under 1 ms."
#
# Two databases in one cluster: scale_small holds SCALE_SMALL connections
# (10,000) made by provider_connect, one transaction each, with their audit
# rows; scale_large starts the same way and is then grown to
# SCALE_CONNECTIONS connections and SCALE_AUDIT_ROWS audit rows by direct
# INSERT ... SELECT (see "Growing" below). Each function is then measured
# in both, one database right after the other (so drift on this shared
# machine hits both alike), SCALE_ROUNDS times, with pgbench -n -M prepared
# -c 1 -T SCALE_SECONDS. Each small run uses a fresh copy of scale_small
# (CREATE DATABASE ... TEMPLATE; one failed refresh wakes its worker), so
# every small figure is taken at the seeded size (the runs write about as
# many rows as the seed holds); the large one grows by the runs' rows:
#
#   provider_credentials      a random existing connection (bench/scale_credentials.sql)
#   provider_events_since     (head - 100, 100), head = the newest position (bench/scale_events_since.sql)
#   provider_refresh_tokens   a random existing active connection (bench/ext_refresh.sql)
#   disconnect + reconnect    a random existing user (bench/ext_reconnect.sql)
#   provider_connect          a new user (bench/ext_connect.sql)
#
# Random connections are picked through ext_ids (n int primary key -> the
# user and the connection live for them), as bench/run.sh does. The report
# gives the sizes each run started at.
#
# Position assignment per event: the worker is kept away from the
# databases (provider_connections.worker_databases names a database that
# does not exist), SCALE_ASSIGN_CALLS connects run in separate transactions
# (pgbench -t), and one call of provider_events_since(0, 0) then numbers
# every event they committed, in one round: the same round the worker runs
# (feed.c). Its time divided by the events it numbered, at both scales
# (a fresh small copy each time), SCALE_ASSIGN_ROUNDS times each. The
# verdict compares the fastest round at each scale (interference from the
# rest of the machine only ever adds time to a round); medians are shown too.
# worker_databases is reset after. auto_explain then logs the plans of a
# round and of a read (bench/results/scale/plans-*.log).
#
# Purge (issue 18), last, in scale_large with its worker running:
# provider_purge_events(now(), p) with p = the oldest position +
# SCALE_PURGE_EVENTS - 1, so that it removes the SCALE_PURGE_EVENTS oldest
# events (1,000,000) with their positions, timed (rows per second) and its
# WAL measured from pg_current_wal_lsn() before and after (bytes per purged
# event; full_page_writes is off, see Cluster, so no page images: right
# after a checkpoint a purge also logs each page it touches once more).
# The sizes on disk (pg_total_relation_size, indexes and TOAST included) of
# provider_audit_log and provider_event_positions are reported before the
# purge, after it, and after a plain VACUUM of both (which makes the space
# reusable but returns only empty pages at a table's end to the system: a
# purge removes the start of the log).
#
# Growing scale_large (no function is called, nothing is dropped):
#   - ext_ids gets the new users (gen_random_uuid(), numbered in user id
#     order) and time-ordered connection ids older than any real one;
#   - provider_connections gets those rows, 'active', each holding a copy of
#     one value sealed by provider_connect (the guard trigger fires and only
#     checks that an active row has credentials);
#   - provider_audit_log gets the remaining audit rows, spread evenly over
#     the new connections (a connect's Attempted/Succeeded, then refresh
#     pairs), id from its sequence, event_id unique and time-ordered, the
#     context of a real row; no trigger fires on INSERT into the audit log
#     or the positions. Their xid (SCALE_BULK_XID):
#       native (default): old transaction ids, increasing with the audit id,
#         all below the feed's last_xmax when the load starts, so that no
#         numbering round ever looks at them (its index scan starts at
#         last_xmax) while the column's statistics look like a log written
#         by 1.2 (no NULLs, many distinct values, correlated with id): the
#         numbering round and the feed read are planned once, generically,
#         from those statistics;
#       null: NULL, as rows written before 1.2 (after an upgrade), which
#         the planner sees as a column of NULLs;
#   - provider_event_positions gets a position for each, from
#     provider_event_position_seq in audit id order, in the same statement:
#     the feed has nothing left to number, as after an upgrade;
#   one INSERT per SCALE_CHUNK audit rows, then VACUUM ANALYZE and CHECKPOINT
#   (and the same VACUUM ANALYZE and CHECKPOINT in scale_small).
#
# Cluster: start_cluster's configuration (fsync = off) plus, by ALTER
# SYSTEM, synchronous_commit = off for everything, shared_buffers = SCALE_SHARED_BUFFERS
# (a quarter of the machine's memory, PostgreSQL's documented starting point
# for a dedicated server), max_wal_size = 16GB and checkpoint_timeout = 1d (no
# timed or WAL-triggered checkpoint during the runs; the DROP DATABASE of
# each small copy forces one, before the large run that follows),
# full_page_writes = off (after a checkpoint the first write to each page
# logs the whole page: touching random rows of a large table would pay for
# that, a cost of the checkpoint cycle, not of the table's size). notify
# stays 'commit'; a worker serves the large database and each small copy
# during the latency runs.
#
# Settings (environment):
#   SCALE_CONNECTIONS   connections in the large database (default 1000000)
#   SCALE_AUDIT_ROWS    audit rows in the large database (default 10000000)
#   SCALE_SMALL         connections made by provider_connect in each database (default 10000)
#   SCALE_SECONDS       per pgbench run (default 10)
#   SCALE_ROUNDS        rounds of the latency runs, median reported (default 3)
#   SCALE_FUNCTIONS     (default "credentials events_since refresh reconnect connect")
#   SCALE_SHARED_BUFFERS (default a quarter of MemTotal; with 512MB, as
#                       bench/run.sh, the large database's connections and
#                       indexes do not fit: see bench/README.md, "Scale")
#   SCALE_PREWARM       1 (default) or 0: pg_prewarm the large database's
#                       connections, its lookup table and every index of the
#                       extension's tables after growing it, so that both
#                       databases are measured warm, as far as they fit
#   SCALE_ASSIGN_CALLS  connects per assignment round, 2 events each (default 10000)
#   SCALE_ASSIGN_ROUNDS assignment rounds per database (default 5)
#   SCALE_CHUNK         audit rows per INSERT while growing (default 1000000)
#   SCALE_BULK_XID      native or null: the xid of the added audit rows (default native)
#   SCALE_MAX_RATIO     the target's ratio (default 1.2)
#   SCALE_PURGE_EVENTS  events purged in the large database (default 1000000;
#                       0 skips the purge; less than SCALE_AUDIT_ROWS)
#   BENCH_NO_BUILD=1    use the installed build instead of building this tree;
#                       BENCH_PG_BIN another PostgreSQL's bin
#   PGPORT              the throwaway cluster's port (default: random, 49152-65151)
# Exits non-zero if a target is missed or a run fails. Logs: bench/results/scale/.
#
# Copyright (c) 2026, provider_connections developers.
# Released under the PostgreSQL License (see LICENSE).
set -euo pipefail
BENCH=$(cd "$(dirname "$0")" && pwd)
. "$BENCH/../scripts/common.sh"
# bench/all.sh passes the private PostgreSQL it built into: without this,
# BENCH_NO_BUILD=1 ran whatever build the system's PostgreSQL last had.
PG_BIN=${BENCH_PG_BIN:-$PG_BIN}
[ -z "${BENCH_PG_BIN:-}" ] || PC_PG_BIN_GIVEN=1

CONNS=${SCALE_CONNECTIONS:-1000000}
AUDIT=${SCALE_AUDIT_ROWS:-10000000}
SMALL=${SCALE_SMALL:-10000}
SECS=${SCALE_SECONDS:-10}
ROUNDS=${SCALE_ROUNDS:-3}
FUNCTIONS=${SCALE_FUNCTIONS:-"credentials events_since refresh reconnect connect"}
# A quarter of the memory: MemTotal, or a cgroup's limit if lower (a container).
mem_kb=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
cg=$(cat /sys/fs/cgroup/memory.max 2>/dev/null || echo max)
case $cg in '' | max | *[!0-9]*) ;; *) [ $((cg / 1024)) -ge "$mem_kb" ] || mem_kb=$((cg / 1024)) ;; esac
SHARED_BUFFERS=${SCALE_SHARED_BUFFERS:-$((mem_kb / 4096))MB}
PREWARM=${SCALE_PREWARM:-1}
ASSIGN_CALLS=${SCALE_ASSIGN_CALLS:-10000}
ASSIGN_ROUNDS=${SCALE_ASSIGN_ROUNDS:-5}
CHUNK=${SCALE_CHUNK:-1000000}
BULK_XID=${SCALE_BULK_XID:-native}
case $BULK_XID in native | null) ;; *) log "SCALE_BULK_XID must be native or null"; exit 2 ;; esac
MAX_RATIO=${SCALE_MAX_RATIO:-1.2}
PURGE=${SCALE_PURGE_EVENTS:-1000000}
export PGPORT=${PGPORT:-$((49152 + RANDOM % 16000))}
if [ "$CONNS" -le "$SMALL" ] || [ "$AUDIT" -lt $((2 * SMALL)) ]; then
	log "SCALE_CONNECTIONS must exceed SCALE_SMALL ($SMALL), SCALE_AUDIT_ROWS be at least $((2 * SMALL))"
	exit 2
fi
if [ "$PURGE" -lt 0 ] || [ "$PURGE" -ge "$AUDIT" ]; then
	log "SCALE_PURGE_EVENTS must be at least 0 and less than SCALE_AUDIT_ROWS ($AUDIT)"
	exit 2
fi

OUT=$BENCH/results/scale
rm -rf "$OUT"
mkdir -p "$OUT"
RESULTS=$OUT/latency.tsv
printf 'round\tfunction\tdb\tconnections\taudit_rows\tlatency_ms\ttps\tpgbench_rc\tfailed_events\tevents\treads_per_call\n' >"$RESULTS"
ASSIGN=$OUT/assign.tsv
printf 'round\tdb\taudit_rows\tevents\tms\tus_per_event\n' >"$ASSIGN"
T0=$SECONDS

install_deps
if [ "${BENCH_NO_BUILD:-0}" = 1 ]; then
	log "BENCH_NO_BUILD=1: using the installed provider_connections"
else
	# Into a private copy of PostgreSQL (common.sh), unless PG_BIN names one.
	private_pg
	build_install
fi
start_cluster

q() { psql -qAtX -v ON_ERROR_STOP=1 "$@"; }

set_conf() {	# set_conf NAME VALUE: ALTER SYSTEM, reload, wait until new sessions see it
	q -d postgres -c "ALTER SYSTEM SET $1 = '$2'" >/dev/null
	q -d postgres -c "SELECT pg_reload_conf()" >/dev/null
	local i
	for i in $(seq 50); do
		[ "$(q -d postgres -c "SHOW $1")" = "$2" ] && return 0
		sleep 0.1
	done
	log "$1 did not become $2"
	return 1
}

log "configuring: synchronous_commit off, shared_buffers $SHARED_BUFFERS, full_page_writes off, no checkpoints"
q -d postgres -v sb="$SHARED_BUFFERS" >/dev/null <<-'SQL'
	ALTER SYSTEM SET synchronous_commit = off;
	ALTER SYSTEM SET shared_buffers = :'sb';
	ALTER SYSTEM SET max_wal_size = '16GB';
	ALTER SYSTEM SET checkpoint_timeout = '1d';
	ALTER SYSTEM SET full_page_writes = off;
SQL
as_pg "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/server.log" -w restart >/dev/null

for db in scale_small scale_large; do
	fresh_db $db
	[ "$(q -d $db -c "SELECT count(*) FROM pg_extension WHERE extname = 'provider_connections'")" = 1 ] || {
		psql -X -d $db -c "CREATE EXTENSION provider_connections CASCADE"
		exit 1
	}
	q -d $db -c "CREATE TABLE ext_ids (n int PRIMARY KEY, user_id uuid NOT NULL, id uuid)"
done

# What fires on INSERT into the tables the load writes (only the guard, on connections).
INSERT_TRIGGERS=$(q -d scale_large -c "
	SELECT coalesce(string_agg(tgrelid::regclass || ': ' || tgname, ', ' ORDER BY tgrelid::regclass::text, tgname), 'none')
	  FROM pg_trigger
	 WHERE tgrelid IN ('provider_connections'::regclass, 'provider_audit_log'::regclass,
	                   'provider_event_positions'::regclass)
	   AND NOT tgisinternal AND tgtype & 4 <> 0")	# TRIGGER_TYPE_INSERT

### Seed: SCALE_SMALL connections per database through provider_connect, one
### transaction each (as real traffic: one transaction id per call's two audit
### rows, which is what the planner sees in the statistics of the xid column).
log "seeding $SMALL connections through provider_connect in each database"
for db in scale_small scale_large; do
	q -d $db >/dev/null <<-'SQL'
		CREATE PROCEDURE scale_seed(first int, last int) LANGUAGE plpgsql AS $$
		DECLARE
		    u uuid;
		BEGIN
		    FOR i IN first..last LOOP
		        u := gen_random_uuid();
		        INSERT INTO ext_ids (n, user_id, id)
		        SELECT i, u, r.connection_id
		          FROM provider_connect(u, 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab',
		                                '\x7b226163636573735f746f6b656e223a22746f6b656e2d31227d',
		                                'oauth2', now() + interval '1 hour') r;
		        COMMIT;
		    END LOOP;
		END $$;
	SQL
done
q -d scale_small -c "CALL scale_seed(1, $SMALL)" >"$OUT/seed_small.log" 2>&1 &
p1=$!
q -d scale_large -c "CALL scale_seed(1, $SMALL)" >"$OUT/seed_large.log" 2>&1 &
p2=$!
wait $p1 || { cat "$OUT/seed_small.log"; exit 1; }
wait $p2 || { cat "$OUT/seed_large.log"; exit 1; }
for db in scale_small scale_large; do
	[ "$(q -d $db -c "SELECT count(id) FROM ext_ids")" = "$SMALL" ] || { log "seeding $db: some connects failed"; exit 1; }
done
T_SEED=$((SECONDS - T0))

### Grow scale_large (see the header).
log "growing scale_large to $CONNS connections and $AUDIT audit rows"
TL=$SECONDS
C0=$(q -d scale_large -c "SELECT count(*) FROM provider_connections")
A0=$(q -d scale_large -c "SELECT count(*) FROM provider_audit_log")
CB=$((CONNS - C0)) AB=$((AUDIT - A0))
PER=$((AB / CB)) REM=$((AB % CB))
# native xids: 3 (the first normal xid) up to the feed's last_xmax, below
# which no round ever looks again.
q -d scale_large -c "SELECT count(*) FROM provider_events_since(0, 0)" >/dev/null	# a round has run
XMAX=$(q -d scale_large -c "SELECT last_xmax::text::bigint FROM provider_feed_state")
q -d scale_large -v c0="$C0" -v cb="$CB" >/dev/null <<-'SQL'
	SET work_mem = '512MB';
	INSERT INTO ext_ids (n, user_id, id)
	SELECT :c0 + s.k, s.u, ('0101' || lpad(to_hex(:c0 + s.k), 12, '0') || '70008000' || '00000000')::uuid
	  FROM (SELECT u, row_number() OVER (ORDER BY u) AS k
	          FROM (SELECT gen_random_uuid() AS u FROM generate_series(1, :cb)) r) s;
SQL
CONN_CHUNK=$CHUNK
for ((lo = C0; lo < CONNS; lo += CONN_CHUNK)); do
	hi=$((lo + CONN_CHUNK < CONNS ? lo + CONN_CHUNK : CONNS))
	q -d scale_large -v lo=$lo -v hi=$hi >/dev/null <<-'SQL'
		INSERT INTO provider_connections
		       (id, user_id, provider_id, provider_slug, status, credential_type, encrypted_credentials,
		        credentials_expires_at, connected_at, created_at, updated_at)
		SELECT b.id, b.user_id, 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', 'active', 'oauth2', s.sealed,
		       now() + (b.n % 86400) * interval '1 second', now(), now(), now()
		  FROM ext_ids b,
		       (SELECT encrypted_credentials AS sealed FROM provider_connections
		         WHERE status = 'active' AND encrypted_credentials IS NOT NULL LIMIT 1) s
		 WHERE b.n > :lo AND b.n <= :hi
		 ORDER BY b.n;
	SQL
done
T_CONNS=$((SECONDS - TL))
log "  $CB connections in ${T_CONNS}s"
TA=$SECONDS
# Audit rows: PER per new connection, one more for the first REM of them;
# chunks of about SCALE_CHUNK rows.
conns_per_chunk=$((CHUNK / (PER > 0 ? PER : 1)))
[ "$conns_per_chunk" -ge 1 ] || conns_per_chunk=1
for ((lo = C0; lo < CONNS; lo += conns_per_chunk)); do
	hi=$((lo + conns_per_chunk < CONNS ? lo + conns_per_chunk : CONNS))
	q -d scale_large -v lo=$lo -v hi=$hi -v c0="$C0" -v cb="$CB" -v per="$PER" -v rem="$REM" \
		-v xmax="$XMAX" -v bulk_xid="$BULK_XID" >/dev/null <<-'SQL'
		SET work_mem = '512MB';
		WITH ctx AS (SELECT context FROM provider_audit_log ORDER BY id LIMIT 1),
		ins AS (
		    INSERT INTO provider_audit_log
		           (event_id, event_type, action, user_id, connection_id, provider_id, provider_slug,
		            occurred_at, context, xid)
		    SELECT ('0102' || lpad(to_hex(b.n), 12, '0') || '70008' || lpad(to_hex(k), 11, '0'))::uuid,
		           (ARRAY['ProviderConnectionAttempted', 'ProviderConnectionSucceeded',
		                  'ProviderTokenRefreshAttempted', 'ProviderTokenRefreshSucceeded'])[t.t],
		           (ARRAY['provider_connection_attempted', 'provider_connected',
		                  'provider_token_refresh_attempted', 'provider_token_refreshed'])[t.t],
		           b.user_id, b.id, 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', now(), ctx.context,
		           CASE WHEN :'bulk_xid' = 'native'
		                THEN (3 + (b.n - :c0 - 1)::bigint * (:xmax - 3) / :cb)::text::xid8 END
		      FROM ext_ids b
		           CROSS JOIN LATERAL generate_series(1, :per + CASE WHEN b.n - :c0 <= :rem THEN 1 ELSE 0 END) k
		           CROSS JOIN LATERAL (SELECT CASE WHEN k <= 2 THEN k ELSE 3 + (k + 1) % 2 END AS t) t
		           CROSS JOIN ctx
		     WHERE b.n > :lo AND b.n <= :hi
		     ORDER BY b.n, k
		    RETURNING id, user_id)
		INSERT INTO provider_event_positions (global_position, audit_id, user_id)
		SELECT nextval('provider_event_position_seq'), id, user_id FROM ins ORDER BY id;
	SQL
	log "  audit rows for connections up to $hi: $((SECONDS - TA))s"
done
T_AUDIT=$((SECONDS - TA))
TV=$SECONDS
for db in scale_small scale_large; do q -d $db -c "VACUUM ANALYZE" >/dev/null; done
q -d postgres -c "CHECKPOINT" >/dev/null
T_VACUUM=$((SECONDS - TV))
# The small database is warm from its seeding and each copy of it small;
# the large one was just written through a buffer ring. Warm what calls
# touch at random: without it, the first runs in the large database read
# the rows they pick from outside shared_buffers and compare a cold cache
# with a warm one. The audit log's heap is left out: calls only append to
# it, and read what they have just written.
PREWARMED=none
if [ "$PREWARM" = 1 ]; then
	PREWARMED=$(q -d scale_large <<-'SQL'
		CREATE EXTENSION IF NOT EXISTS pg_prewarm;
		SELECT pg_size_pretty(8192 * sum(pg_prewarm(c.oid)))
		  FROM pg_class c
		 WHERE c.oid IN ('provider_connections'::regclass, 'ext_ids'::regclass)
		    OR c.oid IN (SELECT indexrelid FROM pg_index
		                  WHERE indrelid IN ('provider_connections'::regclass, 'provider_audit_log'::regclass,
		                                     'provider_event_positions'::regclass, 'ext_ids'::regclass));
	SQL
	)
	log "  prewarmed $PREWARMED of scale_large (shared_buffers $SHARED_BUFFERS)"
fi
T_LOAD=$((SECONDS - TL))
log "  grown in ${T_LOAD}s (connections ${T_CONNS}s, audit rows and positions ${T_AUDIT}s, VACUUM ANALYZE + CHECKPOINT ${T_VACUUM}s)"
got=$(q -d scale_large -c "SELECT (SELECT count(*) FROM provider_connections) || ' ' || (SELECT count(*) FROM provider_audit_log)
                             || ' ' || (SELECT count(*) FROM provider_event_positions)")
[ "$got" = "$CONNS $AUDIT $AUDIT" ] || { log "after growing: connections, audit rows, positions = $got"; exit 1; }

size_of() {	# size_of DB: "connections audit_rows total_size_of_the_extension's_tables"
	q -d "$1" -c "SELECT (SELECT count(*) FROM provider_connections) || ' ' || (SELECT count(*) FROM provider_audit_log)
	                     || ' ' || pg_size_pretty(pg_total_relation_size('provider_connections')
	                                              + pg_total_relation_size('provider_audit_log')
	                                              + pg_total_relation_size('provider_event_positions'))"
}
SIZE_SMALL=$(size_of scale_small) SIZE_LARGE=$(size_of scale_large)
workers_for() { q -d postgres -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'provider_connections worker' AND datname LIKE '$1'"; }

# Every measurement in the small database starts from a fresh copy of it
# (CREATE DATABASE ... TEMPLATE, dropped after the run), so each sees it at
# its seeded size: the runs write about as many rows as the seed holds.
# As a template, scale_small itself gets no worker.
q -d postgres -c "ALTER DATABASE scale_small IS_TEMPLATE true" >/dev/null
small_copy() {	# small_copy NAME [wake]: a fresh copy; with wake, once its worker serves it
	q -d postgres -c "CREATE DATABASE $1 TEMPLATE scale_small" >/dev/null
	[ "${2:-}" = wake ] || return 0
	# A commit that writes events (two audit rows, no connection) marks
	# the database wanted: the launcher starts its worker.
	q -d "$1" -c "SELECT provider_refresh_tokens('00000000-0000-0000-0000-000000000000', '\\x01')" >/dev/null
	local i
	for i in $(seq 100); do
		[ "$(workers_for "$1")" = 1 ] && return 0
		sleep 0.1
	done
	log "warning: no worker serves $1 after 10 s"
}
drop_copy() { q -d postgres -c "DROP DATABASE $1" >/dev/null; }

### Latency: each function in both databases, one right after the other.
FAILURES=0
blocks_read() {	# blocks_read DB: blocks read into shared_buffers for DB so far
	q -d postgres -c "SELECT blks_read FROM pg_stat_database WHERE datname = '$1'"
}
bench_one() {	# bench_one ROUND FUNCTION LABEL [DB]: LABEL scale_small or scale_large, DB where to run
	local round=$1 fn=$2 label=$3 db=${4:-$3} script nseed head before conns audit rc=0 log
	case $fn in
	credentials) script=$BENCH/scale_credentials.sql ;;
	events_since) script=$BENCH/scale_events_since.sql ;;
	refresh) script=$BENCH/ext_refresh.sql ;;
	reconnect) script=$BENCH/ext_reconnect.sql ;;
	connect) script=$BENCH/ext_connect.sql ;;
	*) log "unknown function $fn"; exit 2 ;;
	esac
	read -r nseed head before conns audit < <(q -d "$db" -c "
		SELECT (SELECT count(*) FROM ext_ids), (SELECT coalesce(max(global_position), 0) FROM provider_event_positions),
		       (SELECT coalesce(max(id), 0) FROM provider_audit_log),
		       (SELECT count(*) FROM provider_connections), (SELECT count(*) FROM provider_audit_log)" -F ' ')
	log=$OUT/$round-$fn-$label.pgbench
	# Where a call's time goes when it grows: blocks the run read from
	# outside shared_buffers (the database's backends, its worker and
	# autovacuum together), per pgbench transaction. A backend's counts reach
	# the statistics when it exits, as pgbench's connection does; the
	# worker's at most a second or two later, so a little of them may fall
	# into the next run of the same database. (Buffers backends write out
	# themselves are not shown: PostgreSQL 15 publishes that count only when
	# its checkpointer next wakes, which these runs keep from happening.)
	local reads0
	reads0=$(blocks_read "$db")
	"$PG_BIN/pgbench" -n -M prepared -c 1 -T "$SECS" -D nseed="$nseed" -D head="$head" -f "$script" "$db" \
		>"$log" 2>&1 || rc=$?
	local lat tps failed_tx events failed_events
	lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$log")
	tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$log")
	failed_tx=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$log")
	[ -n "$lat" ] || { lat=0; [ "$rc" != 0 ] || rc=99; }
	[ "${failed_tx:-0}" = 0 ] || [ "$rc" != 0 ] || rc=98
	local reads1 xacts reads_per
	sleep 1	# most of the worker's counts of the run (it reports them at most once a second)
	reads1=$(blocks_read "$db")
	xacts=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$log")
	reads_per=$(awk -v r0="$reads0" -v r1="$reads1" -v n="${xacts:-0}" \
		'BEGIN { if (n > 0) printf "%.2f\n", (r1 - r0) / n; else print "-" }')
	read -r events failed_events < <(q -d "$db" -F ' ' -c "
		SELECT count(*), count(*) FILTER (WHERE event_type LIKE '%Failed') FROM provider_audit_log WHERE id > $before")
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$fn" "$label" "$conns" "$audit" "$lat" "$tps" \
		"$rc" "$failed_events" "$events" "$reads_per" >>"$RESULTS"
	printf '  %-13s %-12s %9s conns %10s audit rows  %7s ms  %8.0f tps  %6s blocks read per call  worker %s\n' \
		"$fn" "$label" "$conns" "$audit" "$lat" "$tps" "$reads_per" "$(workers_for "$db")" >&2
	if [ "$rc" != 0 ]; then
		log "PROBLEM: pgbench failed (rc $rc), see $log"
		FAILURES=$((FAILURES + 1))
	elif [ $((failed_events * 100)) -gt "$events" ]; then
		log "PROBLEM: $failed_events of $events events of the run are Failed outcomes"
		FAILURES=$((FAILURES + 1))
	fi
}
log "latency: pgbench -c 1 -T $SECS per function and database"
TM=$SECONDS
checkpoints() { q -d postgres -c "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"; }
CHECKPOINTS=$(checkpoints)
for round in $(seq "$ROUNDS"); do
	for fn in $FUNCTIONS; do
		small_copy "scale_small_$round" wake
		bench_one "$round" "$fn" scale_small "scale_small_$round"
		drop_copy "scale_small_$round"
		bench_one "$round" "$fn" scale_large
	done
done
T_LATENCY=$((SECONDS - TM))
CHECKPOINTS=$(($(checkpoints) - CHECKPOINTS))

### Position assignment per event, without the worker.
log "position assignment: $ASSIGN_CALLS connects, then one round, $ASSIGN_ROUNDS times per database"
TP=$SECONDS
set_conf provider_connections.worker_databases scale_no_such_database
for i in $(seq 150); do
	[ "$(workers_for 'scale%')" = 0 ] && break
	sleep 0.2
done
[ "$(workers_for 'scale%')" = 0 ] || { log "the workers did not stop"; exit 1; }
# Autovacuum would otherwise be catching up with the latency runs' rows
# during some of the rounds.
q -d scale_large -c "VACUUM ANALYZE" >/dev/null
assign_one() {	# assign_one ROUND LABEL [DB]
	local out label=$2 db=${3:-$2}
	set -- "$1" "$db"
	out=$(psql -qAtX -v ON_ERROR_STOP=1 -d "$2" 2>&1 <<-SQL
		SELECT count(*) FROM provider_events_since(0, 0);
		SELECT coalesce(max(global_position), 0) AS p0 FROM provider_event_positions \gset
		\! "$PG_BIN/pgbench" -n -M prepared -c 1 -t $ASSIGN_CALLS -f "$BENCH/ext_connect.sql" "$2" >"$OUT/assign-$1-$label.pgbench" 2>&1
		\timing on
		SELECT count(*) FROM provider_events_since(0, 0);
		\timing off
		SELECT 'numbered ' || (max(global_position) - :p0) FROM provider_event_positions;
		SELECT 'audit ' || count(*) FROM provider_audit_log;
	SQL
	) || { echo "$out"; exit 1; }
	# The plans this backend used (a round, empty now, and the read), from
	# auto_explain, for the record: $OUT/plans-DB.log.
	local logsize
	logsize=$(stat -c %s "$CLUSTER_DIR/server.log")
	q -d "$2" >/dev/null <<-'SQL'
		LOAD 'auto_explain';
		SET auto_explain.log_min_duration = 0;
		SET auto_explain.log_nested_statements = on;
		SELECT count(*) FROM provider_events_since((SELECT max(global_position) FROM provider_event_positions) - 100, 100);
	SQL
	sleep 0.2
	tail -c +$((logsize + 1)) "$CLUSTER_DIR/server.log" >"$OUT/plans-$label.log"
	local ms numbered audit us
	ms=$(sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' <<<"$out")
	numbered=$(sed -n 's/^numbered //p' <<<"$out")
	audit=$(sed -n 's/^audit //p' <<<"$out")
	if [ -z "$ms" ] || [ "$numbered" != $((2 * ASSIGN_CALLS)) ]; then
		echo "$out" >&2
		log "PROBLEM: the round in $label numbered ${numbered:-?} events, expected $((2 * ASSIGN_CALLS))"
		FAILURES=$((FAILURES + 1))
		return
	fi
	us=$(awk -v ms="$ms" -v n="$numbered" 'BEGIN { printf "%.2f", ms * 1000 / n }')
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$label" "$audit" "$numbered" "$ms" "$us" >>"$ASSIGN"
	printf '  %-12s %10s audit rows: %s events numbered in %s ms, %s us/event\n' "$label" "$audit" "$numbered" "$ms" "$us" >&2
}
for round in $(seq "$ASSIGN_ROUNDS"); do
	small_copy "scale_small_a$round"
	assign_one "$round" scale_small "scale_small_a$round"
	drop_copy "scale_small_a$round"
	assign_one "$round" scale_large
done
q -d postgres -c "ALTER SYSTEM RESET provider_connections.worker_databases" -c "SELECT pg_reload_conf()" >/dev/null
T_ASSIGN=$((SECONDS - TP))

### Purge: the SCALE_PURGE_EVENTS oldest events of scale_large (see the header).
TU=$SECONDS
# log_sizes: "audit_log_bytes positions_bytes" in scale_large.
log_sizes() {
	q -d scale_large -F ' ' -c "SELECT pg_total_relation_size('provider_audit_log'), pg_total_relation_size('provider_event_positions')"
}
PURGE_LINE=""
if [ "$PURGE" -gt 0 ]; then
	log "purge: the $PURGE oldest events of scale_large"
	q -d scale_large -c "CHECKPOINT" >/dev/null
	read -r PA0 PP0 < <(log_sizes)
	read -r PURGE_ROWS0 < <(q -d scale_large -c "SELECT count(*) FROM provider_audit_log")
	out=$(psql -qAtX -v ON_ERROR_STOP=1 -d scale_large -v n="$PURGE" 2>&1 <<-'SQL'
		SELECT min(global_position) + :n - 1 AS up_to FROM provider_event_positions \gset
		SELECT pg_current_wal_lsn() AS lsn0 \gset
		\timing on
		SELECT provider_purge_events(now(), :up_to) AS purged \gset
		\timing off
		SELECT 'purged ' || :purged;
		SELECT 'wal ' || pg_wal_lsn_diff(pg_current_wal_lsn(), :'lsn0');
	SQL
	) || { echo "$out"; exit 1; }
	PURGE_MS=$(sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' <<<"$out")
	PURGED=$(sed -n 's/^purged //p' <<<"$out")
	PURGE_WAL=$(sed -n 's/^wal //p' <<<"$out")
	read -r PA1 PP1 < <(log_sizes)
	TVU=$SECONDS
	q -d scale_large -c "VACUUM provider_audit_log, provider_event_positions" >/dev/null
	T_PURGE_VACUUM=$((SECONDS - TVU))
	read -r PA2 PP2 < <(log_sizes)
	if [ -z "$PURGE_MS" ] || [ "$PURGED" != "$PURGE" ]; then
		echo "$out" >&2
		log "PROBLEM: the purge removed ${PURGED:-?} events, expected $PURGE"
		FAILURES=$((FAILURES + 1))
	fi
	PURGE_LINE=$(awk -v ms="${PURGE_MS:-0}" -v n="${PURGED:-0}" -v wal="${PURGE_WAL:-0}" 'BEGIN {
		printf "%d events purged in %.1f s: %.0f rows/s, %.0f bytes of WAL per purged event (%.1f MB in all)",
			n, ms / 1000, (ms > 0 ? n * 1000 / ms : 0), (n > 0 ? wal / n : 0), wal / 1048576 }')
	printf '  %s\n' "$PURGE_LINE" >&2
fi
T_PURGE=$((SECONDS - TU))

### The report.
REPORT=$OUT/report.md
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() {	# col FILE FILTER_COLUMN=VALUE... VALUE_COLUMN: the values of one column where the others match
	local file=$1 valcol=${!#}
	awk -F '\t' -v spec="${*:2:$#-2}" -v vc="$valcol" '
		NR == 1 { for (i = 1; i <= NF; i++) idx[$i] = i; n = split(spec, s, " "); next }
		{ ok = 1; for (j = 1; j <= n; j++) { split(s[j], kv, "="); if ($(idx[kv[1]]) != kv[2]) ok = 0 } if (ok) print $(idx[vc]) }' "$file"
}
MISSED=0
# The targets alone, for bench/all.sh's table (bench/report.awk): what,
# required, measured, ok or MISSED.
TARGETS=$OUT/targets.tsv
: >"$TARGETS"
target() { printf '%s\t%s\t%s\t%s\n' "$@" >>"$TARGETS"; }
{
	echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC'): PostgreSQL $("$PG_BIN/postgres" -V | awk '{print $3}'), $(nproc) cores;"
	echo "provider_connections $(q -d scale_large -c "SELECT extversion FROM pg_extension WHERE extname = 'provider_connections'"),"
	if [ -n "${BENCH_BUILT_NOTE:-}" ]; then echo "$BENCH_BUILT_NOTE;"	# bench/all.sh built it
	elif [ "${BENCH_NO_BUILD:-0}" = 1 ]; then echo "the installed build;"; else echo "built from commit $(git -C "$BENCH/.." rev-parse --short HEAD 2>/dev/null || echo '?');"; fi
	echo "synchronous_commit = off, fsync = off, full_page_writes = off, notify = commit, shared_buffers = $SHARED_BUFFERS;"
	echo "prewarmed in the large database before the runs (SCALE_PREWARM): $PREWARMED;"
	echo "pgbench -n -M prepared -c 1 -T $SECS, $ROUNDS round(s), median;"
	echo "the large database's added audit rows have $BULK_XID xids (SCALE_BULK_XID)."
	echo
	read -r sc sa ss <<<"$SIZE_SMALL"
	read -r lc la ls <<<"$SIZE_LARGE"
	echo "| database | connections | audit rows | tables + indexes |"
	echo "|---|---:|---:|---:|"
	echo "| small, before the runs | $sc | $sa | $ss |"
	echo "| large, before the runs | $lc | $la | $ls |"
	echo
	echo "| function | small ms | large ms | large / small | target | verdict | blocks read from outside shared_buffers per call, small / large |"
	echo "|---|---:|---:|---:|---|---|---:|"
	for fn in $FUNCTIONS; do
		s=$(col "$RESULTS" function="$fn" db=scale_small latency_ms | median)
		l=$(col "$RESULTS" function="$fn" db=scale_large latency_ms | median)
		reads="$(col "$RESULTS" function="$fn" db=scale_small reads_per_call | median) / $(col "$RESULTS" function="$fn" db=scale_large reads_per_call | median)"
		r=$(awk -v s="$s" -v l="$l" 'BEGIN { if (s > 0) printf "%.2f", l / s; else print "-" }')
		case $fn in
		credentials) name='`provider_credentials`' ;;
		events_since) name='`provider_events_since(head - 100, 100)`' ;;
		refresh) name='`provider_refresh_tokens`' ;;
		reconnect) name='`provider_disconnect` + `provider_connect`' ;;
		connect) name='`provider_connect` (new user)' ;;
		esac
		v=ok
		awk -v r="$r" -v m="$MAX_RATIO" 'BEGIN { exit !(r != "-" && r <= m) }' || v=MISSED
		echo "| $name | $s | $l | $r | <= $MAX_RATIO | $v | $reads |"
		target "$name, large / small" "<= $MAX_RATIO" "$r ($s / $l ms)" "$v"
		[ "$v" = ok ] || MISSED=$((MISSED + 1))
		if [ "$fn" = events_since ]; then
			v=ok
			awk -v l="$l" 'BEGIN { exit !(l > 0 && l < 1) }' || v=MISSED
			echo "| \`provider_events_since\` at the head, large | | $l | | < 1 ms | $v | |"
			target "\`provider_events_since\` at the head, large, ms" "< 1" "$l" "$v"
			[ "$v" = ok ] || MISSED=$((MISSED + 1))
		fi
	done
	sm=$(col "$ASSIGN" db=scale_small us_per_event | median)
	lm=$(col "$ASSIGN" db=scale_large us_per_event | median)
	s=$(col "$ASSIGN" db=scale_small us_per_event | sort -g | head -n 1)
	l=$(col "$ASSIGN" db=scale_large us_per_event | sort -g | head -n 1)
	r=$(awk -v s="$s" -v l="$l" 'BEGIN { if (s > 0) printf "%.2f", l / s; else print "-" }')
	v=ok
	awk -v r="$r" -v m="$MAX_RATIO" 'BEGIN { exit !(r != "-" && r <= m) }' || v=MISSED
	echo "| position assignment, us per event, fastest of $ASSIGN_ROUNDS rounds of $((2 * ASSIGN_CALLS)) events (median: $sm / $lm) | $s | $l | $r | <= $MAX_RATIO (flat) | $v | |"
	target "position assignment per event, large / small" "<= $MAX_RATIO" "$r ($s / $l us)" "$v"
	[ "$v" = ok ] || MISSED=$((MISSED + 1))
	[ "$FAILURES" = 0 ] || target "runs that failed (see above)" "0" "$FAILURES" MISSED
	echo
	echo "Every run (connections and audit rows when it started; tps; Failed outcomes / events written):"
	echo
	echo "| round | function | database | connections | audit rows | latency ms | tps | failed / events | blocks read per call |"
	echo "|---:|---|---|---:|---:|---:|---:|---:|---:|"
	awk -F '\t' 'NR > 1 { printf "| %s | %s | %s | %s | %s | %s | %.0f | %s / %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $9, $10, $11 }' "$RESULTS"
	echo
	echo "Assignment rounds: $(awk -F '\t' 'NR > 1 { printf "%s%s %s events in %s ms", sep, $2, $4, $5; sep = "; " }' "$ASSIGN")."
	echo
	if [ -n "$PURGE_LINE" ]; then
		mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1048576 }'; }
		echo "Purge in the large database ($PURGE_ROWS0 audit rows before it; \`provider_purge_events\`, one call; WAL from"
		echo "\`pg_current_wal_lsn()\` before and after, full_page_writes off): $PURGE_LINE."
		echo
		echo "| size on disk (\`pg_total_relation_size\`) | provider_audit_log | provider_event_positions |"
		echo "|---|---:|---:|"
		echo "| before the purge | $(mb "$PA0") | $(mb "$PP0") |"
		echo "| after the purge | $(mb "$PA1") | $(mb "$PP1") |"
		echo "| after VACUUM (${T_PURGE_VACUUM}s) | $(mb "$PA2") | $(mb "$PP2") |"
		target "purge of $PURGED events" "timed" "$PURGE_LINE" ""
		target "audit log / positions on disk: before the purge; after it; after VACUUM" "reported" \
			"$(mb "$PA0") / $(mb "$PP0"); $(mb "$PA1") / $(mb "$PP1"); $(mb "$PA2") / $(mb "$PP2")" ""
		echo
	fi
	echo "Time: seeding ${T_SEED}s, growing ${T_LOAD}s (connections ${T_CONNS}s, audit rows and positions ${T_AUDIT}s,"
	echo "VACUUM ANALYZE + CHECKPOINT ${T_VACUUM}s), latency runs ${T_LATENCY}s, assignment ${T_ASSIGN}s, purge ${T_PURGE}s, total $((SECONDS - T0))s."
	echo "Checkpoints started during the latency runs: $CHECKPOINTS (DROP DATABASE of each small copy forces one, before"
	echo "the large run that follows; with full_page_writes off it leaves nothing for the runs to pay)."
	echo "Triggers on INSERT into the tables the load writes: $INSERT_TRIGGERS."
	for db in scale_small scale_large; do
		nodes=$(grep -oE "(Parallel )?(Seq Scan|Index Scan|Index Only Scan|Bitmap Heap Scan|Bitmap Index Scan) (using [a-z_]+ )?on [a-z_]+|Gather Merge|Gather|(Hash|Merge|Nested Loop) Anti Join" \
			"$OUT/plans-$db.log" 2>/dev/null | awk '!seen[$0]++' | paste -sd ';' | sed 's/;/; /g')
		echo "Plan nodes of a round and a read in $db (auto_explain, $OUT/plans-$db.log): ${nodes:-none logged}."
	done
} >"$REPORT"
cp "$CLUSTER_DIR/server.log" "$OUT/server.log"
echo >&2
cat "$REPORT"

if [ "$FAILURES" -gt 0 ] || [ "$MISSED" -gt 0 ]; then
	log "$MISSED target(s) missed, $FAILURES run(s) failed; logs in $OUT"
	exit 1
fi
log "every scale target met; logs in $OUT"
