#!/usr/bin/env bash
# bench/run.sh: the benchmark of issue 6, in one command, on a throwaway
# cluster. Targets (bench/README.md says what each is):
#   ext             the extension, provider_connections.notify = commit
#   ext-worker      the extension, provider_connections.notify = worker
#                   (skipped, with a note, while the setting does not exist)
#   plref           the PL/pgSQL reference, bench/plpgsql_reference.sql
#   floor           the raw-SQL floor, bench/floor_connect.sql
#   floor-nonotify  the floor without its NOTIFYs: connect, and the fair mix
#                   floor (bench/floor_refresh.sql, floor_reconnect.sql)
# Workloads: connect, refresh, reconnect (disconnect + reconnect), and mix
# (80% refresh, 15% connect, 5% disconnect + reconnect); the floor has
# connect only, the floor without NOTIFY connect and mix (its refresh and
# reconnect run alone only if BENCH_PLAN names them). For each synchronous_commit setting, client count and
# workload the targets run one after the other (round-robin, so drift on
# this shared machine hits them alike), each for BENCH_SECONDS with
# pgbench -n -M prepared, with bench/listener.c connected and counting the
# events. The results go into bench/README.md between the results markers,
# with the command that reproduces them.
#
# Settings (environment):
#   BENCH_SECONDS   per run (default 10)
#   BENCH_SEED      connections seeded per target (default 100000)
#   BENCH_CLIENTS   client counts (default "1 8 16")
#   BENCH_SYNC      synchronous_commit values (default "off on")
#   BENCH_WORKLOADS (default "connect refresh reconnect mix")
#   BENCH_ROUNDS    round-robin rounds per group, median reported (default 1)
#   BENCH_PLAN      the groups to run instead of that matrix, space-separated
#                   SYNC:CLIENTS:WORKLOAD:TARGET,TARGET,... (bench/all.sh)
#   BENCH_CATCHUP_RESULT  bench/catchup.sh's result.txt, for the targets table
#   BENCH_SCALE_RESULT    bench/scale.sh's targets.tsv, likewise
#   BENCH_REPRO     the command shown as the one that reproduces the results
#   BENCH_NO_BUILD=1  use the installed build instead of building this tree
#   BENCH_PG_BIN    another PostgreSQL installation's bin directory (default
#                   common.sh's PG_BIN, /usr/lib/postgresql/15/bin)
#   PGPORT          the throwaway cluster's port (default: random, 49152-65151)
#   BENCH_SMOKE=1   a short check for CI: seed 1000, 1 s runs, 1 and 2
#                   clients, synchronous_commit off; prints the tables but
#                   leaves README.md alone; exits non-zero if a pgbench run
#                   fails, or the listener reports a missed, duplicated or
#                   unexpected event, or calls fail instead of succeeding.
# Any run stops before benchmarking if a handler fails its preflight call or
# the PL/pgSQL reference no longer matches the extension (check_reference.sql).
# A full run exits non-zero if a pgbench run fails; event mismatches are
# reported in the table (and as warnings) but do not stop it.
set -euo pipefail
BENCH=$(cd "$(dirname "$0")" && pwd)
. "$BENCH/../scripts/common.sh"
PG_BIN=${BENCH_PG_BIN:-$PG_BIN}
[ -z "${BENCH_PG_BIN:-}" ] || PC_PG_BIN_GIVEN=1

# The command that reproduces this run, from the settings given to it.
REPRO=""
for v in BENCH_SMOKE BENCH_SECONDS BENCH_SEED BENCH_CLIENTS BENCH_SYNC BENCH_WORKLOADS BENCH_ROUNDS \
	BENCH_PLAN BENCH_NO_BUILD BENCH_PG_BIN; do
	[ -n "${!v+x}" ] && REPRO+="$v=${!v@Q} "
done
REPRO+="bash bench/run.sh"
# bench/all.sh runs this script as one part of a larger run: its command.
REPRO=${BENCH_REPRO:-$REPRO}

