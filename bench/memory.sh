#!/usr/bin/env bash
# bench/memory.sh: issue 6's memory target, on a throwaway cluster.
#
#   "a backend flat over 1,000,000 calls; the worker flat over a 10-minute run."
#
# backend: one psql session makes MEMORY_CALLS calls (default 1,000,000) as
#   t/005_memory.pl does: a procedure loops over provider_connect,
#   provider_refresh_tokens, provider_credentials and provider_disconnect
#   (4 calls per iteration), committing after each; the session CALLs it ten
#   times, a tenth of the calls each, and between CALLs samples itself: the
#   bytes held in its memory contexts (sum of pg_backend_memory_contexts
#   total_bytes) and its private resident memory (RssAnon of
#   /proc/self/status, which unlike VmRSS does not grow as shared buffers are
#   touched). Flat: the last sample exceeds the one after the first tenth
#   (warm-up) by at most MEMORY_CONTEXT_TOLERANCE_KB and MEMORY_RSS_TOLERANCE_KB.
# worker: provider_connections.notify = worker, bench/listener.c LISTENing
#   (and draining) on provider_events, and pgbench -c 1 running run.sh's mix
#   (80% refresh, 15% connect, 5% disconnect + reconnect over
#   MEMORY_WORKER_SEED seeded connections) for MEMORY_WORKER_SECONDS (default
#   600). Every tenth of the run the worker of the database (backend_type
#   'provider_connections worker' in pg_stat_activity) is sampled: RssAnon
#   from /proc/<pid>/status, and its memory contexts through
#   pg_log_backend_memory_contexts(pid), whose "Grand total" line the
#   script reads back from the server log (three readings 0.2 s apart, the
#   smallest kept: one taken during a round also counts memory the round
#   frees when it ends). Flat: the same tolerances, last
#   sample against the one at 10%; the same worker throughout; and the
#   listener received every event exactly once.
#
# The cluster is start_cluster's (fsync = off) with synchronous_commit = off.
#
# Settings (environment):
#   MEMORY_CALLS                 calls in the backend phase (default 1000000; a multiple of 40 is exact)
#   MEMORY_WORKER_SECONDS        length of the worker phase (default 600)
#   MEMORY_WORKER_SEED           connections seeded for the worker phase's mix (default 10000)
#   MEMORY_PHASES                (default "backend worker")
#   MEMORY_CONTEXT_TOLERANCE_KB  (default 1024)
#   MEMORY_RSS_TOLERANCE_KB      (default 2048)
#   BENCH_NO_BUILD=1             use the installed build instead of building this tree
#   PGPORT                       the throwaway cluster's port (default: random, 49152-65151)
# Exits non-zero if memory grows beyond a tolerance or a phase fails.
# Logs: bench/results/memory/.
#
# Copyright (c) 2026, provider_connections developers.
# Released under the PostgreSQL License (see LICENSE).
set -euo pipefail
BENCH=$(cd "$(dirname "$0")" && pwd)
. "$BENCH/../scripts/common.sh"

CALLS=${MEMORY_CALLS:-1000000}
WSECS=${MEMORY_WORKER_SECONDS:-600}
WSEED=${MEMORY_WORKER_SEED:-10000}
PHASES=${MEMORY_PHASES:-"backend worker"}
CTX_TOL=${MEMORY_CONTEXT_TOLERANCE_KB:-1024}
RSS_TOL=${MEMORY_RSS_TOLERANCE_KB:-2048}
export PGPORT=${PGPORT:-$((49152 + RANDOM % 16000))}
STEP=$((CALLS / 40))	# loop iterations (4 calls each) per tenth
[ "$STEP" -ge 1 ] || { log "MEMORY_CALLS must be at least 40"; exit 2; }
[ "$WSECS" -ge 10 ] || { log "MEMORY_WORKER_SECONDS must be at least 10"; exit 2; }

OUT=$BENCH/results/memory
rm -rf "$OUT"
mkdir -p "$OUT"

install_deps
if [[ " $PHASES " == *" worker "* ]] && [ ! -f "$("$PG_BIN/pg_config" --includedir)/libpq-fe.h" ]; then
	log "installing: libpq-dev"
	as_root apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libpq-dev >/dev/null
