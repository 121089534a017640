#!/usr/bin/env bash
# bench/catchup.sh: issue 18's target 1, on a throwaway cluster.
#
#   "a benchmark in bench/ reading a backlog of at least 1,000,000 events in
#    pages of 1,000 through provider_events_since at >= 0.9x the raw keyset
#    read of the same rows and columns; at the head, a call still sees every
#    event committed before it, in <= 1 ms with the worker running (median of
#    many calls, none waiting for a pacing pause)."
#
# The backlog: CATCHUP_SEED connects through provider_connect (two real
# events each), then their audit rows copied by INSERT ... SELECT (ids from
# the log's sequence, new event ids, the copying transaction's xid, as a
# call stamps them) until the log holds CATCHUP_EVENTS events; one
# provider_events_since(0, 0) then has the worker number them all. VACUUM
# ANALYZE, CHECKPOINT.
#
# The read (bench/catchup.c read): the whole backlog from position 0 in
# pages of CATCHUP_PAGE, each page through provider_events_since and through
# a raw keyset read of the same rows and columns, one right after the other
# (who goes first alternates page by page, so load elsewhere on the machine
# hits both alike), after one unmeasured pass (warm cache); CATCHUP_PASSES
# passes, median of the per-pass ratios
# (raw time / extension time: the extension's speed as a fraction of the
# raw read's).
#
# The head (bench/catchup.c head): CATCHUP_HEAD_CALLS times, a provider_connect
# commits in one session, then provider_events_since(last, 1000) in another
# must return exactly its two events; the reader's call is timed. The worker
# serves the database (notify = commit, the default).
#
# Settings (environment):
#   CATCHUP_EVENTS      backlog size in events (default 1000000)
#   CATCHUP_PAGE        page size (default 1000)
#   CATCHUP_PASSES      measured passes (default 5)
#   CATCHUP_SEED        connects made by provider_connect (default 10000)
#   CATCHUP_HEAD_CALLS  calls at the head (default 2000)
#   BENCH_NO_BUILD=1    use the installed build; BENCH_PG_BIN another PostgreSQL's bin
#   PGPORT              the cluster's port (default random)
# Writes bench/results/catchup/result.txt:
#   backlog=N page=N passes=N ratio_median=X ratio_min=X ratio_max=X ext_eps=N raw_eps=N
#   calls=N p50_ms=X p90_ms=X p99_ms=X max_ms=X wrong=N
# Exits non-zero if a read fails or a call at the head misses an event.
#
# Copyright (c) 2026, provider_connections developers.
# Released under the PostgreSQL License (see LICENSE).
set -euo pipefail
BENCH=$(cd "$(dirname "$0")" && pwd)
. "$BENCH/../scripts/common.sh"
PG_BIN=${BENCH_PG_BIN:-$PG_BIN}
[ -z "${BENCH_PG_BIN:-}" ] || PC_PG_BIN_GIVEN=1

EVENTS=${CATCHUP_EVENTS:-1000000}
PAGE=${CATCHUP_PAGE:-1000}
PASSES=${CATCHUP_PASSES:-5}
SEED=${CATCHUP_SEED:-10000}
HEAD_CALLS=${CATCHUP_HEAD_CALLS:-2000}
export PGPORT=${PGPORT:-$((49152 + RANDOM % 16000))}

OUT=$BENCH/results/catchup
rm -rf "$OUT"
mkdir -p "$OUT"

install_deps
if [ "${BENCH_NO_BUILD:-0}" = 1 ]; then
	log "BENCH_NO_BUILD=1: using the installed provider_connections"
else
	private_pg
	build_install
fi
CLIENT=$OUT/catchup
gcc -O2 -Wall -I"$("$PG_BIN/pg_config" --includedir)" -o "$CLIENT" "$BENCH/catchup.c" \
	-L"$("$PG_BIN/pg_config" --libdir)" -lpq

