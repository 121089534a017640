#!/usr/bin/env bash
# test/faults.sh: a backend killed with SIGKILL in the middle of a call.
# The call has written its Attempted row and waits on a row lock another
# session holds; the kill makes the server restart every backend and
# recover. Afterwards no trace of the killed call remains: no partial row,
# no orphan audit row, no unpaired event, and the connection is unchanged.
# Done for a refresh and for a disconnect.
set -euo pipefail
. "$(dirname "$0")/../scripts/common.sh"
export PGDATABASE=faults
fresh_db faults

conn=$(psql -qAtX -c "SELECT connection_id FROM provider_connect('fa000000-0000-0000-0000-000000000001',
	'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x6f726967696e616c')")
before=$(psql -qAtX -c "SELECT count(*) FROM provider_audit_log")

wait_for_lock_wait() {
	for _ in $(seq 1 100); do
		pid=$(psql -qAtX -d postgres -c "SELECT pid FROM pg_stat_activity
			WHERE application_name = '$1' AND wait_event_type = 'Lock'")
		[ -n "$pid" ] && { echo "$pid"; return 0; }
		sleep 0.1
	done
	return 1
}

wait_for_recovery() {
	for _ in $(seq 1 100); do
		psql -qAtX -d postgres -c "SELECT 1" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	return 1
}

kill_waiting_call() {	# $1: name, $2: the call to make while the row is locked
	PGAPPNAME=holder psql -qX -c "BEGIN" -c "SELECT 1 FROM provider_connections WHERE id = '$conn' FOR UPDATE" \
		-c "SELECT pg_sleep(30)" >/dev/null 2>&1 &
	local holder=$!
	sleep 0.5
	PGAPPNAME=victim psql -qX -c "$2" >/dev/null 2>&1 &
	local victim=$!
	local pid
	pid=$(wait_for_lock_wait victim) || { echo "  FAILED: $1: the call never waited"; CHECKS_FAILED=$((${CHECKS_FAILED:-0} + 1)); return; }
	kill -KILL "$pid"
	echo "  killed backend $pid ($1) while it waited on the row lock"
	wait "$victim" 2>/dev/null || true
	wait "$holder" 2>/dev/null || true
	wait_for_recovery
}

kill_waiting_call refresh "SELECT provider_refresh_tokens('$conn', '\x6e6577')"
kill_waiting_call disconnect "SELECT provider_disconnect('fa000000-0000-0000-0000-000000000001', '$conn')"

check "the server recovered and the killed calls left no audit row" \
	"SELECT count(*) = $before FROM provider_audit_log"
check "no Attempted row without its outcome" \
	"SELECT count(*) = 0 FROM provider_audit_log a WHERE event_type LIKE '%Attempted'
	   AND NOT EXISTS (SELECT 1 FROM provider_audit_log o
	                    WHERE o.context->>'transaction_id' = a.context->>'transaction_id' AND o.id > a.id)"
check "the connection is unchanged: active, original credentials" \
	"SELECT status = 'active' AND provider_credentials(id) = '\x6f726967696e616c'::bytea
	   FROM provider_connections WHERE id = '$conn'"
check "every event has its position, and no position lacks an event" \
	"SELECT (SELECT count(*) FROM provider_event_positions) = (SELECT count(*) FROM provider_audit_log)"
check "calls work again after recovery" \
	"SELECT ok FROM provider_refresh_tokens('$conn', '\x6166746572')"
check "the feed continues after recovery without a gap in what a consumer sees" \
	"SELECT count(*) = (SELECT count(*) FROM provider_audit_log) FROM provider_events_since(0, 100000)"
grep -q 'terminated by signal 9' "$CLUSTER_DIR/server.log" && echo "  ok: the server log records the kills"

[ "${CHECKS_FAILED:-0}" -eq 0 ]
