# scripts/common.sh: shared by demo.sh, test.sh and .ci/run.
# Installs what the project needs from Debian's packages, builds and installs
# the extension, and runs a throwaway PostgreSQL cluster on a private socket
# directory. Source it; it defines functions and changes nothing by itself.
#
# Copyright (c) 2026, provider_connections developers.
# Released under the PostgreSQL License (see LICENSE).

PG_MAJOR=${PG_MAJOR:-15}
# PG_BIN given by the caller: the installation to build against and install
# into, as given. Not given: Debian's, which private_pg replaces by a copy.
PC_PG_BIN_GIVEN=${PG_BIN:+1}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/$PG_MAJOR/bin}
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() { printf '==> %s\n' "$*" >&2; }

# as_root CMD...: run as root, through sudo when we are not root.
as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_deps() {
	# Debian ships contrib (pgcrypto) inside postgresql-NN.
	# perl (prove) and libipc-run-perl: the TAP tests (t/) run on
	# PostgreSQL::Test::Cluster, which the server headers package ships and
	# which needs IPC::Run; valgrind: t/*_valgrind.pl. pg_cron: a test
	# schedules the maintenance functions as the README does;
	# python3-psycopg: examples/consumer.py; wal2json: the README's
	# change data capture example. git: scripts/chroot_test.sh calls it, and
	# a minimal Debian lacks it. prometheus-postgres-exporter: t/017 runs it
	# with examples/postgres_exporter.yml (perl-modules, with perl, has the
	# HTTP::Tiny that scrapes it).
	local pkgs="postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR make gcc libc6-dev perl libipc-run-perl valgrind"
	pkgs="$pkgs git"
	pkgs="$pkgs postgresql-$PG_MAJOR-cron postgresql-$PG_MAJOR-wal2json python3-psycopg"
	pkgs="$pkgs prometheus-postgres-exporter"
	local missing=""
	for p in $pkgs; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	log "installing:$missing"
	as_root apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

# private_pg: unless the caller gave PG_BIN, copies Debian's PostgreSQL
# (/usr/lib/postgresql/NN, /usr/share/postgresql/NN and the server headers in
# /usr/include/postgresql, about 60 MB) into a fresh directory
# ${TMPDIR:-/tmp}/provider_connections.pg.XXXXXX and points PG_BIN at the
# copy (not exported: pass it to a script that should use the copy), so that build_install installs
# there and never replaces a library the system's servers may have loaded.
# PostgreSQL finds its files relative to its binaries, so the copy works
# where it lies. Call it after install_deps: what that installs (pgcrypto,
# pg_cron, wal2json) is copied with the rest. private_pg_cleanup removes the
# copy, unless KEEP_CLUSTER is set.
private_pg() {
	[ -z "${PC_PG_BIN_GIVEN:-}" ] || return 0
	PC_PG_PREFIX=$(mktemp -d "${TMPDIR:-/tmp}/provider_connections.pg.XXXXXX")
	chmod 755 "$PC_PG_PREFIX"
	log "copying PostgreSQL $PG_MAJOR into $PC_PG_PREFIX (removed at exit); the system's stays untouched"
	mkdir -p "$PC_PG_PREFIX/usr/lib/postgresql" "$PC_PG_PREFIX/usr/share/postgresql" "$PC_PG_PREFIX/usr/include"
	cp -a "/usr/lib/postgresql/$PG_MAJOR" "$PC_PG_PREFIX/usr/lib/postgresql/"
	cp -a "/usr/share/postgresql/$PG_MAJOR" "$PC_PG_PREFIX/usr/share/postgresql/"
	cp -a /usr/include/postgresql "$PC_PG_PREFIX/usr/include/"
	PG_BIN=$PC_PG_PREFIX/usr/lib/postgresql/$PG_MAJOR/bin
}

private_pg_cleanup() {
	[ -n "${PC_PG_PREFIX:-}" ] || return 0
	if [ -n "${KEEP_CLUSTER:-}" ]; then
		log "private PostgreSQL kept in $PC_PG_PREFIX"
	else
		rm -rf "$PC_PG_PREFIX"
	fi
	PC_PG_PREFIX=
}

build_install() {
	log "building provider_connections"
	make -C "$TOP" -s clean >/dev/null
	make -C "$TOP" -s PG_CONFIG="$PG_BIN/pg_config" ${EXTRA_CFLAGS:+PG_CFLAGS="$EXTRA_CFLAGS"} >/dev/null
	# make install adds files and never removes one: scripts a past build
	# installed (provider_connections--1.2.sql, say) would keep answering
	# CREATE EXTENSION ... VERSION in the tests after this tree dropped them.
	as_root rm -f "$("$PG_BIN/pg_config" --sharedir)"/extension/provider_connections--*.sql
	as_root make -C "$TOP" -s PG_CONFIG="$PG_BIN/pg_config" install >/dev/null
}

# The server refuses to run as root; the cluster belongs to the postgres user.
# From /: the checkout may sit where postgres cannot enter (e.g. /root).
as_pg() {
	if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

# write_key_file PATH [KEY]: a key file the server accepts (0600, owned by
# the server's user); a random key unless KEY is given.
write_key_file() {
	local key=${2:-$(head -c 48 /dev/urandom | od -An -tx1 | tr -d ' \n')}
	printf '%s\n' "$key" | as_pg tee "$1" >/dev/null
	as_pg chmod 600 "$1"
}

# start_cluster: sets CLUSTER_DIR, PGHOST, PGPORT, PGUSER, PGDATABASE.
# The cluster listens on its own socket directory only (no TCP), so no
# other server can hold its port there; PGPORT, if set, is used, else a
# random port from 49152-65151 (the port shows in the socket's name only).
# PC_EXTRA_CONF: more postgresql.conf lines, for a diagnosis (auto_explain, say).
# wal_level = logical: sql/subscriber.sql subscribes one database to another.
start_cluster() {
	CLUSTER_DIR=$(mktemp -d /tmp/provider_connections.XXXXXX)
	chmod 755 "$CLUSTER_DIR"
	[ "$(id -u)" -eq 0 ] && chown postgres: "$CLUSTER_DIR"
	export CLUSTER_DIR PGHOST=$CLUSTER_DIR PGPORT=${PGPORT:-$((49152 + RANDOM % 16000))} PGUSER=postgres PGDATABASE=postgres
	log "starting a throwaway cluster in $CLUSTER_DIR"
	as_pg "$PG_BIN/initdb" -D "$CLUSTER_DIR/data" -U postgres -A trust --no-sync >/dev/null
	write_key_file "$CLUSTER_DIR/data/provider_connections.key"
	as_pg tee -a "$CLUSTER_DIR/data/postgresql.conf" >/dev/null <<CONF
listen_addresses = ''
unix_socket_directories = '$CLUSTER_DIR'
port = $PGPORT
shared_preload_libraries = 'provider_connections'
provider_connections.encryption_key_file = 'provider_connections.key'
max_prepared_transactions = 10
fsync = off
wal_level = logical
log_line_prefix = '%m [%p] %q%a '
${PC_EXTRA_CONF:-}
CONF
	as_pg "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/server.log" -w start >/dev/null
	trap 'stop_cluster; private_pg_cleanup' EXIT
}

stop_cluster() {
	[ -n "${CLUSTER_DIR:-}" ] || return 0
	as_pg "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
	if [ -n "${KEEP_CLUSTER:-}" ]; then
		log "cluster kept in $CLUSTER_DIR"
	else
		rm -rf "$CLUSTER_DIR"
	fi
	CLUSTER_DIR=
}

# The TAP tests (t/*.pl) run as the server's user: initdb refuses root. The
# checkout may be closed to that user (e.g. under /root), so they run from a
# copy: tap_prepare copies what they read (t/, README.md, docs/, examples/, and sql/, expected/, src/ and
# the Makefile for the valgrind run of the regression suite) into a fresh
# directory that user owns, and sets TAP_DIR; tap_prove runs prove there,
# with the environment PGXS's prove_installcheck gives it. Each test leaves
# its log in $TAP_DIR/tmp_check/log/regress_log_<test> and its servers' logs
# beside it.
tap_prepare() {
	TAP_DIR=$(mktemp -d /tmp/provider_connections.tap.XXXXXX)
	(cd "$TOP" && tar cf - t sql expected Makefile README.md docs src/*.c src/*.h $(ls -d examples 2>/dev/null)) | tar xf - -C "$TAP_DIR"
	chmod 755 "$TAP_DIR"
	if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$TAP_DIR"; fi
}

# tap_prove ARGS...: prove with PostgreSQL's Perl test modules, in TAP_DIR;
# killed after TAP_TIMEOUT seconds (default 900) should a test hang.
tap_prove() {
	local pgxs_src
	pgxs_src=$(dirname "$(dirname "$("$PG_BIN/pg_config" --pgxs)")")
	as_pg env -C "$TAP_DIR" TESTDIR="$TAP_DIR" PATH="$PG_BIN:$PATH" \
		PG_REGRESS="$pgxs_src/test/regress/pg_regress" \
		timeout "${TAP_TIMEOUT:-900}" prove -I "$pgxs_src/test/perl" -I t ${PROVE_FLAGS:-} "$@"
}

# tap_cleanup: removes TAP_DIR, unless KEEP_CLUSTER or TAP_KEEP (set when a
# TAP test failed) is set.
tap_cleanup() {
	[ -n "${TAP_DIR:-}" ] || return 0
	if [ -n "${KEEP_CLUSTER:-}${TAP_KEEP:-}" ]; then
		log "TAP test files and logs kept in $TAP_DIR"
	else
		rm -rf "$TAP_DIR"
	fi
	TAP_DIR=
}

# For the benchmarks (bench/): a fresh database with the extension.
fresh_db() {
	psql -qX -d postgres -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null
	psql -qX -d "$1" -c "CREATE EXTENSION provider_connections CASCADE" 2>/dev/null
}