start_cluster
q() { psql -qAtX -v ON_ERROR_STOP=1 "$@"; }
# Room for the backlog in shared buffers: "warm cache" means every page read is a hit.
q -d postgres >/dev/null <<-'SQL'
	ALTER SYSTEM SET shared_buffers = '2GB';
	ALTER SYSTEM SET max_wal_size = '16GB';
	ALTER SYSTEM SET checkpoint_timeout = '1d';
	ALTER SYSTEM SET synchronous_commit = off;
SQL
as_pg "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/server.log" -w restart >/dev/null
export PGDATABASE=catchup
fresh_db catchup

log "backlog: $SEED connects, then copies up to $EVENTS events"
CRED="'\\x7b226163636573735f746f6b656e223a22746f6b656e2d31227d'"
for ((first = 1; first <= SEED; first += 5000)); do
	last=$((first + 4999 < SEED ? first + 4999 : SEED))
	q -c "SELECT count(*) FROM generate_series($first, $last) n,
	        LATERAL provider_connect(gen_random_uuid(), 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab',
	                                 $CRED, 'oauth2', now() + interval '1 hour') r WHERE r.ok" >/dev/null
done
REAL=$(q -c "SELECT count(*) FROM provider_audit_log")
while :; do
	have=$(q -c "SELECT count(*) FROM provider_audit_log")
	[ "$have" -lt "$EVENTS" ] || break
	want=$((EVENTS - have < 200000 ? EVENTS - have : 200000))
	# Copies of the real rows, cycling, in id order: a new id and event id
	# each, this transaction's xid, as a call would stamp them.
	q >/dev/null <<-SQL
		INSERT INTO provider_audit_log (id, event_id, event_type, action, user_id, connection_id,
		                                provider_id, provider_slug, reason, needs_user_action,
		                                occurred_at, context, xid, call_id)
		SELECT nextval('provider_audit_log_id_seq'), gen_random_uuid(), a.event_type, a.action, a.user_id,
		       a.connection_id, a.provider_id, a.provider_slug, a.reason, a.needs_user_action,
		       clock_timestamp(), a.context, pg_current_xact_id(), a.call_id
		  FROM generate_series(0, $want - 1) g
		  JOIN LATERAL (SELECT * FROM provider_audit_log WHERE id = 1 + g % $REAL) a ON true
		 ORDER BY g;
	SQL
done
q -c "SELECT count(*) FROM provider_events_since(0, 0)" >/dev/null	# numbers the backlog
NUMBERED=$(q -c "SELECT count(*) FROM provider_event_positions")
[ "$NUMBERED" -ge "$EVENTS" ] || { log "only $NUMBERED of $EVENTS events numbered"; exit 1; }
q -c "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null
log "backlog: $NUMBERED events numbered; $(q -c "SELECT pg_size_pretty(pg_total_relation_size('provider_audit_log') + pg_total_relation_size('provider_event_positions'))") with indexes"

log "reading the backlog in pages of $PAGE: $PASSES passes"
"$CLIENT" read "$PAGE" "$PASSES" | tee "$OUT/read.log" >&2
log "at the head: $HEAD_CALLS calls"
rc=0
"$CLIENT" head "$HEAD_CALLS" >"$OUT/head.log" || rc=$?
cat "$OUT/head.log" >&2

awk -v backlog="$NUMBERED" -v page="$PAGE" '
	{ for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
	  n++; r[n] = f["ratio"]; ext += f["ext_s"]; raw += f["raw_s"]; ev = f["events"] }
	END {
		for (i = 2; i <= n; i++) { v = r[i]; for (j = i - 1; j >= 1 && r[j] > v; j--) r[j + 1] = r[j]; r[j + 1] = v }
		med = (n % 2) ? r[(n + 1) / 2] : (r[n / 2] + r[n / 2 + 1]) / 2
		printf "backlog=%d page=%d passes=%d ratio_median=%.3f ratio_min=%.3f ratio_max=%.3f ext_eps=%.0f raw_eps=%.0f\n",
			backlog, page, n, med, r[1], r[n], ev * n / ext, ev * n / raw
	}' "$OUT/read.log" >"$OUT/result.txt"
cat "$OUT/head.log" >>"$OUT/result.txt"
cat "$OUT/result.txt" >&2
exit $rc
