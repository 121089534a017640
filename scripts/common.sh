# scripts/common.sh: shared by demo.sh, test.sh and .ci/run.
# Installs what the project needs from Debian's packages, builds and installs
# the extension, and runs a throwaway PostgreSQL cluster on a private socket
# directory. Source it; it defines functions and changes nothing by itself.

PG_MAJOR=${PG_MAJOR:-15}
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() { printf '==> %s\n' "$*" >&2; }

# as_root CMD...: run as root, through sudo when we are not root.
as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_deps() {
	# Debian ships contrib (pgcrypto) inside postgresql-NN.
	local pkgs="postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR make gcc libc6-dev"
	local missing=""
	for p in $pkgs; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	log "installing:$missing"
	as_root apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

build_install() {
	log "building provider_connections"
	make -C "$TOP" -s clean >/dev/null
	make -C "$TOP" -s PG_CONFIG="$PG_BIN/pg_config" ${EXTRA_CFLAGS:+PG_CFLAGS="$EXTRA_CFLAGS"} >/dev/null
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
start_cluster() {
	CLUSTER_DIR=$(mktemp -d /tmp/provider_connections.XXXXXX)
	chmod 755 "$CLUSTER_DIR"
	[ "$(id -u)" -eq 0 ] && chown postgres: "$CLUSTER_DIR"
	export CLUSTER_DIR PGHOST=$CLUSTER_DIR PGPORT=${PGPORT:-54329} PGUSER=postgres PGDATABASE=postgres
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
log_line_prefix = '%m [%p] %q%a '
CONF
	as_pg "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/server.log" -w start >/dev/null
	trap stop_cluster EXIT
}

# init_sibling_cluster DIR PORT: initdb a cluster in DIR for PORT, with the
# main cluster's preload and key file (dump/restore and valgrind need both).
init_sibling_cluster() {
	chmod 755 "$1"
	[ "$(id -u)" -eq 0 ] && chown postgres: "$1"
	as_pg "$PG_BIN/initdb" -D "$1/data" -U postgres -A trust --no-sync >/dev/null
	write_key_file "$1/data/provider_connections.key" "$(as_pg cat "$CLUSTER_DIR/data/provider_connections.key")"
	{
		grep -E "^(shared_preload_libraries|provider_connections\.encryption_key_file) " "$CLUSTER_DIR/data/postgresql.conf"
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$1'"
		echo "port = $2"
		echo "fsync = off"
	} | as_pg tee -a "$1/data/postgresql.conf" >/dev/null
}

# start_second_cluster PORT: another throwaway cluster with the same key, for
# dump and restore. Sets SECOND_DIR; stop it with stop_second_cluster.
start_second_cluster() {
	SECOND_DIR=$(mktemp -d /tmp/provider_connections.XXXXXX)
	init_sibling_cluster "$SECOND_DIR" "$1"
	as_pg "$PG_BIN/pg_ctl" -D "$SECOND_DIR/data" -l "$SECOND_DIR/server.log" -w start >/dev/null
}

stop_second_cluster() {
	[ -n "${SECOND_DIR:-}" ] || return 0
	as_pg "$PG_BIN/pg_ctl" -D "$SECOND_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
	rm -rf "$SECOND_DIR"
	SECOND_DIR=
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

# For the script tests in test/: a fresh database with the extension.
fresh_db() {
	psql -qX -d postgres -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null
	psql -qX -d "$1" -c "CREATE EXTENSION provider_connections CASCADE" 2>/dev/null
}

# check NAME SQL: run SQL (one boolean); print and fail unless it is true.
check() {
	local got
	got=$(psql -qAtX -v ON_ERROR_STOP=1 -c "$2" 2>&1) || got="error: $got"
	if [ "$got" = "t" ]; then
		echo "  ok: $1"
	else
		echo "  FAILED: $1 ($got)"
		CHECKS_FAILED=$((${CHECKS_FAILED:-0} + 1))
	fi
}
