#!/usr/bin/env bash
# scripts/test.sh: run every test of provider_connections on a fresh machine.
# What it does to the machine: installs the build, server and test packages
# if missing (apt, through sudo when not root); copies PostgreSQL 15 into a
# temporary directory (common.sh's private_pg, about 60 MB) and builds and
# installs the extension there, never into the system's PostgreSQL; starts a
# throwaway cluster on a private socket directory; runs the pg_regress and
# isolation suites (make installcheck) against it, the check that src/ has
# no import cycle (scripts/include_cycles.py), the PGXN check
# (scripts/meta_check.py: META.json and the zip of make dist, made in a
# temporary directory), then the TAP tests under t/ (each makes its own
# clusters), the benchmark smoke, and the pg_regress and isolation suites
# again on PostgreSQL 17 and 18 in Debian chroots (scripts/chroot_test.sh:
# debootstrapped once into /var/cache/provider_connections, about 1.5 GB
# each, and kept there for the next run; PC_SKIP_CHROOTS=1 skips them), the
# Citus suite on a coordinator and two workers (scripts/citus_test.sh;
# skipped without ../shared/citus, or with PC_SKIP_CITUS=1), and the Debian
# packages for 15, 17 and 18 built and tested as installed in fresh chroots
# (scripts/deb_test.sh, chroots in the same cache; PC_SKIP_CHROOTS=1 skips
# them too); then stops the
# cluster, removes the copy and the temporary directories (KEEP_CLUSTER=1
# keeps them) and ends with the line "N passed, M failed". Exits non-zero
# on any failure, after printing what explains it: regression.diffs, a
# failed TAP test's log and its servers' log tails.
#
# Counted: each pg_regress or isolation test, each run of the import-cycle
# check and of the PGXN check, each TAP test file (a file passes when all
# its assertions do; prove prints them), each test of the chroot runs, each
# check of the Citus suite and each version of the Debian package check. A part skipped (PC_SKIP_CHROOTS,
# PC_SKIP_CITUS) prints a "skipped" line and is counted neither way; CI
# (.ci/run) sets neither.
#
# Copyright (c) 2026, provider_connections developers.
# Released under the PostgreSQL License (see LICENSE).
set -euo pipefail
. "$(dirname "$0")/common.sh"

install_deps
private_pg
trap private_pg_cleanup EXIT
build_install
start_cluster
trap 'tap_cleanup; stop_cluster; private_pg_cleanup' EXIT

passed=0
failed=0
out=$(mktemp)
# pg_regress runs as the invoking user and writes its results in the tree.
# TAP_TESTS= : the TAP tests run below, as the server's user.
if make -C "$TOP" PG_CONFIG="$PG_BIN/pg_config" TAP_TESTS= installcheck >"$out" 2>&1; then rc=0; else rc=$?; fi
cat "$out"
# PostgreSQL 15 prints "test x ... ok"; 16 and later print TAP lines.
p=$(grep -cE '(\.\.\. +ok|^ok [0-9]+ )' "$out" || true)
f=$(grep -cE '(\.\.\. +FAILED|^not ok [0-9]+ )' "$out" || true)
passed=$((passed + p))
failed=$((failed + f))
if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then failed=$((failed + 1)); fi
for d in "$TOP/regression.diffs" "$TOP/output_iso/regression.diffs"; do
	[ -s "$d" ] && { echo "---- $d"; cat "$d"; }
done
if [ "$rc" -ne 0 ]; then
	echo "---- server log (last 40 lines)"
	tail -n 40 "$CLUSTER_DIR/server.log" || true
fi
rm -f "$out"

# No import cycle among the files of src/, and the check itself goes red on
# one planted in a copy of src/.
for mode in "" --self-test; do
	name="include_cycles${mode:+ $mode}"
	if python3 "$TOP/scripts/include_cycles.py" $mode; then
		echo "script $name ... ok"
		passed=$((passed + 1))
	else
		echo "script $name ... FAILED"
		failed=$((failed + 1))
	fi
done

# The PGXN distribution: META.json against the Meta Spec, its versions
# against the control file, and the zip "make dist" makes; and the check
# itself goes red on planted errors.
for mode in "" --self-test; do
	name="meta_check${mode:+ $mode}"
	if PG_CONFIG="$PG_BIN/pg_config" python3 "$TOP/scripts/meta_check.py" $mode; then
		echo "script $name ... ok"
		passed=$((passed + 1))
	else
		echo "script $name ... FAILED"
		failed=$((failed + 1))
	fi
done

