#!/usr/bin/env bash
# test/worker.sh: the background workers (the library is preloaded in the
# cluster scripts/test.sh runs). A launcher runs; a database gets a worker,
# visible in pg_stat_activity, once a call commits events there; a commit
# wakes it (positions arrive although worker_naptime is an hour); it leaves
# on DROP EXTENSION and comes back after CREATE EXTENSION and a call; DROP
# DATABASE, ALTER DATABASE RENAME and CREATE DATABASE ... TEMPLATE succeed
# at once while it runs; worker_databases chooses the databases served; a
# terminated worker is restarted. In provider_connections.notify = worker
# mode, a listener receives every event of concurrent callers once, in feed
# order, with its global_position; a failed notifying round is followed by
# one that assigns positions only, and the notifications follow later; and
# after the worker is killed with SIGKILL in the middle of a round (the
# whole server restarts), every committed event has exactly one position
# and notifications resume.
# Set PC_WORKER_NOTIFY_TESTS=0 to skip the notify = worker parts.
#
# Copyright (c) 2026, provider_connections developers.
# Released under the PostgreSQL License (see LICENSE).
set -euo pipefail
. "$(dirname "$0")/../scripts/common.sh"
NOTIFY_TESTS=${PC_WORKER_NOTIFY_TESTS:-1}
DBS="pcw_a pcw_b pcw_c pcw_c2 pcw_renamed pcw_gone"

q() { psql -qAtX -v ON_ERROR_STOP=1 "$@"; }

fail() {
	echo "  FAILED: $1"
	CHECKS_FAILED=$((${CHECKS_FAILED:-0} + 1))
	echo "  ---- provider_connections processes:"
	q -d postgres -c "SELECT pid, backend_type, datname, state, wait_event_type, wait_event
		FROM pg_stat_activity WHERE backend_type LIKE 'provider_connections%'" 2>&1 | sed 's/^/    /'
	if [ -n "${CLUSTER_DIR:-}" ] && [ -r "$CLUSTER_DIR/server.log" ]; then
		echo "  ---- end of the server log:"
		tail -n 15 "$CLUSTER_DIR/server.log" | sed 's/^/    /'
	fi
}

ok() { echo "  ok: $1"; }

# wait_for SECONDS COMMAND...: poll COMMAND every 0.1 s until it succeeds.
wait_for() {
	local tries=$(($1 * 10))
	shift
	while [ "$tries" -gt 0 ]; do
		"$@" && return 0
		sleep 0.1
		tries=$((tries - 1))
	done
	return 1
}

# expect NAME SECONDS COMMAND...: a check that may take up to SECONDS.
expect() {
	local name=$1
	shift
	if wait_for "$@"; then ok "$name"; else fail "$name"; fi
}

call() {	# call DB: one successful connect (two events)
	q -d "$1" -c "SELECT ok FROM provider_connect('77777777-0000-0000-0000-000000000001',
		'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01')" >/dev/null
}

worker_pid() {
	q -d postgres -c "SELECT pid FROM pg_stat_activity
		WHERE backend_type = 'provider_connections worker' AND datname = '$1'"
}
has_worker() { [ -n "$(worker_pid "$1")" ]; }
no_worker() { [ -z "$(worker_pid "$1")" ]; }
new_worker() { local p; p=$(worker_pid "$1"); [ -n "$p" ] && [ "$p" != "$2" ]; }
server_up() { q -d postgres -c "SELECT 1" >/dev/null 2>&1; }

# Every audit row of DB has a position (without asking the feed to assign).
all_positioned() {
	[ "$(q -d "$1" -c "SELECT count(*) FROM provider_audit_log a
		LEFT JOIN provider_event_positions p ON p.audit_id = a.id WHERE p.audit_id IS NULL")" = 0 ]
}

# Set a setting cluster-wide and wait until a new session sees it.
set_config() {	# set_config NAME VALUE [SHOWN]: VALUE "" resets
	if [ -n "$2" ]; then
		q -d postgres -c "ALTER SYSTEM SET $1 = '$2'" -c "SELECT pg_reload_conf()" >/dev/null
	else
		q -d postgres -c "ALTER SYSTEM RESET $1" -c "SELECT pg_reload_conf()" >/dev/null
	fi
	wait_for 5 sh -c "[ \"\$(psql -qAtX -d postgres -c 'SHOW $1')\" = '${3:-$2}' ]"
}