SMOKE=${BENCH_SMOKE:-0}
if [ "$SMOKE" = 1 ]; then
	SECS=${BENCH_SECONDS:-1} SEED=${BENCH_SEED:-1000}
	CLIENTS=${BENCH_CLIENTS:-"1 2"} SYNC_MODES=${BENCH_SYNC:-off}
else
	SECS=${BENCH_SECONDS:-10} SEED=${BENCH_SEED:-100000}
	CLIENTS=${BENCH_CLIENTS:-"1 8 16"} SYNC_MODES=${BENCH_SYNC:-"off on"}
fi
WORKLOADS=${BENCH_WORKLOADS:-"connect refresh reconnect mix"}
ROUNDS=${BENCH_ROUNDS:-1}
export PGPORT=${PGPORT:-$((49152 + RANDOM % 16000))}
NPROC=$(nproc)
LOAD_AT_START=$(cut -d' ' -f1 /proc/loadavg)	# other work on a shared machine

# Logs of every run; bench/results/ is ignored by git.
OUT=$BENCH/results/last
rm -rf "$OUT"
mkdir -p "$OUT"
RESULTS=$OUT/results.tsv
printf 'round\tworkload\tclients\tsync\ttarget\ttps\texpected\treceived\tmissed\tduplicated\tunexpected\tfailed\tp50_ms\tp99_ms\tpgbench_rc\tcheckpoints\tcommit_p50_ms\tcommit_p99_ms\tworker_cpu_pct\twal_syncs_per_s\twal_sync_ms\tworker_rounds\twal_bytes_per_tx\n' >"$RESULTS"

### Build: the extension (common.sh) and the listener (libpq).
install_deps
if [ ! -f "$("$PG_BIN/pg_config" --includedir)/libpq-fe.h" ]; then
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
LISTENER=$OUT/listener
gcc -O2 -Wall -I"$("$PG_BIN/pg_config" --includedir)" -o "$LISTENER" "$BENCH/listener.c" \
	-L"$("$PG_BIN/pg_config" --libdir)" -lpq

### The cluster. start_cluster configures the extension's key; we do not.
start_cluster
LISTENER_PID=
cleanup() {
	if [ -n "$LISTENER_PID" ]; then kill "$LISTENER_PID" 2>/dev/null || true; fi
	stop_cluster
	private_pg_cleanup
}
trap cleanup EXIT

q() { psql -qAtX -v ON_ERROR_STOP=1 "$@"; }

# set_conf NAME VALUE: ALTER SYSTEM, reload, and wait until new sessions see it.
set_conf() {
	q -d postgres -c "ALTER SYSTEM SET $1 = '$2'" >/dev/null || return 1
	q -d postgres -c "SELECT pg_reload_conf()" >/dev/null
	local i
	for i in $(seq 50); do
		[ "$(q -d postgres -c "SHOW $1")" = "$2" ] && return 0
		sleep 0.1
	done
	log "$1 did not become $2"
	return 1
}

if [ "$SMOKE" != 1 ]; then
	# start_cluster turns fsync off; durable commits (synchronous_commit =
	# on) mean nothing without it. Room for the data, and no checkpoint
	# after the one that follows the seeding: right after a checkpoint
	# every first write to a page logs the whole page, and in short runs
	# those full-page writes, not the calls, would set the pace. A run
	# that a checkpoint overlaps anyway is flagged in the report. Commit
	# timestamps let the listener time delivery from each event's commit
	# (bench/listener.c); every target pays for them alike. WAL I/O timing:
	# how long the WAL flushes every durable commit waits for take.
	log "configuring the cluster for benchmarking (fsync on, shared_buffers 512MB, track_commit_timestamp)"
	q -d postgres >/dev/null <<-'SQL'
		ALTER SYSTEM SET fsync = on;
		ALTER SYSTEM SET track_commit_timestamp = on;
		ALTER SYSTEM SET track_wal_io_timing = on;
		ALTER SYSTEM SET shared_buffers = '512MB';
		ALTER SYSTEM SET max_wal_size = '16GB';
		ALTER SYSTEM SET checkpoint_timeout = '1d';
	SQL
	as_pg "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/server.log" -w restart >/dev/null
fi

