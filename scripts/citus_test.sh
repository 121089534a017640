#!/usr/bin/env bash
# scripts/citus_test.sh: the Citus suite. Builds Citus (cached, see
# scripts/citus_build.sh), installs provider_connections into the same
# private copy of PostgreSQL 15, starts a coordinator and two workers, runs
# t/citus_suite.py against them and stops them.
#
#   bash scripts/citus_test.sh
#
# The three nodes listen on one private socket directory only (no TCP), on
# ports CITUS_PGPORT, +1 and +2 (default 55510): no other server can hold a
# port in a directory made for this run, so they are always free. Every
# node preloads 'citus,provider_connections' (Citus must come first), reads
# the same key file (one key, copied to each data directory, as start_cluster
# in common.sh writes one), logs every statement (log_statement = 'all', with
# the README's advice on bind parameters: log_parameter_max_length = 0 and
# log_parameter_max_length_on_error = 0) and has citus.local_hostname set to
# the socket directory, which Citus then uses as the host of its connections
# to itself as to the others. The coordinator and the workers are registered
# with citus_set_coordinator_host and citus_add_node (the socket directory as
# the host), in database postgres, where the suite then works.
#
# Then t/citus_faults.py on the same nodes (its own database: a worker
# SIGKILLed mid-load, upgrades to test-only versions from t/citus_upgrade/)
# and a smoke of bench/citus.sh (its own servers, a few seconds).
#
# Prints one line per check ("citus <check> ... ok" or "... FAILED", with
# what was seen) and ends with "N passed, M failed" over all three; exits non-zero when a
# check failed or the run ended early, after printing each node's last errors.
# Exits 77 with a note (and no count) when the Citus archive is absent:
# callers count that as skipped. The nodes are stopped on every exit (trap);
# their directory is removed, unless KEEP_CLUSTER is set or a check failed,
# then its path is printed.
#
# Runs of this script are serialised (a lock beside the cached copy), since
# each installs provider_connections into that copy.
#
# Copyright (c) 2026, provider_connections developers.
# Released under the PostgreSQL License (see LICENSE).
set -euo pipefail
. "$(dirname "$0")/common.sh"

