#!/usr/bin/env bash
# test/dump_restore.sh: pg_dump of a database using the extension, restored
# into a fresh cluster with the same key, keeps every connection, every
# audit row and every feed position, the credentials open, the append-only
# rules do not get in the restore's way, and new events continue the feed
# after the old positions.
set -euo pipefail
. "$(dirname "$0")/../scripts/common.sh"
export PGDATABASE=dumpsrc
fresh_db dumpsrc

psql -qX -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
SELECT provider_connect(('d0000000-0000-0000-0000-' || lpad(n::text, 12, '0'))::uuid,
                        'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab',
                        convert_to('token-' || n, 'UTF8'), 'oauth2', now() + interval '1 hour',
                        'account ' || n)
  FROM generate_series(1, 200) n;
SELECT provider_refresh_tokens(id, convert_to('refreshed-' || id, 'UTF8'))
  FROM provider_connections WHERE alias LIKE '%0';
SELECT provider_disconnect(user_id, id) FROM provider_connections WHERE alias LIKE '%5';
SELECT provider_connect(NULL, NULL, NULL, NULL);
SQL

fingerprint="SELECT md5(string_agg(x, '|' ORDER BY x)) FROM (
	SELECT concat_ws(',', id, user_id, status, alias, credential_type, credentials_expires_at,
	                 encode(provider_credentials(id), 'hex'), created_at, updated_at) AS x
	  FROM provider_connections
	UNION ALL SELECT concat_ws(',', id, event_id, event_type, user_id, connection_id, reason, occurred_at, context)
	  FROM provider_audit_log
	UNION ALL SELECT concat_ws(',', 'position', global_position, audit_id)
	  FROM provider_event_positions) s"
before=$(psql -qAtX -c "$fingerprint")
head=$(psql -qAtX -c "SELECT max(global_position) FROM provider_event_positions")

dump=$(mktemp)
"$PG_BIN/pg_dump" -Fc -f "$dump" dumpsrc
start_second_cluster $((PGPORT + 1))
trap 'stop_second_cluster; rm -f "$dump"' EXIT
echo "  dumped $(stat -c %s "$dump") bytes; restoring into a fresh cluster"

(
	export PGHOST=$SECOND_DIR PGPORT=$((PGPORT + 1)) PGDATABASE=restored
	createdb restored
	"$PG_BIN/pg_restore" --exit-on-error -d restored "$dump"
	check "connections, audit rows, positions and plain credentials are identical" \
		"SELECT ($fingerprint) = '$before'"
	check "a new call works in the restored database" \
		"SELECT (provider_refresh_tokens(id, '\x01')).ok
		   FROM provider_connections WHERE status = 'active' ORDER BY id LIMIT 1"
	# Positions are assigned at commit, so look in a new statement.
	check "its events continue the feed right after the restored positions" \
		"SELECT min(global_position) = $head + 1 AND count(*) = 2 FROM provider_events_since($head)"
	check "the restored audit log is still append-only" \
		"SELECT tgenabled = 'A' FROM pg_trigger WHERE tgname = 'provider_audit_log_append_only'"
	[ "${CHECKS_FAILED:-0}" -eq 0 ]
)
