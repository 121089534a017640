#!/usr/bin/env bash
# test/rotation.sh: rotate the key of a populated database while calls run,
# then drop the old key: every credential still opens.
# The keys travel the way an operator moves them: write the new key file,
# point the settings at the new and the old file, reload.
set -euo pipefail
. "$(dirname "$0")/../scripts/common.sh"
export PGDATABASE=rotation
fresh_db rotation

write_key_file "$CLUSTER_DIR/data/rotated.key"
psql -qX -v ON_ERROR_STOP=1 -c "
	SELECT provider_connect(gen_random_uuid(), 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab',
	                        convert_to('token-' || n, 'UTF8'))
	  FROM generate_series(1, 3000) n" >/dev/null
echo "  3000 connections sealed with the old key"

# Calls keep running during the rotation: refreshes, connects, disconnects.
work=$(mktemp -d)
cat >"$work/calls.sql" <<'SQL'
\set pick random(1, 10)
SELECT CASE WHEN :pick <= 6 THEN
         provider_refresh_tokens((SELECT id FROM provider_connections WHERE status = 'active'
                                   OFFSET (random() * 1000)::int LIMIT 1), '\x72656672657368')
       WHEN :pick <= 8 THEN
         provider_connect(gen_random_uuid(), 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01')
       ELSE
         (SELECT provider_disconnect(user_id, id) FROM
            (SELECT user_id, id FROM provider_connections WHERE status = 'active'
              OFFSET (random() * 1000)::int LIMIT 1) one)
       END;
SQL
timeout 60 "$PG_BIN/pgbench" -n -c 3 -T 8 -f "$work/calls.sql" >"$work/out" 2>&1 &
load=$!
sleep 1

psql -qX -c "ALTER SYSTEM SET provider_connections.encryption_key_file = 'rotated.key'" \
	-c "ALTER SYSTEM SET provider_connections.encryption_key_previous_file = 'provider_connections.key'" \
	-c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
batches=0
while :; do
	remaining=$(psql -qAtX -c "SELECT remaining FROM provider_rotate_credentials(250)")
	batches=$((batches + 1))
	# remaining is empty (NULL) after a full batch: more may remain.
	kill -0 "$load" 2>/dev/null || [ "$remaining" != 0 ] || break
	[ "$batches" -lt 400 ] || { echo "  FAILED: rotation did not converge"; exit 1; }
done
wait "$load" || { cat "$work/out"; exit 1; }
calls=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$work/out")
echo "  rotated in $batches batches of 250 while $calls calls ran (3 sessions, one call each)"
rm -rf "$work"

# One more pass for anything sealed by a session that had not reloaded yet.
psql -qAtX -c "SELECT remaining FROM provider_rotate_credentials(100000)" >/dev/null
psql -qX -c "ALTER SYSTEM RESET provider_connections.encryption_key_previous_file" \
	-c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5

check "nothing remains under the old key" \
	"SELECT remaining = 0 FROM provider_rotate_credentials(1)"
sealed=$(psql -qAtX -c "SELECT count(*) FROM provider_connections WHERE encrypted_credentials IS NOT NULL")
check "with the old key dropped, every credential opens ($sealed sealed)" \
	"SELECT count(*) > 1000 AND count(*) FILTER (WHERE provider_credentials(id) IS NULL) = 0
	   FROM provider_connections WHERE encrypted_credentials IS NOT NULL"
check "the refreshed credentials are the ones that were stored" \
	"SELECT count(*) > 0 AND bool_and(provider_credentials(id) = '\x72656672657368')
	   FROM provider_connections WHERE updated_at > created_at AND status = 'active'"
check "calls during the rotation kept their audit pairs" \
	"SELECT count(*) FILTER (WHERE event_type LIKE '%Attempted') * 2 = count(*) FROM provider_audit_log"

# Leave the cluster's configuration as it was.
psql -qX -c "ALTER SYSTEM RESET provider_connections.encryption_key_file" -c "SELECT pg_reload_conf()" >/dev/null
[ "${CHECKS_FAILED:-0}" -eq 0 ]