# A listener: a session that LISTENs and polls every 0.1 s until
# listen_stop (or 120 s). Its output, one line per notification, in $1.
listen_start() {	# listen_start DB OUT
	rm -f "$2" "$2.stop"
	{
		echo "LISTEN provider_events;"
		echo "SELECT 'listening';"
		for _ in $(seq 1 1200); do
			[ -e "$2.stop" ] && break
			echo "SELECT 1;"
			sleep 0.1
		done
	} | psql -qAtX -d "$1" >"$2" 2>&1 &
	LISTENER=$!
	wait_for 10 grep -q '^listening$' "$2"
}
listen_stop() { touch "$1.stop"; wait "$LISTENER" 2>/dev/null || true; }
payloads() { sed -n 's/^Asynchronous notification "provider_events" with payload "\(.*\)" received from server process.*/\1/p' "$1"; }
# "audit_id:global_position" of each notification, in the order received.
received_ids() {
	payloads "$1" | sed -n 's/.*"audit_id":\([0-9]*\).*"global_position":\([0-9]*\).*/\1:\2/p' | paste -sd' '
}
# The same from the feed: positions after $2, in feed order.
feed_ids() {
	q -d "$1" -c "SELECT coalesce(string_agg(audit_id || ':' || global_position, ' ' ORDER BY global_position), '')
		FROM provider_event_positions WHERE global_position > $2"
}
feed_head() { q -d "$1" -c "SELECT coalesce(max(global_position), 0) FROM provider_event_positions"; }
# The listener received exactly the events positioned after HEAD, in feed
# order, and nothing twice. (A new listener may also get notifications
# committed just before it listened: PostgreSQL delivers those still in the
# queue, async.c, Exec_ListenPreCommit.)
received_feed() {	# received_feed DB OUT HEAD
	local want got all
	want=$(feed_ids "$1" "$3")
	all=$(received_ids "$2" | tr ' ' '\n')
	got=$(echo "$all" | awk -F: -v head="$3" '$2 > head' | paste -sd' ')
	[ -n "$want" ] && [ "$got" = "$want" ] &&
		[ -z "$(echo "$all" | sort | uniq -d)" ] &&
		echo "$all" | awk -F: 'NR > 1 && $2 <= last { exit 1 } { last = $2 }'
}
# expect_received NAME DB OUT HEAD: received_feed within 15 s, else show both.
expect_received() {
	if wait_for 15 received_feed "$2" "$3" "$4"; then
		ok "$1"
	else
		fail "$1"
		echo "  ---- positioned after $4 (audit_id:global_position): $(feed_ids "$2" "$4")"
		echo "  ---- received: $(received_ids "$3")"
		echo "  ---- listener output:"; tail -n 5 "$3" | sed 's/^/    /'
	fi
}

cleanup() {
	[ -n "${LISTENER:-}" ] && kill "$LISTENER" 2>/dev/null || true
	[ -n "${LOCKER:-}" ] && kill "$LOCKER" 2>/dev/null || true
	server_up || wait_for 30 server_up || true
	for s in notify worker_naptime worker_databases; do
		q -d postgres -c "ALTER SYSTEM RESET provider_connections.$s" >/dev/null 2>&1 || true
	done
	q -d postgres -c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
	for d in $DBS; do q -d postgres -c "DROP DATABASE IF EXISTS $d" >/dev/null 2>&1 || true; done
	rm -rf "$TMPD"
}
TMPD=$(mktemp -d)
trap cleanup EXIT

echo "-- launcher and worker"
if [ "$(q -d postgres -c "SELECT count(*) FROM pg_stat_activity
		WHERE backend_type = 'provider_connections launcher' AND datname IS NULL")" = 1 ]; then
	ok "one launcher runs, connected to no database"
else
	fail "one launcher runs, connected to no database"
fi

fresh_db pcw_a
call pcw_a
expect "a call brings a worker to its database, shown as 'provider_connections worker'" 10 has_worker pcw_a
pid=$(worker_pid pcw_a)
if ps -o args= -p "$pid" 2>/dev/null | grep -q 'provider_connections worker for database pcw_a'; then
	ok "its process title names the database"
else
	fail "its process title names the database ($(ps -o args= -p "$pid" 2>&1))"
fi
expect "the worker assigns the call's events their positions" 10 all_positioned pcw_a