T0=$(date +%s)
if out=$(bash "$TOP/scripts/citus_build.sh"); then rc=0; else rc=$?; fi
[ "$rc" -eq 77 ] && exit 77
[ "$rc" -eq 0 ] || { echo "citus_test.sh: building Citus failed (exit $rc)"; exit 1; }
PREFIX=${out##*CITUS_PREFIX=}
export PG_BIN=$PREFIX/usr/lib/postgresql/$PG_MAJOR/bin
T1=$(date +%s)

exec 7>"$PREFIX.run.lock"
if ! flock -n 7; then
	log "waiting for another run of the Citus suite"
	flock 7
fi

# python3-psycopg for the suite, and what the provider_connections build needs.
install_deps
build_install
T2=$(date +%s)

DIR=$(mktemp -d /tmp/provider_connections.citus.XXXXXX)
chmod 755 "$DIR"
[ "$(id -u)" -eq 0 ] && chown postgres: "$DIR"
BASEPORT=${CITUS_PGPORT:-55510}
NODES="coordinator worker1 worker2"
failed_run=1

stop_nodes() {
	local n
	for n in $NODES; do
		[ -f "$DIR/$n/postmaster.pid" ] || continue
		as_pg "$PG_BIN/pg_ctl" -D "$DIR/$n" -m fast -w stop >/dev/null 2>&1 ||
			as_pg "$PG_BIN/pg_ctl" -D "$DIR/$n" -m immediate -w stop >/dev/null 2>&1 || true
	done
	if [ -n "${KEEP_CLUSTER:-}" ] || [ "$failed_run" -ne 0 ]; then
		log "the nodes' directory (data, logs) kept in $DIR"
	else
		rm -rf "$DIR"
	fi
}
trap stop_nodes EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

log "starting a Citus coordinator and two workers in $DIR"
key=$(head -c 48 /dev/urandom | od -An -tx1 | tr -d ' \n')
i=0
for n in $NODES; do
	port=$((BASEPORT + i))
	i=$((i + 1))
	as_pg "$PG_BIN/initdb" -D "$DIR/$n" -U postgres -A trust --no-sync >/dev/null
	write_key_file "$DIR/$n/provider_connections.key" "$key"
	as_pg tee -a "$DIR/$n/postgresql.conf" >/dev/null <<CONF
listen_addresses = ''
unix_socket_directories = '$DIR'
port = $port
shared_preload_libraries = 'citus,pg_stat_statements,provider_connections'
pg_stat_statements.track = 'all'
provider_connections.encryption_key_file = 'provider_connections.key'
citus.local_hostname = '$DIR'
max_prepared_transactions = 20
max_connections = 60
fsync = off
wal_level = logical
log_line_prefix = '%m [%p] %q%a '
log_statement = 'all'
log_parameter_max_length = 0
log_parameter_max_length_on_error = 0
${CITUS_EXTRA_CONF:-}
CONF
	as_pg "$PG_BIN/pg_ctl" -D "$DIR/$n" -l "$DIR/$n.log" -w start >/dev/null
done

psql_node() { # psql_node PORT SQL
	as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$DIR" -p "$1" -U postgres -d postgres -Atc "$2"
}
for i in 0 1 2; do
	psql_node $((BASEPORT + i)) "CREATE EXTENSION citus" >/dev/null
done
psql_node "$BASEPORT" "SELECT citus_set_coordinator_host('$DIR', $BASEPORT)" >/dev/null
psql_node "$BASEPORT" "SELECT citus_add_node('$DIR', $((BASEPORT + 1)))" >/dev/null
psql_node "$BASEPORT" "SELECT citus_add_node('$DIR', $((BASEPORT + 2)))" >/dev/null
T3=$(date +%s)

# The suite runs as the server's user: it reads the nodes' logs (0600), and
# the checkout may be closed to that user, so it runs from a copy.
cp "$TOP/t/citus_suite.py" "$DIR/citus_suite.py"
cp "$TOP/examples/citus_consumer.py" "$DIR/citus_consumer.py"
chmod 644 "$DIR/citus_suite.py" "$DIR/citus_consumer.py"
suite_out=$(mktemp)
# Debian's python3: python3-psycopg is installed for it (install_deps).
# Its own count line is held back: this script ends with the count, after
# the timings.
set +e
as_pg env CITUS_DIR="$DIR" CITUS_PORTS="$BASEPORT $((BASEPORT + 1)) $((BASEPORT + 2))" \
	CITUS_NODES="$NODES" timeout "${CITUS_TIMEOUT:-600}" /usr/bin/python3 "$DIR/citus_suite.py" |
	tee "$suite_out" | grep -vE '^[0-9]+ passed, [0-9]+ failed$'
rc=${PIPESTATUS[0]}
set -e
passed=$(grep -cE '^citus .* \.\.\. ok$' "$suite_out" || true)
failed=$(grep -cE '^citus .* \.\.\. FAILED' "$suite_out" || true)
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
	# Ended before its last check (a crash, the timeout): one failure more.
	echo "citus suite ended early (exit $rc)"
	failed=1
fi
T4=$(date +%s)

# t/citus_faults.py, on the same nodes in a database of its own: a worker
# SIGKILLed mid-load, and ALTER EXTENSION ... UPDATE on the distributed
# install to test-only versions (t/citus_upgrade/, copied into the
# extension directory for this run and removed after; the control file
# stays at 1.4). Counted as the suite is.
EXTDIR=$("$PG_BIN/pg_config" --sharedir)/extension
UPGRADE_FILES=$(cd "$TOP/t/citus_upgrade" && ls provider_connections--*.sql)
remove_upgrade_files() {
	local f
	for f in $UPGRADE_FILES; do as_root rm -f "$EXTDIR/$f"; done
}
trap 'remove_upgrade_files; stop_nodes' EXIT
for f in $UPGRADE_FILES; do as_root install -m 644 "$TOP/t/citus_upgrade/$f" "$EXTDIR/$f"; done
cp "$TOP/t/citus_faults.py" "$DIR/citus_faults.py"
chmod 644 "$DIR/citus_faults.py"
set +e
as_pg env CITUS_DIR="$DIR" CITUS_PORTS="$BASEPORT $((BASEPORT + 1)) $((BASEPORT + 2))" \
	CITUS_NODES="$NODES" PG_BIN="$PG_BIN" CITUS_UPGRADE_DIR="$EXTDIR" \
	timeout "${CITUS_TIMEOUT:-600}" /usr/bin/python3 "$DIR/citus_faults.py" |
	tee "$suite_out" | grep -vE '^[0-9]+ passed, [0-9]+ failed$'
rc=${PIPESTATUS[0]}
set -e
remove_upgrade_files
passed=$((passed + $(grep -cE '^citus .* \.\.\. ok$' "$suite_out" || true)))
f=$(grep -cE '^citus .* \.\.\. FAILED' "$suite_out" || true)
failed=$((failed + f))
if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
	echo "citus faults ended early (exit $rc)"
	failed=$((failed + 1))
fi
rm -f "$suite_out"
T5=$(date +%s)

# bench/citus.sh as a smoke (a few seconds, its own four servers, no
# figures asserted): one check, that it runs.
if smoke=$(BENCH_SMOKE=1 BENCH_CITUS_INSTALLED=1 bash "$TOP/bench/citus.sh" 2>&1); then
	echo "citus bench/citus.sh smoke ... ok"
	passed=$((passed + 1))
else
	echo "citus bench/citus.sh smoke ... FAILED"
	tail -n 20 <<<"$smoke"
	failed=$((failed + 1))
fi
[ "$failed" -eq 0 ] && failed_run=0
if [ "$failed" -ne 0 ]; then
	for n in $NODES; do
		# Every statement is logged: show the problems.
		echo "---- $n: server log, last 20 errors and warnings (whole: $DIR/$n.log)"
		grep -E '(ERROR|WARNING|FATAL|PANIC):|terminated by signal' "$DIR/$n.log" | tail -n 20 || true
	done
fi
log "Citus: build ready in $((T1 - T0)) s, provider_connections installed in $((T2 - T1)) s," \
	"nodes up in $((T3 - T2)) s, suite $((T4 - T3)) s, faults $((T5 - T4)) s, bench smoke $(($(date +%s) - T5)) s," \
	"whole run $(($(date +%s) - T0)) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
