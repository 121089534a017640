#!/usr/bin/env bash
# bench/citus.sh: throughput of routed calls on Citus against a single node
# (issue 16, Performance), in one run on this machine.
#
#   bash bench/citus.sh                  # 3 rounds of 10 s runs, sync off and on (about 7 minutes); rewrites the results in bench/README.md
#   BENCH_SMOKE=1 bash bench/citus.sh    # a few seconds, for scripts/citus_test.sh; README.md left alone
#
# Three targets, started side by side from the same binaries (the private
# PostgreSQL 15 copy scripts/citus_build.sh builds Citus into, with this
# tree's provider_connections installed there):
#   single  one server, shared_preload_libraries = 'provider_connections'
#   citus   a coordinator and two workers ('citus,provider_connections'),
#           provider_distribute() run; pgbench connects to the coordinator,
#           where the C code runs and every statement goes to the user's
#           shard (docs/citus.md, "Where calls run")
#   citus-workers  the same cluster, half the clients on each worker (two
#           pgbench runs at once, each with its own half of the seeded
#           users): Citus 11+ routes from any node, so the C code runs on
#           the worker the client chose and the statements go to the
#           user's shard, local or on the other worker
# Workloads, pgbench -n -M prepared, BENCH_CLIENTS clients (default 8):
#   connect  bench/ext_connect.sql (a new user each time)
#   mix      80% bench/citus_refresh.sql (refresh_tokens, user-first form),
#            15% bench/ext_connect.sql, 5% bench/ext_reconnect.sql
#            (disconnect + connect), as bench/run.sh's mix but with the
#            user-first refresh on both targets
# For each round and workload the targets run one after the other, the
# order reversed every round, so drift on this shared machine hits all alike. Each
# run also reads the CPU time every node's processes used, from before
# pgbench starts to after its sessions end, giving the CPU cost per call on
# the coordinator, on the workers and on the single node: the figures the
# projection in docs/citus.md starts from.
#
# Settings (environment): BENCH_SECONDS (10; smoke 2), BENCH_ROUNDS (3;
# smoke 1), BENCH_SEED connections seeded per target for the mix (5000;
# smoke 200), BENCH_CLIENTS (8; smoke 2), BENCH_PORT (first of four ports,
# default random), BENCH_CITUS_INSTALLED=1 (scripts/citus_test.sh: Citus
# built and this tree installed by the caller, which holds the lock),
# BENCH_PG_BIN (the bin directory of a PostgreSQL with Citus and this
# extension installed: no build, no install, no lock).
# BENCH_SYNC: the synchronous_commit values, each a group of rounds
# ("off on"; smoke "off"). Every node: fsync on, shared_buffers 256MB,
# log_statement none. Exits non-zero if a pgbench run fails or reports
# failed transactions; exits 77 when the Citus archive is absent.
#
# Copyright (c) 2026, provider_connections developers.
# Released under the PostgreSQL License (see LICENSE).
set -euo pipefail
BENCH=$(cd "$(dirname "$0")" && pwd)
. "$BENCH/../scripts/common.sh"

REPRO=""
for v in BENCH_SMOKE BENCH_SECONDS BENCH_ROUNDS BENCH_SEED BENCH_CLIENTS BENCH_SYNC; do
	[ -n "${!v+x}" ] && REPRO+="$v=${!v@Q} "
done
REPRO+="bash bench/citus.sh"
SMOKE=${BENCH_SMOKE:-0}
if [ "$SMOKE" = 1 ]; then
	SECS=${BENCH_SECONDS:-2} ROUNDS=${BENCH_ROUNDS:-1} SEED=${BENCH_SEED:-200} CLIENTS=${BENCH_CLIENTS:-2}
	SYNC_MODES=${BENCH_SYNC:-off}
else
	SECS=${BENCH_SECONDS:-10} ROUNDS=${BENCH_ROUNDS:-3} SEED=${BENCH_SEED:-5000} CLIENTS=${BENCH_CLIENTS:-8}
	SYNC_MODES=${BENCH_SYNC:-"off on"}
fi
[ "$SECS" -ge 2 ] || { echo "BENCH_SECONDS must be at least 2"; exit 2; }
LOAD_AT_START=$(cut -d' ' -f1 /proc/loadavg)
T0=$(date +%s)