# TAP tests: one prove per file, as the server's user, from a copy of the
# tree (see tap_prepare in common.sh).
tap_prepare
for t in "$TAP_DIR"/t/*.pl; do
	[ -e "$t" ] || continue
	name=$(basename "$t" .pl)
	start=$(date +%s)
	if tap_prove "t/$name.pl"; then
		echo "tap $name ... ok ($(( $(date +%s) - start )) s)"
		passed=$((passed + 1))
	else
		echo "tap $name ... FAILED ($(( $(date +%s) - start )) s)"
		failed=$((failed + 1))
		TAP_KEEP=1
		logdir="$TAP_DIR/tmp_check/log"
		if [ -r "$logdir/regress_log_$name" ]; then
			echo "---- $name: test log (last 150 lines; whole: $logdir/regress_log_$name)"
			grep -v '^# Checking port' "$logdir/regress_log_$name" | tail -n 150
		fi
		for l in "$logdir/${name}"_*.log; do
			[ -e "$l" ] || continue
			echo "---- $name: server log $(basename "$l") (last 40 lines)"
			tail -n 40 "$l"
		done
	fi
done

# The benchmark harness, briefly (BENCH_SMOKE: seconds per run, no figures
# kept): it fails if a run fails or the listener misses or duplicates an
# event, in commit and in worker mode. It starts a cluster of its own.
smoke_log=$(mktemp)
start=$(date +%s)
if PG_BIN="$PG_BIN" BENCH_SMOKE=1 BENCH_NO_BUILD=1 PGPORT=$((PGPORT + 12)) bash "$TOP/bench/run.sh" >"$smoke_log" 2>&1; then
	echo "bench smoke ... ok ($(( $(date +%s) - start )) s)"
	passed=$((passed + 1))
else
	echo "bench smoke ... FAILED ($(( $(date +%s) - start )) s)"
	failed=$((failed + 1))
	tail -n 60 "$smoke_log"
fi
rm -f "$smoke_log"

# suite LABEL SCRIPT ARGS...: run a script that ends with its own "N passed,
# M failed" line, show its output and add its counts. Exit 77 means
# skipped (no Citus archive), counted neither way; a failing exit with no
# failure counted, or no count line at all, counts as one failure.
suite() {
	local label=$1 script=$2 out rc last start
	shift 2
	out=$(mktemp)
	start=$(date +%s)
	if bash "$TOP/scripts/$script" "$@" >"$out" 2>&1; then rc=0; else rc=$?; fi
	last=$(tail -n 1 "$out")
	if [ "$rc" -eq 77 ]; then
		cat "$out"
		echo "$label: skipped ($(( $(date +%s) - start )) s)"
	elif [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
		sed '$d' "$out"
		echo "$label: $last ($(( $(date +%s) - start )) s)"
		passed=$((passed + BASH_REMATCH[1]))
		failed=$((failed + BASH_REMATCH[2]))
		if [ "$rc" -ne 0 ] && [ "${BASH_REMATCH[2]}" -eq 0 ]; then failed=$((failed + 1)); fi
	else
		cat "$out"
		echo "$label: scripts/$script ended early (exit $rc)"
		failed=$((failed + 1))
	fi
	rm -f "$out"
}

# PostgreSQL 17 (trixie) and 18 (sid), each in a Debian chroot kept in
# /var/cache/provider_connections (scripts/chroot_test.sh): the pg_regress
# and isolation suites. Then the Debian packages (scripts/deb_test.sh):
# built for 15 (bookworm), 17 (trixie) and 18 (sid), each installed in a
# fresh chroot with only Debian's postgresql-NN and tested there, one check
# per version. PC_SKIP_CHROOTS=1 skips both, counted neither way.
if [ -n "${PC_SKIP_CHROOTS:-}" ]; then
	echo "PostgreSQL 17 and 18 (chroots), Debian packages: skipped (PC_SKIP_CHROOTS is set)"
else
	suite "PostgreSQL 17 (chroot)" chroot_test.sh 17
	suite "PostgreSQL 18 (chroot)" chroot_test.sh 18
fi

# Citus: a coordinator and two workers (scripts/citus_test.sh), Citus built
# once from ../shared/citus and cached. Each check of its suite counts as a
# test, as each pg_regress test of the chroot runs does. Without the Citus
# archive (a user's clone) the suite is skipped (exit 77), counted neither
# way.
if [ -n "${PC_SKIP_CITUS:-}" ]; then
	echo "Citus suite: skipped (PC_SKIP_CITUS is set)"
else
	suite "Citus suite" citus_test.sh
fi

[ -n "${PC_SKIP_CHROOTS:-}" ] || suite "Debian packages" deb_test.sh 15 17 18

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