fi
if [ "${BENCH_NO_BUILD:-0}" = 1 ]; then
	log "BENCH_NO_BUILD=1: using the installed provider_connections"
else
	# Into a private copy of PostgreSQL (common.sh), unless PG_BIN names one.
	private_pg
	build_install
fi
start_cluster
LISTENER_PID= PGBENCH_PID=
cleanup() {
	if [ -n "$PGBENCH_PID" ]; then kill "$PGBENCH_PID" 2>/dev/null || true; fi
	if [ -n "$LISTENER_PID" ]; then kill "$LISTENER_PID" 2>/dev/null || true; fi
	stop_cluster
	private_pg_cleanup
}
trap cleanup EXIT

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
set_conf synchronous_commit off
export PGDATABASE=memory
fresh_db memory
[ "$(q -c "SELECT count(*) FROM pg_extension WHERE extname = 'provider_connections'")" = 1 ] || {
	psql -X -c "CREATE EXTENSION provider_connections CASCADE"
	exit 1
}

# verdict LABEL WARM_KB LAST_KB TOLERANCE_KB: prints ok/GROWS and counts misses.
MISSED=0
verdict() {
	local growth=$(($3 - $2))
	if [ "$growth" -le "$4" ]; then
		echo "| $1 | $2 | $3 | $growth | <= $4 | ok |"
	else
		echo "| $1 | $2 | $3 | $growth | <= $4 | GROWS |"
		MISSED=$((MISSED + 1))
	fi
}
REPORT=$OUT/report.md
: >"$REPORT"

