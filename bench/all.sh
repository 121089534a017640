#!/usr/bin/env bash
# bench/all.sh: everything issue 18 measures, in one command, and the
# results written into bench/README.md (between the results markers) with
# the command that reproduces them and every target beside its figure.
#
#   1. bench/catchup.sh: a backlog of CATCHUP_EVENTS (1,000,000) events read
#      in pages of CATCHUP_PAGE (1,000) through provider_events_since and
#      through a raw keyset read; calls at the head (target 1);
#   2. bench/run.sh with the groups the targets need (BENCH_PLAN below),
#      BENCH_ROUNDS (3) alternating rounds of BENCH_SECONDS (10):
#        async, 1 client: connect, refresh, mix: extension and PL/pgSQL (target 0)
#        durable, 8 and 16 clients: connect and mix: extension in worker
#          mode and the floor without NOTIFY, the fair mix floor for the
#          mix (targets 2 and 3);
#   3. with ALL_SCALE=1, bench/scale.sh (target 4; about 10 minutes at its
#      default size, so not run unless asked), its targets in the same table
#      (bench/results/scale/targets.tsv, read by report.awk).
# The extension is built once from this tree into a private copy of
# PostgreSQL (scripts/common.sh), unless BENCH_PG_BIN names an installation
# it is already installed in (then with BENCH_NO_BUILD=1).
# Any setting of catchup.sh, run.sh or scale.sh passes through.
set -euo pipefail
BENCH=$(cd "$(dirname "$0")" && pwd)
. "$BENCH/../scripts/common.sh"

REPRO=""
for v in BENCH_SECONDS BENCH_ROUNDS BENCH_SEED BENCH_NO_BUILD BENCH_PG_BIN CATCHUP_EVENTS CATCHUP_PAGE \
	CATCHUP_PASSES CATCHUP_HEAD_CALLS ALL_SCALE; do
	[ -n "${!v+x}" ] && REPRO+="$v=${!v@Q} "
done
REPRO+="bash bench/all.sh"

export BENCH_ROUNDS=${BENCH_ROUNDS:-3}
export BENCH_SECONDS=${BENCH_SECONDS:-10}
export BENCH_PLAN="off:1:connect:ext,plref off:1:refresh:ext,plref off:1:mix:ext,plref
	on:8:connect:ext-worker,floor-nonotify on:8:mix:ext-worker,floor-nonotify
	on:16:connect:ext-worker,floor-nonotify on:16:mix:ext-worker,floor-nonotify"
BENCH_PLAN=$(echo $BENCH_PLAN)

install_deps
if [ -n "${BENCH_PG_BIN:-}" ]; then
	PG_BIN=$BENCH_PG_BIN
	PC_PG_BIN_GIVEN=1
	if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then build_install; fi
else
	private_pg
	build_install
	trap private_pg_cleanup EXIT
fi
BUILT="built from commit $(git -C "$BENCH/.." rev-parse --short HEAD 2>/dev/null || echo '?')"
git -C "$BENCH/.." status --porcelain -- src ':(glob)*.sql' ':(glob)*.control' 2>/dev/null | grep -q . &&
	BUILT+=" with uncommitted changes"
[ "${BENCH_NO_BUILD:-0}" != 1 ] || BUILT="the extension as installed, not built from this tree"
export BENCH_PG_BIN=$PG_BIN BENCH_NO_BUILD=1 BENCH_BUILT_NOTE=$BUILT BENCH_REPRO=$REPRO

log "1/2: catch-up (bench/catchup.sh)"
rc=0
bash "$BENCH/catchup.sh" || rc=$?
export BENCH_CATCHUP_RESULT=$BENCH/results/catchup/result.txt
if [ "${ALL_SCALE:-0}" = 1 ]; then
	log "scale (bench/scale.sh)"
	src=0
	bash "$BENCH/scale.sh" || src=$?
	[ "$src" = 0 ] || rc=$src
	export BENCH_SCALE_RESULT=$BENCH/results/scale/targets.tsv
	# Stopped before its report: say so in the table, not "not part of this run".
	[ -s "$BENCH_SCALE_RESULT" ] || printf 'bench/scale.sh stopped before its report (exit %s; see its output)\t\t-\tMISSED\n' "$src" \
		>"$BENCH_SCALE_RESULT"
fi
log "2/2: throughput and delivery (bench/run.sh)"
bash "$BENCH/run.sh" || rc=$?
exit $rc
