#!/usr/bin/env bash
# scripts/test.sh: run every test of provider_connections on a fresh machine.
# Installs the build and server packages if missing, builds, starts a
# throwaway cluster, runs the pg_regress and isolation suites
# (make installcheck) and the script tests under test/, stops the cluster,
# and ends with the line "N passed, M failed". Exits non-zero on any failure.
set -euo pipefail
. "$(dirname "$0")/common.sh"

install_deps
build_install
start_cluster

passed=0
failed=0
out=$(mktemp)
# pg_regress runs as the invoking user and writes its results in the tree.
if make -C "$TOP" PG_CONFIG="$PG_BIN/pg_config" installcheck >"$out" 2>&1; then rc=0; else rc=$?; fi
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
rm -f "$out"

# Script tests: each prints its own check lines and exits non-zero on failure.
for t in "$TOP"/test/*.sh; do
	[ -e "$t" ] || continue
	name=$(basename "$t" .sh)
	if bash "$t"; then
		echo "script $name ... ok"
		passed=$((passed + 1))
	else
		echo "script $name ... FAILED"
		failed=$((failed + 1))
	fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