if [ -n "${BENCH_PG_BIN:-}" ]; then
	# A PostgreSQL with Citus and this extension already installed.
	PG_BIN=$BENCH_PG_BIN
	BENCH_CITUS_INSTALLED=1
else
	if out=$(bash "$TOP/scripts/citus_build.sh"); then rc=0; else rc=$?; fi
	[ "$rc" -eq 77 ] && exit 77
	[ "$rc" -eq 0 ] || { echo "bench/citus.sh: building Citus failed (exit $rc)"; exit 1; }
	PREFIX=${out##*CITUS_PREFIX=}
	PG_BIN=$PREFIX/usr/lib/postgresql/$PG_MAJOR/bin
fi
if [ "${BENCH_CITUS_INSTALLED:-0}" != 1 ]; then
	# The same lock as scripts/citus_test.sh: both install into the cached copy.
	exec 7>"$PREFIX.run.lock"
	if ! flock -n 7; then
		log "waiting for a run of the Citus suite or bench"
		flock 7
	fi
	install_deps
	build_install
fi

OUT=$BENCH/results/citus-last
rm -rf "$OUT"
mkdir -p "$OUT"
RESULTS=$OUT/results.tsv
printf 'sync\tround\tworkload\ttarget\ttps\tcalls\tcpu_coord_s\tcpu_workers_s\tpgbench_rc\n' >"$RESULTS"

DIR=$(mktemp -d /tmp/provider_connections.citusbench.XXXXXX)
chmod 755 "$DIR"
[ "$(id -u)" -eq 0 ] && chown postgres: "$DIR"
BASEPORT=${BENCH_PORT:-$((49152 + RANDOM % 16000))}
NODES="single coordinator worker1 worker2"
declare -A PORT
i=0
for n in $NODES; do PORT[$n]=$((BASEPORT + i)); i=$((i + 1)); done

stop_nodes() {
	local n
	for n in $NODES; do
		[ -f "$DIR/$n/postmaster.pid" ] || continue
		as_pg "$PG_BIN/pg_ctl" -D "$DIR/$n" -m fast -w stop >/dev/null 2>&1 ||
			as_pg "$PG_BIN/pg_ctl" -D "$DIR/$n" -m immediate -w stop >/dev/null 2>&1 || true
	done
	if [ -n "${KEEP_CLUSTER:-}" ]; then log "bench nodes kept in $DIR"; else rm -rf "$DIR"; fi
}
trap stop_nodes EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

log "starting a single node and a Citus coordinator with two workers in $DIR"
key=$(head -c 48 /dev/urandom | od -An -tx1 | tr -d ' \n')
for n in $NODES; do
	preload='citus,provider_connections'
	[ "$n" = single ] && preload=provider_connections
	as_pg "$PG_BIN/initdb" -D "$DIR/$n" -U postgres -A trust --no-sync >/dev/null
	write_key_file "$DIR/$n/provider_connections.key" "$key"
	as_pg tee -a "$DIR/$n/postgresql.conf" >/dev/null <<CONF
listen_addresses = ''
unix_socket_directories = '$DIR'
port = ${PORT[$n]}
shared_preload_libraries = '$preload'
provider_connections.encryption_key_file = 'provider_connections.key'
citus.local_hostname = '$DIR'
max_prepared_transactions = 40
max_connections = 80
shared_buffers = 256MB
fsync = on
max_wal_size = 4GB
checkpoint_timeout = 1h
log_line_prefix = '%m [%p] %q%a '
CONF
	[ "$n" = single ] && as_pg sed -i '/^citus\./d' "$DIR/$n/postgresql.conf"
	as_pg "$PG_BIN/pg_ctl" -D "$DIR/$n" -l "$DIR/$n.log" -w start >/dev/null
done

q() { # q NODE SQL...: psql on a node, database postgres
	local n=$1
	shift
	"$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$DIR" -p "${PORT[$n]}" -U postgres -d postgres "$@"
}
for n in coordinator worker1 worker2; do q $n -c "CREATE EXTENSION citus" >/dev/null; done
q coordinator >/dev/null <<SQL
SELECT citus_set_coordinator_host('$DIR', ${PORT[coordinator]});
SELECT citus_add_node('$DIR', ${PORT[worker1]});
SELECT citus_add_node('$DIR', ${PORT[worker2]});
SQL
for n in single coordinator; do q $n -c "CREATE EXTENSION provider_connections CASCADE" >/dev/null; done
q coordinator -c "SELECT provider_distribute()" >/dev/null
[ "$(q coordinator -c "SELECT provider_distributed()")" = t ] || { log "provider_distribute() did not distribute"; exit 1; }
SHARDS=$(q coordinator -c "SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'provider_connections'::regclass")
CITUS_VERSION=$(q coordinator -c "SELECT extversion FROM pg_extension WHERE extname = 'citus'")
EXT_VERSION=$(q single -c "SELECT extversion FROM pg_extension WHERE extname = 'provider_connections'")

# Seed: SEED users with one connection each, made by provider_connect on the
# target itself; ext_ids (a plain table on the single node and on the
# coordinator) maps 1..SEED to (user, connection) for the mix.
CRED="'\\x7b226163636573735f746f6b656e223a22746f6b656e2d31227d'"
log "seeding $SEED connections per target"
seed() {
	local n=$1 first last chunk=1000
	q "$n" -c "CREATE TABLE ext_ids (n int PRIMARY KEY, user_id uuid NOT NULL, id uuid)"
	for ((first = 1; first <= SEED; first += chunk)); do
		last=$((first + chunk - 1 < SEED ? first + chunk - 1 : SEED))
		q "$n" -c "INSERT INTO ext_ids (n, user_id, id)
			SELECT s.n, s.u, r.connection_id
			  FROM (SELECT n, gen_random_uuid() AS u FROM generate_series($first, $last) n) s,
			       LATERAL provider_connect(s.u, 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', $CRED,
			                                'oauth2', now() + interval '1 hour') r"
	done
	[ "$(q "$n" -c "SELECT count(id) FROM ext_ids")" = "$SEED" ] || { log "$n: seeding failed"; return 1; }
	q "$n" -c "VACUUM ANALYZE ext_ids" -c "CHECKPOINT"
}
seed single >"$OUT/seed_single.log" 2>&1 || { cat "$OUT/seed_single.log"; exit 1; }
seed coordinator >"$OUT/seed_citus.log" 2>&1 || { cat "$OUT/seed_citus.log"; exit 1; }
# For citus-workers, each worker gets half of the coordinator's ext_ids,
# numbered from 1, so the two pgbench runs never share a user.
HALF=$((SEED / 2))
for w in worker1 worker2; do
	if [ $w = worker1 ]; then cond="n <= $HALF" shift=0; else cond="n > $HALF" shift=$HALF; fi
	q $w -c "CREATE TABLE ext_ids (n int PRIMARY KEY, user_id uuid NOT NULL, id uuid)"
	q coordinator -c "COPY (SELECT n - $shift, user_id, id FROM ext_ids WHERE $cond) TO STDOUT" |
		q $w -c "COPY ext_ids FROM STDIN"
	q $w -c "VACUUM ANALYZE ext_ids"
done
# Both targets' connections seeded: each worker has its share.
for w in worker1 worker2; do
	n=$(q $w -c "SELECT count(*) FROM provider_connections")
	log "$w holds $n of the connections (read through its metadata)"
done

# cpu_of NODE...: CPU seconds (user + system), in /proc's 1/100 s ticks, used
# so far by each node: its postmaster, the children it has reaped (their
# time moves into its cutime and cstime when they exit) and its live
# children, summed.
cpu_of() {
	local n pm total=0 p
	for n in "$@"; do
		pm=$(head -n 1 "$DIR/$n/postmaster.pid")
		total=$((total + $(awk '{ sub(/.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$pm/stat")))
		# Its live children, from /proc (no ps on a minimal Debian): after
		# "pid (comm) ", field 2 is the parent, 12 and 13 utime and stime.
		for p in /proc/[0-9]*/stat; do
			line=$(cat "$p" 2>/dev/null) || continue
			read -ra f <<<"${line##*) }"
			[ "${f[1]}" = "$pm" ] && total=$((total + f[11] + f[12]))
		done
	done
	echo "$total"
}

FAILURES=0
run_one() { # run_one ROUND WORKLOAD TARGET
	local round=$1 workload=$2 target=$3 node files=()
	node=$target
	[ "$target" = citus ] && node=coordinator
	case $workload in
	connect) files=(-f "$BENCH/ext_connect.sql") ;;
	mix) files=(-f "$BENCH/citus_refresh.sql@80" -f "$BENCH/ext_connect.sql@15" -f "$BENCH/ext_reconnect.sql@5") ;;
	esac
	local log=$OUT/$workload-$target-$round.pgbench rc=0
	local coord_nodes=$node worker_nodes="" c0 w0=0 c1 w1=0
	[ "$target" = single ] || { coord_nodes=coordinator worker_nodes="worker1 worker2"; }
	c0=$(cpu_of $coord_nodes)
	[ -z "$worker_nodes" ] || w0=$(cpu_of $worker_nodes)
	if [ "$target" = citus-workers ]; then
		# Half the clients on each worker, each routing its own calls.
		local p1 p2 r1=0 r2=0 half=$((CLIENTS / 2 > 0 ? CLIENTS / 2 : 1))
		"$PG_BIN/pgbench" -n -M prepared -T "$SECS" -c "$half" -j 1 -P 1 -h "$DIR" -p "${PORT[worker1]}" \
			-U postgres -D nseed="$HALF" "${files[@]}" postgres >"$log.worker1" 2>&1 &
		p1=$!
		"$PG_BIN/pgbench" -n -M prepared -T "$SECS" -c "$half" -j 1 -P 1 -h "$DIR" -p "${PORT[worker2]}" \
			-U postgres -D nseed="$HALF" "${files[@]}" postgres >"$log.worker2" 2>&1 &
		p2=$!
		wait $p1 || r1=$?
		wait $p2 || r2=$?
		rc=$((r1 > r2 ? r1 : r2))
		# One report as pgbench's: tps and calls summed.
		awk '/^tps = .*without initial/ { t += $3 } /^number of transactions actually processed:/ { c += $NF }
			/^number of failed transactions:/ { f += $5 }
			END { printf "number of transactions actually processed: %d\nnumber of failed transactions: %d\ntps = %f (without initial connection time)\n", c, f, t }' \
			"$log.worker1" "$log.worker2" >"$log"
	else
		"$PG_BIN/pgbench" -n -M prepared -T "$SECS" -c "$CLIENTS" -j "$(nproc)" -P 1 \
			-h "$DIR" -p "${PORT[$node]}" -U postgres -D nseed="$SEED" "${files[@]}" postgres >"$log" 2>&1 || rc=$?
	fi
	# pgbench's sessions end with it; their backends, once reaped, count in
	# their postmaster's cutime and cstime.
	sleep 0.5
	c1=$(cpu_of $coord_nodes)
	[ -z "$worker_nodes" ] || w1=$(cpu_of $worker_nodes)
	local tps failed_tx calls
	tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$log")
	failed_tx=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$log")
	calls=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$log")
	[ -n "$tps" ] || { tps=0; [ "$rc" != 0 ] || rc=99; }
	[ "${failed_tx:-0}" = 0 ] || [ "$rc" != 0 ] || rc=98
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$SYNC" "$round" "$workload" "$target" "$tps" "${calls:-0}" \
		"$(awk -v x=$((c1 - c0)) 'BEGIN { print x / 100 }')" "$(awk -v x=$((w1 - w0)) 'BEGIN { print x / 100 }')" \
		"$rc" >>"$RESULTS"
	printf 'sync %-3s %-8s round %s  %-7s %9.0f tps\n' "$SYNC" "$workload" "$round" "$target" "$tps" >&2
	if [ "$rc" != 0 ]; then
		log "PROBLEM: $workload, $target, round $round: pgbench rc $rc (see $log)"
		FAILURES=$((FAILURES + 1))
	fi
}

log "running: $CLIENTS clients, ${SECS} s per run, $ROUNDS round(s), load average $LOAD_AT_START at start"
for SYNC in $SYNC_MODES; do
	for n in $NODES; do
		q $n -c "ALTER SYSTEM SET synchronous_commit = '$SYNC'" -c "SELECT pg_reload_conf()" >/dev/null
	done
	for n in $NODES; do
		for i in $(seq 50); do
			[ "$(q $n -c "SHOW synchronous_commit")" = "$SYNC" ] && break
			sleep 0.1
		done
	done
	for round in $(seq "$ROUNDS"); do
		for workload in connect mix; do
			if [ $((round % 2)) = 1 ]; then order="single citus citus-workers"; else order="citus-workers citus single"; fi
			for target in $order; do run_one "$round" "$workload" "$target"; done
		done
	done
done
LOAD_AT_END=$(cut -d' ' -f1 /proc/loadavg)

# Medians, the ratio, and CPU ms per call (all rounds summed).
REPORT=$OUT/report.md
{
	echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') with \`$REPRO\`"
	echo "(PostgreSQL $("$PG_BIN/postgres" -V | awk '{print $3}'), Citus $CITUS_VERSION, $(nproc) cores shared by"
	echo "every server and pgbench; provider_connections $EXT_VERSION, built from commit"
	echo "$(git -C "$BENCH/.." rev-parse --short HEAD 2>/dev/null || echo '?'); $CLIENTS clients, $SECS s per run, $ROUNDS round(s), targets"
	echo "alternating, order reversed each round; $SEED seeded connections per target, $SHARDS shards;"
	echo "load average $LOAD_AT_START at the start, $LOAD_AT_END at the end.)"
	echo
	awk -F '\t' '
		NR == 1 { next }
		{
			w = "sync " $1 ", " $3; k = w SUBSEP $4; n = ++cnt[k]; v[k, n] = $5
			calls[k] += $6; cc[k] += $7; cw[k] += $8
			if (!(w in seen)) { seen[w] = 1; order[++nw] = w }
			runs[k] = runs[k] (runs[k] == "" ? "" : ", ") sprintf("%.0f", $5)
		}
		function median(k,   i, j, t, a, m) {
			m = cnt[k]
			for (i = 1; i <= m; i++) a[i] = v[k, i]
			for (i = 2; i <= m; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
			return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
		}
		function ms(x, k) { return calls[k] > 0 ? sprintf("%.3f", 1000 * x / calls[k]) : "-" }
		END {
			print "| synchronous_commit, workload | single node, tps (median; runs) | Citus, calls on the coordinator, tps (median; runs) | coordinator / single | Citus, calls on the workers, tps (median; runs) | workers / single |"
			print "|---|---|---|---|---|---|"
			for (i = 1; i <= nw; i++) {
				w = order[i]; s = w SUBSEP "single"; c = w SUBSEP "citus"; x = w SUBSEP "citus-workers"
				printf "| %s | %.0f (%s) | %.0f (%s) | %.2fx | %.0f (%s) | %.2fx |\n", w, median(s), runs[s], median(c), runs[c],
					(median(s) > 0 ? median(c) / median(s) : 0), median(x), runs[x], (median(s) > 0 ? median(x) / median(s) : 0)
			}
			print ""
			print "CPU time per call (ms): what every server process of the node used (backends, the Citus and"
			print "provider_connections background workers, checkpointer, ...) from before pgbench started to"
			print "after its sessions ended, over the calls pgbench made; all rounds summed."
			print ""
			print "| synchronous_commit, workload | single node | calls on the coordinator: coordinator / workers / all | calls on the workers: coordinator / workers / all |"
			print "|---|---|---|---|"
			for (i = 1; i <= nw; i++) {
				w = order[i]; s = w SUBSEP "single"; c = w SUBSEP "citus"; x = w SUBSEP "citus-workers"
				printf "| %s | %s | %s / %s / %s | %s / %s / %s |\n", w, ms(cc[s], s), ms(cc[c], c), ms(cw[c], c), ms(cc[c] + cw[c], c),
					ms(cc[x], x), ms(cw[x], x), ms(cc[x] + cw[x], x)
			}
		}' "$RESULTS"
} >"$REPORT"
echo >&2
cat "$REPORT" >&2

if [ "$SMOKE" != 1 ] && [ "$FAILURES" = 0 ]; then
	awk -v report="$REPORT" '
		/<!-- citus-results -->/ { print; while ((getline line < report) > 0) print line; skip = 1; next }
		/<!-- \/citus-results -->/ { skip = 0 }
		!skip { print }' "$BENCH/README.md" >"$OUT/README.md.new"
	if grep -q '<!-- /citus-results -->' "$OUT/README.md.new"; then
		cp "$OUT/README.md.new" "$BENCH/README.md"
		log "results written to bench/README.md"
	else
		log "bench/README.md has no citus-results markers: results left in $REPORT"
	fi
fi
log "bench/citus.sh: $(($(date +%s) - T0)) s; logs in $OUT"
if [ "$FAILURES" -gt 0 ]; then
	log "$FAILURES run(s) failed"
	exit 1
fi