export PGDATABASE=bench
fresh_db bench
[ "$(q -c "SELECT count(*) FROM pg_extension WHERE extname = 'provider_connections'")" = 1 ] || {
	psql -qX -c "CREATE EXTENSION provider_connections CASCADE"
	exit 1
}
# The reference's own key (a setting it reads), and UTC for every payload.
PLREF_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
q >/dev/null <<SQL
ALTER DATABASE bench SET timezone = 'UTC';
ALTER DATABASE bench SET plref.encryption_key = '$PLREF_KEY';
SQL
q -f "$BENCH/plpgsql_reference.sql" >/dev/null
q -f "$BENCH/floor.sql" >/dev/null

# Worker mode exists from 1.2 on; until then the setting is refused.
WORKER_NOTE=""
if err=$(q -d postgres -c "ALTER SYSTEM SET provider_connections.notify = 'commit'" 2>&1); then
	set_conf provider_connections.notify commit
	HAVE_WORKER=1
else
	HAVE_WORKER=0
	WORKER_NOTE="worker mode skipped: setting provider_connections.notify failed (${err//$'\n'/ })"
	log "$WORKER_NOTE"
fi
NOTIFY_MODE=commit

### Preflight: each handler of each implementation succeeds once.
CRED="'\\x7b226163636573735f746f6b656e223a22746f6b656e2d31227d'"
for impl in "" plref.; do
	got=$(q -v connect="${impl}provider_connect" -v refresh="${impl}provider_refresh_tokens" \
		-v disconnect="${impl}provider_disconnect" <<-SQL 2>&1 || true
		BEGIN;
		SELECT ok AS c_ok, connection_id AS cid, coalesce(error_code || ': ' || error, '') AS c_err
		  FROM :connect('11111111-1111-1111-1111-111111111111', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa',
		                'schwab', $CRED) \gset
		SELECT ok AS r_ok, coalesce(error_code || ': ' || error, '') AS r_err
		  FROM :refresh(:'cid', '\\x02') \gset
		SELECT ok AS d_ok, coalesce(error_code || ': ' || error, '') AS d_err
		  FROM :disconnect('11111111-1111-1111-1111-111111111111', :'cid') \gset
		ROLLBACK;
		\echo :c_ok :r_ok :d_ok :c_err :r_err :d_err
	SQL
	)
	if [ "${got:0:5}" != "t t t" ]; then
		log "preflight: ${impl:-extension }handlers do not succeed: $got"
		exit 1
	fi
done

# The reference must do what the extension does: same results, same audit
# rows, same state machine (bench/check_reference.sql, rolled back).
check=$(q -f "$BENCH/check_reference.sql" 2>&1) || { echo "$check"; exit 1; }
if [ "$(tail -n 1 <<<"$check")" != "reference differences: 0" ]; then
	echo "$check" >&2
	log "the PL/pgSQL reference no longer matches the extension (above)"
	exit 1
fi

### Seed BENCH_SEED connections per target, through each implementation's
### own connect (so each has its audit rows); the floor's directly.
log "seeding $SEED connections per target"
q >/dev/null <<-'SQL'
	CREATE TABLE ext_ids (n int PRIMARY KEY, user_id uuid NOT NULL, id uuid);
	CREATE TABLE plref_ids (n int PRIMARY KEY, user_id uuid NOT NULL, id uuid);
	CREATE TABLE floor_ids (n int PRIMARY KEY, user_id uuid NOT NULL, id uuid);
