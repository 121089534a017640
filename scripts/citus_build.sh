#!/usr/bin/env bash
# scripts/citus_build.sh: build Citus once, from the source archive in
# ../shared/citus, into a private copy of PostgreSQL 15, and cache it.
#
#   bash scripts/citus_build.sh
#
# Never touches the system's PostgreSQL: PostgreSQL's binaries find their
# files relative to their own location, so /usr/lib/postgresql/15,
# /usr/share/postgresql/15 and /usr/include/postgresql copied under one
# prefix give a pg_config whose every path points into the copy; Citus is
# built against that pg_config and installed there. The prefix is
# $CITUS_CACHE/citus-<sha256 of the archive> (CITUS_CACHE defaults to
# /var/cache/provider_connections), so another archive gets another copy and
# the same archive is built once. A stamp file, written last, marks a copy as
# complete; a copy without it (an interrupted build) is made anew. Builds of
# the same archive are serialised by a lock file beside the prefix.
#
# Installs the build dependencies from Debian's packages when missing (see
# install_citus_deps). Configured --without-libcurl: libcurl serves only
# Citus's anonymous statistics collection and update check, which would
# call out to reports.citusdata.com from every test cluster.
#
# On success prints the line "CITUS_PREFIX=<prefix>" on stdout (everything
# else goes to stderr); PostgreSQL's binaries are in
# <prefix>/usr/lib/postgresql/15/bin. Where the archive is absent (a clone
# without ../shared/citus) it says how to get Citus and exits with status 77,
# which callers count as skipped.
#
# Environment: CITUS_ARCHIVE (default $TOP/../shared/citus/citus-13.2.2.tar.gz),
# CITUS_CACHE (see above).
#
# Copyright (c) 2026, provider_connections developers.
# Released under the PostgreSQL License (see LICENSE).
set -euo pipefail
. "$(dirname "$0")/common.sh"

CITUS_SKIP=77
ARCHIVE=${CITUS_ARCHIVE:-$TOP/../shared/citus/citus-13.2.2.tar.gz}

if [ ! -r "$ARCHIVE" ]; then
	cat >&2 <<EOF
citus_build.sh: no Citus source archive at $ARCHIVE; the Citus suite is skipped.
To run it, put Citus's source there (or set CITUS_ARCHIVE), e.g. from
https://github.com/citusdata/citus (tag v13.2.2, PostgreSQL 15-17):
  git clone --depth 1 --branch v13.2.2 https://github.com/citusdata/citus.git
  git -C citus archive --prefix=citus-13.2.2/ -o "$ARCHIVE" v13.2.2
Citus is AGPL-3.0: it is used to test, and none of its code is part of this project.
EOF
	exit "$CITUS_SKIP"
fi

