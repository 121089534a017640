#!/usr/bin/env bash
# scripts/demo.sh: see provider_connections work on a throwaway cluster.
# A listener prints every event it receives while a connection is made,
# refreshed, refused an illegal status change and disconnected; then the
# audit trail is shown. Installs the Debian packages it needs (apt, through
# sudo when not root), builds the extension into a private copy of
# PostgreSQL in a temporary directory (common.sh's private_pg; the system's
# PostgreSQL is left alone), runs a throwaway cluster on a private socket
# directory, and removes both at exit (KEEP_CLUSTER=1 keeps them).
set -euo pipefail
. "$(dirname "$0")/common.sh"

install_deps
private_pg
build_install
start_cluster
psql -qX -c "CREATE DATABASE demo" >/dev/null
export PGDATABASE=demo
psql -qX -c "CREATE EXTENSION provider_connections CASCADE" 2>/dev/null

# The listener: one session that LISTENs and polls, writing each payload
# to a file that is shown after each step.
EVENTS=$(mktemp)
(
	echo "LISTEN provider_events;"
	while sleep 0.1; do echo "SELECT 1 \\g /dev/null"; done
) | psql -qAtX 2>/dev/null |
	sed -u -n 's/^Asynchronous notification "provider_events" with payload "\(.*\)" received from server process with PID [0-9]*\.$/    listener got: \1/p' >"$EVENTS" &
LISTENER=$!
trap 'kill $LISTENER 2>/dev/null || true; rm -f "$EVENTS"; stop_cluster; private_pg_cleanup' EXIT
sleep 0.5
SHOWN=0

step() {
	printf '\n-- %s\n' "$1"
	psql -X -c "$2" 2>&1 | sed 's/^/    /' || true
	sleep 0.5
	tail -n +$((SHOWN + 1)) "$EVENTS"
	SHOWN=$(wc -l <"$EVENTS")
}

step "connect a user to Schwab (credentials are sealed with the key from postgresql.conf)" \
	"SELECT * FROM provider_connect('11111111-1111-1111-1111-111111111111',
	    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab',
	    convert_to('{\"access_token\":\"demo-token\"}', 'UTF8'),
	    expires_at => now() + interval '1 hour', alias => 'Brokerage')"
step "refresh its tokens" \
	"SELECT * FROM provider_refresh_tokens((SELECT id FROM provider_connections),
	    convert_to('{\"access_token\":\"demo-token-2\"}', 'UTF8'), now() + interval '1 hour')"
step "an illegal status change is refused on every write path, here a direct UPDATE" \
	"UPDATE provider_connections SET status = 'pending'"
step "disconnect (credentials are dropped, the row is kept)" \
	"SELECT * FROM provider_disconnect('11111111-1111-1111-1111-111111111111',
	    (SELECT id FROM provider_connections))"
step "refreshing a disconnected connection fails, and the failure is recorded" \
	"SELECT * FROM provider_refresh_tokens((SELECT id FROM provider_connections), '\\x01')"
step "the connection row" \
	"SELECT provider_slug, status, alias, encrypted_credentials, connected_at IS NOT NULL AS connected
	   FROM provider_connections"
step "the audit trail (append-only)" \
	"SELECT id, event_type, provider_slug, reason, needs_user_action FROM provider_audit_log ORDER BY id"
step "and it cannot be rewritten, not even by a superuser" \
	"DELETE FROM provider_audit_log"