SQL
seed_impl() {	# seed_impl IDS_TABLE CONNECT_FUNCTION
	local first last chunk=5000
	for ((first = 1; first <= SEED; first += chunk)); do
		last=$((first + chunk - 1 < SEED ? first + chunk - 1 : SEED))
		q -v ids="$1" -v connect="$2" -v first=$first -v last=$last >/dev/null <<-SQL
			INSERT INTO :ids (n, user_id, id)
			SELECT s.n, s.u, r.connection_id
			  FROM (SELECT n, gen_random_uuid() AS u FROM generate_series(:first, :last) n) s,
			       LATERAL :connect(s.u, 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', $CRED,
			                        'oauth2', now() + interval '1 hour') r;
		SQL
	done
}
seed_impl ext_ids provider_connect >"$OUT/seed_ext.log" 2>&1 &
seed_ext=$!
seed_impl plref_ids plref.provider_connect >"$OUT/seed_plref.log" 2>&1 &
seed_plref=$!
# The floor's ciphertext: sealed once here, sent as a parameter by every
# floor call; 7 bytes stand in for the extension's header so rows match in size.
CIPHER=$(q -c "SELECT '\\x50430100000000' || encode(plref.seal($CRED, '$PLREF_KEY'), 'hex')")
q -v seed="$SEED" -v cipher="$CIPHER" >/dev/null <<-'SQL'
	INSERT INTO floor.provider_connections
	       (id, user_id, provider_id, provider_slug, status, credential_type, encrypted_credentials,
	        credentials_expires_at, connected_at, created_at, updated_at)
	SELECT plref.uuid_v7(), gen_random_uuid(), 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', 'active',
	       'oauth2', :'cipher', now() + interval '1 hour', now(), now(), now()
	  FROM generate_series(1, :seed);
	INSERT INTO floor.provider_audit_log
	       (event_id, event_type, action, user_id, connection_id, provider_id, provider_slug,
	        occurred_at, context)
	SELECT plref.uuid_v7(), e.event_type, e.action, c.user_id,
	       CASE WHEN e.k = 2 THEN c.id END, c.provider_id, c.provider_slug, clock_timestamp(), '{}'
	  FROM floor.provider_connections c,
	       (VALUES (1, 'ProviderConnectionAttempted', 'provider_connection_attempted'),
	               (2, 'ProviderConnectionSucceeded', 'provider_connected')) e(k, event_type, action)
	 ORDER BY c.id, e.k;
	INSERT INTO floor_ids (n, user_id, id)
	SELECT row_number() OVER (ORDER BY id), user_id, id FROM floor.provider_connections;
SQL
wait $seed_ext || { cat "$OUT/seed_ext.log"; exit 1; }
wait $seed_plref || { cat "$OUT/seed_plref.log"; exit 1; }
[ "$(q -c "SELECT (SELECT count(id) FROM ext_ids) + (SELECT count(id) FROM plref_ids)")" = $((2 * SEED)) ] || {
	log "seeding: some connects did not succeed"
	exit 1
}
q -c "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null

# What each target's tables carry, for the README.
index_list() {
	q -c "SELECT count(*) || ' (' || string_agg(c.relname, ', ' ORDER BY c.relname) || ')'
	        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = '$1'::regclass"
}
EXT_VERSION=$(q -c "SELECT extversion FROM pg_extension WHERE extname = 'provider_connections'")
INDEXES="- extension $EXT_VERSION: provider_connections $(index_list public.provider_connections); provider_audit_log $(index_list public.provider_audit_log)
- PL/pgSQL reference: provider_connections $(index_list plref.provider_connections); provider_audit_log $(index_list plref.provider_audit_log)
- floor: provider_connections $(index_list floor.provider_connections); provider_audit_log $(index_list floor.provider_audit_log)"

# proc_cpu_ticks PID: the process's user + system CPU time in clock ticks (0 if gone).
proc_cpu_ticks() {
	# Fields after the command name, which is in parentheses and may hold spaces.
	sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }' || echo 0
}