# install_citus_deps: what building Citus against PostgreSQL 15's server
# headers needs on a minimal Debian 12, from Debian's packages. The -dev
# libraries are those pg_config --libs names (PGXS links Citus with them) and
# those Citus's configure looks for (lz4, zstd); libicu-dev: PostgreSQL's
# headers include ICU's. coreutils (sha256sum), tar, gzip and util-linux
# (flock) are essential packages, present on every Debian.
install_citus_deps() {
	local pkgs="postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR make gcc libc6-dev"
	pkgs="$pkgs liblz4-dev libzstd-dev libkrb5-dev libssl-dev libselinux1-dev libxslt1-dev"
	pkgs="$pkgs libxml2-dev libpam0g-dev libreadline-dev zlib1g-dev libicu-dev"
	local missing="" p
	for p in $pkgs; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	log "installing:$missing"
	as_root apt-get update -qq
	# shellcheck disable=SC2086
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

SHA=$(sha256sum "$ARCHIVE" | cut -d' ' -f1)
BASE=${CITUS_CACHE:-/var/cache/provider_connections}
PREFIX=$BASE/citus-$SHA
STAMP=$PREFIX/.provider_connections-citus-complete
PGDIR=$PREFIX/usr/lib/postgresql/$PG_MAJOR

as_root mkdir -p "$BASE"
exec 8>"$BASE/citus-$SHA.build.lock"
if ! flock -n 8; then
	log "waiting for another build of Citus in $PREFIX"
	flock 8
fi

if [ -f "$STAMP" ]; then
	log "reusing Citus in $PREFIX ($(sed -n 's/^citus=//p' "$STAMP"))"
	echo "CITUS_PREFIX=$PREFIX"
	exit 0
fi

T0=$(date +%s)
install_citus_deps
log "building Citus from $(basename "$ARCHIVE") into $PREFIX"
as_root rm -rf --one-file-system "$PREFIX"
as_root mkdir -p "$PREFIX/usr/lib/postgresql" "$PREFIX/usr/share/postgresql" "$PREFIX/usr/include"
as_root cp -a "/usr/lib/postgresql/$PG_MAJOR" "$PREFIX/usr/lib/postgresql/"
as_root cp -a "/usr/share/postgresql/$PG_MAJOR" "$PREFIX/usr/share/postgresql/"
as_root cp -a /usr/include/postgresql "$PREFIX/usr/include/"
PG_CONFIG=$PGDIR/bin/pg_config
# The copy must answer for itself, or make install would write into the
# system's PostgreSQL.
for d in --pkglibdir --sharedir --includedir-server; do
	case "$("$PG_CONFIG" "$d")" in
	"$PREFIX"/*) ;;
	*)
		echo "citus_build.sh: $PG_CONFIG $d is $("$PG_CONFIG" "$d"), outside $PREFIX; not building" >&2
		exit 1
		;;
	esac
done

SRC=$(mktemp -d /tmp/provider_connections.citus-build.XXXXXX)
trap 'rm -rf "$SRC"' EXIT
tar -xzf "$ARCHIVE" -C "$SRC"
dir=$(find "$SRC" -mindepth 1 -maxdepth 1 -type d | head -n 1)
buildlog=$SRC/build.log
# PostgreSQL 15.20's commands/dbcommands.h exports have_createdb_privilege(),
# which Citus 13.2.2 (released against an earlier 15.x) defines itself as a
# static inline in pg_version_compat.h for servers before 16: "static
# declaration follows non-static declaration". Where the server's header
# declares it, the build tree's copy is renamed (left unused), so Citus
# calls the server's function, which does the same check. Only the
# extracted build tree is changed; the archive stays as it is.
compat=$dir/src/include/pg_version_compat.h
if grep -q '^extern bool have_createdb_privilege(void);' \
	"$("$PG_CONFIG" --includedir-server)/commands/dbcommands.h" &&
	grep -q '^have_createdb_privilege(void)$' "$compat"; then
	log "renaming Citus's own have_createdb_privilege (the server exports one)"
	sed -i 's/^have_createdb_privilege(void)$/citus_unused_have_createdb_privilege(void)/' "$compat"
fi
# with_llvm=no: PGXS would also compile LLVM bitcode for JIT inlining,
# nearly three times the build time, for nothing a test uses.
if ! (cd "$dir" && ./configure PG_CONFIG="$PG_CONFIG" --without-libcurl &&
	make -j2 with_llvm=no && as_root make install with_llvm=no) >"$buildlog" 2>&1; then
	tail -n 60 "$buildlog" >&2
	echo "citus_build.sh: building Citus failed (log above)" >&2
	exit 1
fi
for f in "$("$PG_CONFIG" --pkglibdir)/citus.so" "$("$PG_CONFIG" --sharedir)/extension/citus.control"; do
	[ -e "$f" ] || { echo "citus_build.sh: $f missing after make install" >&2; exit 1; }
done
version=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$("$PG_CONFIG" --sharedir)/extension/citus.control")
{
	echo "archive=$(basename "$ARCHIVE")"
	echo "sha256=$SHA"
	echo "citus=$version"
	echo "postgresql=$("$PG_CONFIG" --version)"
	echo "build_seconds=$(($(date +%s) - T0))"
} | as_root tee "$STAMP.tmp" >/dev/null
as_root mv "$STAMP.tmp" "$STAMP"
log "Citus $version built in $(($(date +%s) - T0)) s"
echo "CITUS_PREFIX=$PREFIX"
