#!/usr/bin/env bash
# test/valgrind.sh: the pg_regress suite against a server running under
# valgrind memcheck. PostgreSQL from Debian is not built for valgrind, so the
# server itself reports known noise (e.g. uninitialised padding written to
# WAL); this fails on any error whose stack passes through our library:
# invalid reads or writes, uses of uninitialised values, bad frees.
set -euo pipefail
. "$(dirname "$0")/../scripts/common.sh"
command -v valgrind >/dev/null || {
	as_root apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
}

dir=$(mktemp -d /tmp/provider_connections.vg.XXXXXX)
port=$((PGPORT + 2))
trap 'as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
init_sibling_cluster "$dir" "$port"
echo "max_connections = 20" | as_pg tee -a "$dir/data/postgresql.conf" >/dev/null

as_pg bash -c "valgrind --quiet --error-limit=no --num-callers=40 --track-origins=no \
	--log-file='$dir/vg.%p.log' '$PG_BIN/postgres' -D '$dir/data' >'$dir/server.log' 2>&1 &"
for _ in $(seq 1 120); do
	PGHOST=$dir PGPORT=$port psql -qAtX -d postgres -c "SELECT 1" >/dev/null 2>&1 && break
	sleep 1
done

out=$(mktemp -d)
regress=$(dirname "$("$PG_BIN/pg_config" --pgxs)")/../test/regress/pg_regress
tests=$(sed -n 's/^REGRESS = //p; /^\t[a-z_ ]*$/p' "$TOP/Makefile" | tr -d '\\\t')
start=$(date +%s)
if PGHOST=$dir PGPORT=$port "$regress" --inputdir="$TOP" --outputdir="$out" \
	--bindir="$PG_BIN" --load-extension=pgcrypto --dbname=contrib_regression $tests >"$out/log" 2>&1; then
	echo "  regression suite passed under valgrind in $(( $(date +%s) - start )) s"
else
	echo "  FAILED: regression suite under valgrind"; cat "$out/log"; CHECKS_FAILED=1
fi
rm -rf "$out"
as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 120 stop >/dev/null 2>&1 || true

# Each valgrind report is a block ending in a blank "==pid== " line. A frame
# is ours if it names our library or, with debug info, one of our sources.
ours_re="provider_connections\\.so|\\(($(cd "$TOP/src" && ls *.c | sed 's/\.c$//' | paste -sd'|'))\\.c:[0-9]+\\)"
ours_in() {
	awk -v re="$ours_re" '/^==[0-9]+== $/ { if (block ~ re) print block; block = ""; next }
		{ block = block $0 "\n" } END { if (block ~ re) print block }' "$@"
}
# The detector itself must see a report in our code.
printf '==1== Invalid read of size 8\n==1==    at 0x1: pc_open (crypto.c:170)\n==1== \n' >"$dir/probe"
[ -n "$(ours_in "$dir/probe")" ] || { echo "  FAILED: the report filter misses our frames"; exit 1; }
rm -f "$dir/probe"

ours=$(ours_in "$dir"/vg.*.log)
total=$(cat "$dir"/vg.*.log | grep -cE '^==[0-9]+== [A-Z]' || true)
if [ -z "$ours" ]; then
	echo "  ok: no valgrind error in provider_connections ($total reports elsewhere in the server, none through our code)"
else
	echo "  FAILED: valgrind errors in provider_connections:"; echo "$ours" | head -80
	CHECKS_FAILED=1
fi
[ "${CHECKS_FAILED:-0}" -eq 0 ]