# In worker mode a commit wakes the worker (its notifications wait for the
# round); in commit mode nothing does, so that durable callers do not pay a
# flushed worker commit each: the naptime, or a reader of the feed, does.
set_config provider_connections.notify worker || fail "setting provider_connections.notify"
set_config provider_connections.worker_naptime 1h || fail "setting provider_connections.worker_naptime"
call pcw_a
expect "notify = worker, worker_naptime = 1h: a commit still wakes the worker at once" 3 all_positioned pcw_a
set_config provider_connections.notify "" commit || fail "setting provider_connections.notify"
call pcw_a
sleep 1.5
if all_positioned pcw_a; then fail "notify = commit, worker_naptime = 1h: a commit does not wake the worker"
else ok "notify = commit, worker_naptime = 1h: a commit does not wake the worker"; fi
q -d pcw_a -c "SELECT count(*) FROM provider_events_since(0, 0)" >/dev/null
if all_positioned pcw_a; then ok "and a read of the feed gets its round at once"
else fail "and a read of the feed gets its round at once"; fi
set_config provider_connections.worker_naptime "" 1s || fail "setting provider_connections.worker_naptime"

echo "-- DROP EXTENSION, CREATE EXTENSION, DROP DATABASE"
q -d pcw_a -c "DROP EXTENSION provider_connections"
expect "the worker leaves after DROP EXTENSION" 10 no_worker pcw_a
q -d pcw_a -c "CREATE EXTENSION provider_connections"
call pcw_a
expect "it is back after CREATE EXTENSION and a call" 10 has_worker pcw_a
expect "and assigns positions again" 10 all_positioned pcw_a

fresh_db pcw_gone
call pcw_gone
if wait_for 10 has_worker pcw_gone; then
	start=$(date +%s%N)
	if out=$(q -d postgres -c "DROP DATABASE pcw_gone" 2>&1); then
		ms=$((($(date +%s%N) - start) / 1000000))
		if [ "$ms" -lt 3000 ]; then
			ok "DROP DATABASE succeeds while a worker runs there, in $ms ms"
		else
			fail "DROP DATABASE took $ms ms"
		fi
	else
		fail "DROP DATABASE while a worker runs: $out"
	fi
else
	fail "a worker in pcw_gone before DROP DATABASE"
fi

fresh_db pcw_c
call pcw_c
if wait_for 10 has_worker pcw_c &&
	q -d postgres -c "CREATE DATABASE pcw_c2 TEMPLATE pcw_c" &&
	q -d postgres -c "ALTER DATABASE pcw_c RENAME TO pcw_renamed"; then
	ok "CREATE DATABASE ... TEMPLATE and ALTER DATABASE RENAME succeed while a worker runs"
else
	fail "CREATE DATABASE ... TEMPLATE and ALTER DATABASE RENAME while a worker runs"
fi
expect "the worker comes back under the new name" 10 has_worker pcw_renamed

echo "-- worker_databases, restart"
fresh_db pcw_b
set_config provider_connections.worker_databases pcw_b || fail "setting provider_connections.worker_databases"
expect "worker_databases = pcw_b: the worker of pcw_a leaves" 10 no_worker pcw_a
call pcw_b
expect "and pcw_b has one" 10 has_worker pcw_b
call pcw_a
check_db() { PGDATABASE=$1 check "$2" "$3"; }
check_db pcw_a "without a worker the feed still assigns: provider_events_since sees every event" \
	"SELECT count(*) = (SELECT count(*) FROM provider_audit_log) FROM provider_events_since(0, 100000)"
set_config provider_connections.worker_databases "" "" || fail "setting provider_connections.worker_databases"
expect "worker_databases emptied: pcw_a is served again" 15 has_worker pcw_a

pid=$(worker_pid pcw_a)
q -d postgres -c "SELECT pg_terminate_backend($pid)" >/dev/null
expect "a terminated worker is restarted" 15 new_worker pcw_a "$pid"

if [ "$NOTIFY_TESTS" = 1 ]; then
	echo "-- notify = worker"
	set_config provider_connections.notify worker || fail "setting provider_connections.notify"
	head=$(feed_head pcw_a)
	listen_start pcw_a "$TMPD/concurrent" || fail "the listener starts"
	callers=()
	for _ in 1 2 3 4; do
		(for _ in $(seq 1 10); do call pcw_a; done) &
		callers+=($!)
	done
	wait "${callers[@]}"
	expect_received "a listener receives each event of 4 concurrent callers once, in feed order, with its global_position" \
		pcw_a "$TMPD/concurrent" "$head"
	listen_stop "$TMPD/concurrent"
	n=$(received_ids "$TMPD/concurrent" | tr ' ' '\n' | awk -F: -v head="$head" '$2 > head' | wc -l)
	[ "$n" = 80 ] && ok "80 events, 80 notifications" || fail "80 events, $n notifications"

	# A round that fails while it notifies: an injected error in the first
	# INSERT of positions that has rows.
	q -d pcw_a >/dev/null <<'SQL'
