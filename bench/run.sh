#!/usr/bin/env bash
# bench/run.sh: pgbench each command against a plain INSERT + NOTIFY baseline
# on a throwaway cluster, and print throughput as ratios measured in this one
# run (the machine is noisy: compare ratios, not absolute numbers).
# BENCH_SECONDS per script (default 10), BENCH_CLIENTS (default 2).
set -euo pipefail
. "$(dirname "$0")/../scripts/common.sh"
install_deps
build_install
PGPORT=${PGPORT:-54331} start_cluster
export PGDATABASE=bench
fresh_db bench
psql -qX -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE TABLE bench_plain (id uuid PRIMARY KEY, user_id uuid NOT NULL, provider_id uuid NOT NULL,
                          provider_slug varchar(50) NOT NULL, status text NOT NULL,
                          credentials bytea, created_at timestamptz NOT NULL);
CREATE INDEX ON bench_plain (user_id);
CREATE TABLE bench_ids (n int PRIMARY KEY, id uuid);
INSERT INTO bench_ids
SELECT n, (provider_connect(gen_random_uuid(), 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01')).connection_id
  FROM generate_series(1, 10000) n;
VACUUM ANALYZE;
SQL

secs=${BENCH_SECONDS:-10}
clients=${BENCH_CLIENTS:-2}
declare -A tps
for s in baseline connect refresh credentials failure; do
	tps[$s]=$("$PG_BIN/pgbench" -n -c "$clients" -j "$clients" -T "$secs" -f "$TOP/bench/$s.sql" 2>&1 |
		sed -n 's/^tps = \([0-9.]*\) .*/\1/p')
done
printf '\n%-12s %12s %10s\n' script tps "vs baseline"
for s in baseline connect refresh credentials failure; do
	printf '%-12s %12.0f %10.2f\n' "$s" "${tps[$s]}" "$(awk -v a="${tps[$s]}" -v b="${tps[baseline]}" 'BEGIN {print a / b}')"
done