### The backend: one session, MEMORY_CALLS calls.
if [[ " $PHASES " == *" backend "* ]]; then
	log "backend: one session, $((STEP * 40)) calls ($((STEP * 10)) x connect, refresh, credentials, disconnect)"
	q >/dev/null <<-'SQL'
		CREATE PROCEDURE memory_loop(n int) LANGUAGE plpgsql AS $$
		DECLARE
		    u uuid := 'eeeeeeee-0000-0000-0000-000000000001';
		    c uuid;
		BEGIN
		    FOR i IN 1..n LOOP
		        c := (provider_connect(u, 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x0102030405')).connection_id;
		        COMMIT;
		        PERFORM provider_refresh_tokens(c, '\x060708');
		        COMMIT;
		        PERFORM provider_credentials(c);
		        COMMIT;
		        PERFORM provider_disconnect(u, c);
		        COMMIT;
		    END LOOP;
		END $$;
	SQL
	sample_sql() {
		echo "SELECT $1, (SELECT sum(total_bytes) FROM pg_backend_memory_contexts),
		             substring(pg_read_file('/proc/self/status') FROM 'RssAnon:\\s+(\\d+)')::bigint;"
	}
	{
		sample_sql 0
		for k in $(seq 10); do
			echo "CALL memory_loop($STEP);"
			sample_sql $((k * STEP * 4))
		done
	} >"$OUT/backend.sql"
	TB=$SECONDS
	: >"$OUT/backend.samples"
	printf '  %10s %14s %12s %8s\n' calls context_bytes rss_anon_kB seconds >&2
	ok=1
	if ! psql -qAtX -v ON_ERROR_STOP=1 -F ' ' -f "$OUT/backend.sql" 2>"$OUT/backend.err" |
		while read -r calls ctx rss; do
			echo "$calls $ctx $rss $((SECONDS - TB))" >>"$OUT/backend.samples"
			printf '  %10s %14s %12s %8s\n' "$calls" "$ctx" "$rss" "$((SECONDS - TB))" >&2
		done; then
		ok=0
	fi
	[ "$ok" = 1 ] && [ "$(wc -l <"$OUT/backend.samples")" = 11 ] || {
		cat "$OUT/backend.err"
		log "the backend phase failed"
		exit 1
	}
	T_BACKEND=$((SECONDS - TB))
	read -r _ warm_ctx warm_rss _ < <(sed -n 2p "$OUT/backend.samples")
	read -r _ last_ctx last_rss _ < <(sed -n 11p "$OUT/backend.samples")
	audit=$(q -c "SELECT count(*) FROM provider_audit_log")
	{
		echo "Backend: one session, $((STEP * 40)) calls in ${T_BACKEND}s ($((STEP * 10)) each of connect, refresh,"
		echo "credentials, disconnect, each committed; $audit audit rows written); samples between CALLs:"
		echo
		echo "| calls | memory contexts, bytes | RssAnon, kB |"
		echo "|---:|---:|---:|"
		awk '{ printf "| %s | %s | %s |\n", $1, $2, $3 }' "$OUT/backend.samples"
		echo
		echo "| measure (kB) | at 10% | at 100% | growth | tolerance | verdict |"
		echo "|---|---:|---:|---:|---:|---|"
		verdict "backend memory contexts" $((warm_ctx / 1024)) $((last_ctx / 1024)) "$CTX_TOL"
		verdict "backend RssAnon" "$warm_rss" "$last_rss" "$RSS_TOL"
		echo
	} >>"$REPORT"
fi

### The worker: notify = worker, a listener, MEMORY_WORKER_SECONDS of calls.
if [[ " $PHASES " == *" worker "* ]]; then
	LISTENER=$OUT/listener
	gcc -O2 -Wall -I"$("$PG_BIN/pg_config" --includedir)" -o "$LISTENER" "$BENCH/listener.c" \
		-L"$("$PG_BIN/pg_config" --libdir)" -lpq
	set_conf provider_connections.notify worker
	log "worker: seeding $WSEED connections"
	q >/dev/null <<-'SQL'
		CREATE TABLE ext_ids (n int PRIMARY KEY, user_id uuid NOT NULL, id uuid);
		CREATE PROCEDURE memory_seed(first int, last int) LANGUAGE plpgsql AS $$
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
	q -c "CALL memory_seed(1, $WSEED)" >/dev/null
	q -c "VACUUM ANALYZE" >/dev/null

	worker_pid() {
		q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'provider_connections worker' AND datname = 'memory'"
	}
	# sample_worker LABEL: one line "label pid context_bytes rss_kb position queue_usage"
	sample_worker() {
		local pid rss logsize ctx="" i head usage
		pid=$(worker_pid)
		[ -n "$pid" ] || { echo "$1 - - - - -"; return; }
		rss=$(awk '/^RssAnon:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo -)
		# Three readings 0.2 s apart, the smallest kept: a reading taken
		# during a round also counts that round's memory, freed after it.
		local r one
		for r in 1 2 3; do
			logsize=$(stat -c %s "$CLUSTER_DIR/server.log")
			q -c "SELECT pg_log_backend_memory_contexts($pid)" >/dev/null
			one=""
			for i in $(seq 50); do
				one=$(tail -c +$((logsize + 1)) "$CLUSTER_DIR/server.log" |
					sed -n "s/.*\[$pid\].*Grand total: \([0-9]*\) bytes.*/\1/p" | tail -n 1)
				[ -n "$one" ] && break
				sleep 0.1
			done
			[ -n "$one" ] && { [ -z "$ctx" ] || [ "$one" -lt "$ctx" ]; } && ctx=$one
			[ "$r" = 3 ] || sleep 0.2
		done
		read -r head usage < <(q -F ' ' -c "SELECT coalesce(max(global_position), 0), round(pg_notification_queue_usage()::numeric, 6)
		                                      FROM provider_event_positions")
		echo "$1 $pid ${ctx:--} $rss $head $usage"
	}

	"$LISTENER" provider_events public.provider_audit_log >"$OUT/worker.listener" 2>&1 &
	LISTENER_PID=$!
	for i in $(seq 100); do
		grep -q '^ready' "$OUT/worker.listener" && break
		kill -0 "$LISTENER_PID" 2>/dev/null || break
		sleep 0.05
	done
	grep -q '^ready' "$OUT/worker.listener" || { cat "$OUT/worker.listener"; exit 1; }

	log "worker: pgbench -c 1 -T $WSECS, mix refresh@80 connect@15 reconnect@5, notify = worker, listener connected"
	: >"$OUT/worker.samples"
	printf '  %8s %8s %14s %12s %12s %12s\n' seconds pid context_bytes rss_anon_kB feed_head queue_usage >&2
	s=$(sample_worker 0)
	echo "$s" >>"$OUT/worker.samples"
	printf '  %8s %8s %14s %12s %12s %12s\n' $s >&2
	START=$(date +%s.%N)
	"$PG_BIN/pgbench" -n -M prepared -c 1 -T "$WSECS" -D nseed="$WSEED" \
		-f "$BENCH/ext_refresh.sql@80" -f "$BENCH/ext_connect.sql@15" -f "$BENCH/ext_reconnect.sql@5" \
		>"$OUT/worker.pgbench" 2>&1 &
	PGBENCH_PID=$!
	for k in $(seq 10); do
		# Sample at k tenths of the run (the last one just before it ends).
		at=$(awk -v s="$START" -v k="$k" -v w="$WSECS" 'BEGIN { t = s + (k == 10 ? w - 2 : k * w / 10); printf "%.2f", t }')
		wait_s=$(awk -v t="$at" -v now="$(date +%s.%N)" 'BEGIN { d = t - now; printf "%.2f", (d > 0 ? d : 0) }')
		sleep "$wait_s"
		s=$(sample_worker $((k == 10 ? WSECS - 2 : k * WSECS / 10)))
		echo "$s" >>"$OUT/worker.samples"
		printf '  %8s %8s %14s %12s %12s %12s\n' $s >&2
	done
	rc=0
	wait "$PGBENCH_PID" || rc=$?
	PGBENCH_PID=
	kill -TERM "$LISTENER_PID"
	wait "$LISTENER_PID" || true
	LISTENER_PID=
	tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$OUT/worker.pgbench")
	listener=$(grep '^expected=' "$OUT/worker.listener" || echo "no listener report")
	[ "$rc" = 0 ] && [ -n "$tps" ] || { cat "$OUT/worker.pgbench"; log "pgbench failed"; exit 1; }

	read -r _ warm_pid warm_ctx warm_rss _ < <(sed -n 2p "$OUT/worker.samples")
	read -r _ last_pid last_ctx last_rss _ < <(sed -n 11p "$OUT/worker.samples")
	pids=$(awk '{ print $2 }' "$OUT/worker.samples" | sort -u | tr '\n' ' ')
	{
		echo "Worker: notify = worker, a listener draining provider_events, pgbench -c 1 -T $WSECS of the mix"
		echo "(refresh@80 connect@15 reconnect@5, $WSEED seeded connections): $tps tps;"
		echo "listener: $listener."
		echo
		echo "| seconds | worker pid | memory contexts, bytes | RssAnon, kB | feed head | notification queue usage |"
		echo "|---:|---:|---:|---:|---:|---:|"
		awk '{ printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6 }' "$OUT/worker.samples"
		echo
		echo "| measure (kB) | at 10% | at 100% | growth | tolerance | verdict |"
		echo "|---|---:|---:|---:|---:|---|"
		if [ "$warm_ctx" = - ] || [ "$last_ctx" = - ]; then
			echo "| worker memory contexts | $warm_ctx | $last_ctx | | | NOT SAMPLED |"
			MISSED=$((MISSED + 1))
		else
			verdict "worker memory contexts" $((warm_ctx / 1024)) $((last_ctx / 1024)) "$CTX_TOL"
		fi
		if [ "$warm_rss" = - ] || [ "$last_rss" = - ]; then
			echo "| worker RssAnon | $warm_rss | $last_rss | | | NOT SAMPLED |"
			MISSED=$((MISSED + 1))
		else
			verdict "worker RssAnon" "$warm_rss" "$last_rss" "$RSS_TOL"
		fi
		if [ "$(wc -w <<<"$pids")" != 1 ]; then
			echo "| the same worker throughout | | | | | NO: pids $pids|"
			MISSED=$((MISSED + 1))
		fi
		local_kv=" $listener "
		if [[ $local_kv == *" missed=0 "* && $local_kv == *" duplicated=0 "* && $local_kv == *" unexpected=0 "* ]]; then
			echo "| every event delivered once | | | | | ok |"
		else
			echo "| every event delivered once | | | | | NO |"
			MISSED=$((MISSED + 1))
		fi
		echo
	} >>"$REPORT"
fi

echo >&2
cat "$REPORT"
if [ "$MISSED" -gt 0 ]; then
	log "$MISSED memory check(s) failed; logs in $OUT"
	exit 1
fi
log "memory flat; logs in $OUT"