### One run: TARGET WORKLOAD CLIENTS SYNC ROUND
FAILURES=0
run_one() {
	local target=$1 workload=$2 clients=$3 sync=$4 round=$5
	local prefix channel table flag="" mode=commit files=()
	case $target in
	ext | ext-worker) prefix=ext channel=provider_events table=public.provider_audit_log
		[ "$target" = ext-worker ] && mode=worker ;;
	plref) prefix=plref channel=plref_events table=plref.provider_audit_log ;;
	floor) prefix=floor channel=floor_events table=floor.provider_audit_log ;;
	floor-nonotify) prefix=floor channel=floor_events table=floor.provider_audit_log flag=--expect-none ;;
	esac
	case $target:$workload in
	floor:connect) files=(-f "$BENCH/floor_connect.sql") ;;
	floor-nonotify:connect) files=(-f "$BENCH/floor_connect_nonotify.sql") ;;
	floor-nonotify:refresh | floor-nonotify:reconnect) files=(-f "$BENCH/floor_$workload.sql") ;;
	floor-nonotify:mix) files=(-f "$BENCH/floor_refresh.sql@80" -f "$BENCH/floor_connect_nonotify.sql@15"
		-f "$BENCH/floor_reconnect.sql@5") ;;
	*:connect | *:refresh | *:reconnect) files=(-f "$BENCH/${prefix}_$workload.sql") ;;
	*:mix) files=(-f "$BENCH/${prefix}_refresh.sql@80" -f "$BENCH/${prefix}_connect.sql@15"
		-f "$BENCH/${prefix}_reconnect.sql@5") ;;
	esac
	if [[ $target == ext* ]] && [ "$mode" != "$NOTIFY_MODE" ]; then
		set_conf provider_connections.notify "$mode"
		NOTIFY_MODE=$mode
	fi
	# Worker mode needs the database's worker running (a database it does not
	# serve gets no notifications: README, Events). The launcher starts it on
	# the first commit after the extension appears, after a restart delay if
	# an earlier one found no extension: wait for it, and a round, first.
	if [ "$target" = ext-worker ]; then
		for i in $(seq 150); do
			[ "$(q -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'provider_connections worker' AND datname = current_database()")" -ge 1 ] && break
			q -c "SELECT count(*) FROM provider_events_since(0, 0)" >/dev/null
			sleep 0.1
		done
	fi
	local checkpoints
	checkpoints=$(q -c "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter")

	local log=$OUT/$sync-$clients-$workload-$target-$round id0
	id0=$(q -c "SELECT coalesce(max(id), 0) FROM $table")
	"$LISTENER" $flag "$channel" "$table" >"$log.listener" 2>&1 &
	LISTENER_PID=$!
	local i
	for i in $(seq 100); do
		grep -q '^ready' "$log.listener" && break
		kill -0 "$LISTENER_PID" 2>/dev/null || break
		sleep 0.05
	done
	grep -q '^ready' "$log.listener" || { cat "$log.listener"; exit 1; }

	# The worker's CPU time during the run (utime + stime, /proc/PID/stat),
	# as a share of one core: what numbering and notifying cost the machine.
	local worker_pid="" cpu0=0 worker_cpu=-
	if [ "$target" = ext-worker ]; then
		worker_pid=$(q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'provider_connections worker' AND datname = current_database() LIMIT 1")
		cpu0=$(proc_cpu_ticks "$worker_pid")
	fi
	local rc=0 jobs=$((clients < NPROC ? clients : NPROC)) t0 wal0 lsn0 wal_sync="- -"
	wal0=$(q -c "SELECT wal_sync || ' ' || wal_sync_time FROM pg_stat_wal")
	lsn0=$(q -c "SELECT pg_current_wal_lsn()")
	t0=$(date +%s.%N)
	"$PG_BIN/pgbench" -n -M prepared -T "$SECS" -c "$clients" -j "$jobs" \
		-D nseed="$SEED" -D cipher="$CIPHER" "${files[@]}" >"$log.pgbench" 2>&1 || rc=$?
	if [ -n "$worker_pid" ]; then
		worker_cpu=$(awk -v a="$cpu0" -v b="$(proc_cpu_ticks "$worker_pid")" -v hz="$(getconf CLK_TCK)" \
			-v t0="$t0" -v t1="$(date +%s.%N)" 'BEGIN { printf "%.1f", (b - a) / hz / (t1 - t0) * 100 }')
	fi
	# WAL flushes (fsync/fdatasync of the WAL) during the run: per second,
	# and the average time of one (pg_stat_wal, with track_wal_io_timing).
	wal_sync=$(awk -v w0="$wal0" -v w1="$(q -c "SELECT wal_sync || ' ' || wal_sync_time FROM pg_stat_wal")" \
		-v t0="$t0" -v t1="$(date +%s.%N)" 'BEGIN { split(w0, a, " "); split(w1, b, " "); n = b[1] - a[1]
			printf "%.0f %s", n / (t1 - t0), (n > 0 ? sprintf("%.2f", (b[2] - a[2]) / n) : "-") }')
	# WAL bytes per pgbench transaction: the cluster's WAL over the run (the
	# worker's rounds included, but for the last one's), divided by the
	# transactions pgbench made; the floors write the same rows without the
	# feed, so the difference is what the feed and the checks cost in WAL.
	local wal_per_tx
	wal_per_tx=$(awk -v b="$(q -c "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn0')")" \
		-v n="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$log.pgbench")" \
		'BEGIN { if (n > 0) printf "%.0f", b / n; else print "-" }')
	kill -TERM "$LISTENER_PID"
	wait "$LISTENER_PID" || true
	LISTENER_PID=
	checkpoints=$(($(q -c "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter") - checkpoints))

	local tps failed_tx report
	tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$log.pgbench")
	failed_tx=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$log.pgbench")
	[ -n "$tps" ] || { tps=0; [ "$rc" != 0 ] || rc=99; }
	[ "${failed_tx:-0}" = 0 ] || [ "$rc" != 0 ] || rc=98
	report=$(grep '^expected=' "$log.listener" || true)
	# "expected=N received=N missed=N ..." -> f[expected]=N, f[received]=N, ...
	local -A f=()
	local kv
	for kv in $report; do f[${kv%%=*}]=${kv#*=}; done
	# The worker's rounds that numbered the run's events: one transaction
	# each, so the distinct xmin of their positions.
	local rounds=-
	if [ -n "$worker_pid" ]; then
		rounds=$(q -c "SELECT count(DISTINCT xmin::text) FROM provider_event_positions WHERE audit_id > $id0")
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
		"$round" "$workload" "$clients" "$sync" "$target" "$tps" \
		"${f[expected]:--}" "${f[received]:--}" "${f[missed]:--}" "${f[duplicated]:--}" \
		"${f[unexpected]:--}" "${f[failed]:--}" "${f[p50_ms]:--}" "${f[p99_ms]:--}" "$rc" "$checkpoints" \
		"${f[commit_p50_ms]:--}" "${f[commit_p99_ms]:--}" "$worker_cpu" ${wal_sync% *} ${wal_sync#* } "$rounds" "$wal_per_tx" >>"$RESULTS"
	printf '%-9s %2s clients  sync %-3s  %-14s %9.0f tps  worker: cpu %s%%, %s rounds  WAL flushes/s, ms: %s  WAL bytes per transaction: %s  %s\n' \
		"$workload" "$clients" "$sync" "$target" "$tps" "$worker_cpu" "$rounds" "$wal_sync" "$wal_per_tx" "${report:-(no listener report)}" >&2

	local problem=""
	[ "$rc" = 0 ] || problem+=" pgbench failed (rc $rc, see $log.pgbench)"
	[ -n "$report" ] || problem+=" no listener report ($log.listener)"
	[ "${f[missed]:-0}" = 0 ] && [ "${f[duplicated]:-0}" = 0 ] && [ "${f[unexpected]:-0}" = 0 ] ||
		problem+=" events: missed ${f[missed]:-?}, duplicated ${f[duplicated]:-?}, unexpected ${f[unexpected]:-?}"
	# A few refreshes may lose to a concurrent disconnect; more is a broken target.
	if [ -n "${f[expected]:-}" ] && [ $((f[failed] * 100)) -gt "${f[expected]}" ]; then
		problem+=" ${f[failed]} of ${f[expected]} events are Failed outcomes"
	fi
	if [ -n "$problem" ]; then
		log "PROBLEM: $workload, $clients clients, sync $sync, $target:$problem"
		if [ "$rc" != 0 ] || [ "$SMOKE" = 1 ]; then FAILURES=$((FAILURES + 1)); fi
	fi
}

### The matrix, targets round-robin within each group.
if [ -n "${BENCH_PLAN:-}" ]; then
	log "running: ${SECS}s per run, $ROUNDS round(s); groups $BENCH_PLAN"
else
	log "running: ${SECS}s per run; clients $CLIENTS; synchronous_commit $SYNC_MODES; workloads $WORKLOADS"
fi
START_LSN=$(q -c "SELECT pg_current_wal_lsn()")
START_CHECKPOINTS=$(q -c "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter")
# The groups to run: BENCH_PLAN, else every sync x clients x workload with
# every target that has the workload (the floor with NOTIFY has connect only).
if [ -n "${BENCH_PLAN:-}" ]; then
	PLAN=$BENCH_PLAN
else
	PLAN=""
	for sync in $SYNC_MODES; do
		for clients in $CLIENTS; do
			for workload in $WORKLOADS; do
				targets="ext,plref"
				[ "$workload" = connect ] && targets+=",floor"
				targets+=",ext-worker"
				case $workload in connect | mix) targets+=",floor-nonotify" ;; esac
				PLAN+="$sync:$clients:$workload:$targets "
			done
		done
	done
fi
CURRENT_SYNC=
for group in $PLAN; do
	IFS=: read -r sync clients workload targets <<<"$group"
	[ "$sync" = "$CURRENT_SYNC" ] || { set_conf synchronous_commit "$sync"; CURRENT_SYNC=$sync; }
	[ "$HAVE_WORKER" = 1 ] || targets=${targets//ext-worker/}
	for round in $(seq "$ROUNDS"); do
		for target in ${targets//,/ }; do
			run_one "$target" "$workload" "$clients" "$sync" "$round"
		done
	done
done

### The report.
WAL_TOTAL=$(q -c "SELECT pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), '$START_LSN'))")
CHECKPOINTS_TOTAL=$(($(q -c "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter") - START_CHECKPOINTS))
REPORT=$OUT/report.md
{
	echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') with \`$REPRO\`"
	if [ -n "${BENCH_BUILT_NOTE:-}" ]; then
		built=$BENCH_BUILT_NOTE
	elif [ "${BENCH_NO_BUILD:-0}" = 1 ]; then
		built="the extension as installed, not built from this tree"
	else
		built="built from commit $(git -C "$BENCH/.." rev-parse --short HEAD 2>/dev/null || echo '?')"
		git -C "$BENCH/.." status --porcelain -- src ':(glob)*.sql' ':(glob)*.control' 2>/dev/null | grep -q . &&
			built+=" with uncommitted changes"
	fi
	echo "(PostgreSQL $("$PG_BIN/postgres" -V | awk '{print $3}'), $NPROC cores; provider_connections $EXT_VERSION, $built;"
	echo "${SECS} s per run, $SEED seeded connections per target, $ROUNDS round(s) per group;"
	echo "the runs wrote $WAL_TOTAL of WAL, and $CHECKPOINTS_TOTAL checkpoint(s) started during them;"
	echo "the machine's load average was $LOAD_AT_START when run.sh started, before any work of its own.)"
	echo
	[ -z "$WORKER_NOTE" ] || { echo "**Note:** $WORKER_NOTE."; echo; }
	echo "Indexes on each target's tables:"
	echo
	echo "$INDEXES"
	echo
	awk -v catchup="${BENCH_CATCHUP_RESULT:-}" -v scale="${BENCH_SCALE_RESULT:-}" -f "$BENCH/report.awk" "$RESULTS"
} >"$REPORT"
echo >&2
cat "$REPORT" >&2

if [ "$SMOKE" != 1 ]; then
	awk -v report="$REPORT" '
		/<!-- results -->/ { print; while ((getline line < report) > 0) print line; skip = 1; next }
		/<!-- \/results -->/ { skip = 0 }
		!skip { print }' "$BENCH/README.md" >"$OUT/README.md.new"
	if grep -q '<!-- /results -->' "$OUT/README.md.new"; then
		cp "$OUT/README.md.new" "$BENCH/README.md"
		log "results written to bench/README.md"
	else
		log "bench/README.md has no results markers: results left in $REPORT"
	fi
fi

if [ "$FAILURES" -gt 0 ]; then
	log "$FAILURES run(s) failed; logs in $OUT"
	exit 1
fi
log "done; logs in $OUT"