CREATE SEQUENCE public.pcw_failures;
CREATE FUNCTION public.pcw_fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM new_rows) THEN
		IF nextval('public.pcw_failures') = 1 THEN
			RAISE EXCEPTION 'injected failure';
		END IF;
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER pcw_fail_once AFTER INSERT ON provider_event_positions
	REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION public.pcw_fail_once();
SQL
	head=$(feed_head pcw_a)
	listen_start pcw_a "$TMPD/failing" || fail "the listener starts"
	call pcw_a
	expect "after a failed notifying round the events still get positions" 10 all_positioned pcw_a
	expect_received "and their notifications follow, once each, in order" pcw_a "$TMPD/failing" "$head"
	listen_stop "$TMPD/failing"
	q -d pcw_a -c "DROP TRIGGER pcw_fail_once ON provider_event_positions"
	if grep -q 'could not send notifications: injected failure' "$CLUSTER_DIR/server.log" &&
		grep -q 'could send notifications again' "$CLUSTER_DIR/server.log"; then
		ok "the server log has the failure (WARNING) and the recovery"
	else
		fail "the server log has the failure (WARNING) and the recovery"
	fi
fi

echo "-- SIGKILL of the worker in the middle of a round"
call pcw_a
wait_for 10 all_positioned pcw_a || fail "positions before the kill"
before=$(q -d pcw_a -c "SELECT max(id) FROM provider_audit_log")
# Hold the worker inside its round: it has locked the feed and waits to
# insert positions.
PGAPPNAME=pcw_locker q -d pcw_a -c "BEGIN" \
	-c "LOCK TABLE provider_event_positions IN EXCLUSIVE MODE" -c "SELECT pg_sleep(60)" >/dev/null 2>&1 &
LOCKER=$!
locked() {
	[ "$(q -d postgres -c "SELECT count(*) FROM pg_stat_activity
		WHERE application_name = 'pcw_locker' AND query LIKE '%pg_sleep%'")" = 1 ]
}
waiting_worker() {
	[ "$(q -d postgres -c "SELECT count(*) FROM pg_stat_activity WHERE datname = 'pcw_a'
		AND backend_type = 'provider_connections worker' AND wait_event_type = 'Lock'")" = 1 ]
}
wait_for 10 locked || fail "the lock is taken"
for _ in 1 2 3 4 5; do call pcw_a; done
if wait_for 10 waiting_worker; then
	pid=$(worker_pid pcw_a)
	kill -KILL "$pid"
	echo "  killed worker $pid while its round waited to insert positions"
	wait "$LOCKER" 2>/dev/null || true
	LOCKER=
	expect "the server recovers" 30 server_up
	expect "the worker is back after the restart" 15 has_worker pcw_a
	expect "every event committed before the kill gets a position" 10 all_positioned pcw_a
	check_db pcw_a "the 5 calls made before the kill left their 10 events" \
		"SELECT count(*) = 10 FROM provider_audit_log WHERE id > $before"
	check_db pcw_a "every audit row has exactly one position, every position one event" \
		"SELECT count(*) = (SELECT count(*) FROM provider_audit_log)
		    AND count(DISTINCT audit_id) = count(*) AND count(DISTINCT global_position) = count(*)
		   FROM provider_event_positions"
	check_db pcw_a "no position without its audit row" \
		"SELECT NOT EXISTS (SELECT 1 FROM provider_event_positions p
		                     LEFT JOIN provider_audit_log a ON a.id = p.audit_id WHERE a.id IS NULL)"
	if grep -q 'provider_connections worker.*terminated by signal 9' "$CLUSTER_DIR/server.log"; then
		ok "the server log records the kill"
	else
		fail "the server log records the kill"
	fi
	if [ "$NOTIFY_TESTS" = 1 ]; then
		head=$(feed_head pcw_a)
		listen_start pcw_a "$TMPD/after_kill" || fail "the listener starts"
		for _ in 1 2 3; do call pcw_a; done
		expect_received "notifications resume after the restart, once each, in feed order" \
			pcw_a "$TMPD/after_kill" "$head"
		listen_stop "$TMPD/after_kill"
	fi
else
	fail "the worker waits inside its round"
	kill "$LOCKER" 2>/dev/null || true
fi

[ "${CHECKS_FAILED:-0}" -eq 0 ]
