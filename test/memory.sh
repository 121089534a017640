#!/usr/bin/env bash
# test/memory.sh: one backend calls each function MEMORY_LOOPS times
# (default 100000; connect, refresh, credentials, disconnect, each call its
# own transaction) and its memory must stay flat: the bytes held in its
# memory contexts, and its private resident memory (RssAnon, which unlike
# VmRSS does not grow as shared buffers are touched).
set -euo pipefail
. "$(dirname "$0")/../scripts/common.sh"
export PGDATABASE=memory
fresh_db memory
loops=${MEMORY_LOOPS:-100000}

psql -qX -v ON_ERROR_STOP=1 <<'SQL'
CREATE TABLE samples (calls bigint, context_bytes bigint, rss_anon_kb bigint);
CREATE PROCEDURE loop(n int) LANGUAGE plpgsql AS $$
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

# One session: ten CALLs of a tenth of the loop each, sampling the backend
# between them (inside a running CALL, PL/pgSQL's own state would count too).
step=$((loops / 10))
start=$(date +%s)
for k in $(seq 1 10); do
	echo "CALL loop($step);"
	echo "INSERT INTO samples SELECT $((k * step)), (SELECT sum(total_bytes) FROM pg_backend_memory_contexts),
	        substring(pg_read_file('/proc/self/status') FROM 'RssAnon:\s+(\d+)')::bigint;"
done | psql -qX -v ON_ERROR_STOP=1
echo "  $loops x 4 calls in $(( $(date +%s) - start )) s; samples (calls per function, context bytes, RssAnon kB):"
psql -qAtX -F ' ' -c "SELECT calls, context_bytes, rss_anon_kb FROM samples ORDER BY calls" | sed 's/^/    /'

# Flat: from the second sample on (after caches warm up), neither measure
# grows by more than 256 kB, while the loop made millions of allocations.
check "memory-context bytes stay flat after warm-up" \
	"SELECT max(context_bytes) - min(context_bytes) < 256 * 1024
	   FROM samples WHERE calls > (SELECT min(calls) FROM samples)"
check "private resident memory stays flat after warm-up" \
	"SELECT max(rss_anon_kb) - min(rss_anon_kb) < 256
	   FROM samples WHERE calls > (SELECT min(calls) FROM samples)"
check "every call was recorded ($loops x 3 commands x 2 events)" \
	"SELECT count(*) = $loops * 6 FROM provider_audit_log"
psql -qX -d postgres -c "DROP DATABASE memory" >/dev/null
[ "${CHECKS_FAILED:-0}" -eq 0 ]
