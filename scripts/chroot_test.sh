#!/usr/bin/env bash
# scripts/chroot_test.sh: run the pg_regress and isolation suites
# (make installcheck, without the TAP tests) on a newer PostgreSQL than the
# host's, in a Debian chroot: 17 in trixie, 18 in sid.
#
#   bash scripts/chroot_test.sh 17|18
#
# The chroot is made once with debootstrap (minbase, then postgresql-NN,
# postgresql-server-dev-NN, make, gcc and libc6-dev from apt) and kept in
# /var/cache/provider_connections/chroot-SUITE; a stamp file written at the
# end of a successful set-up marks it complete, and one without the stamp is
# made anew. Each run copies the work tree as it is (the files git tracks or
# would track: uncommitted changes and new files included, ignored ones not)
# into a fresh directory in the chroot, builds it there with common.sh's
# build_install (EXTRA_CFLAGS as .ci/run sets it), starts a throwaway cluster
# with common.sh's start_cluster (port 55400 + NN, or CHROOT_PGPORT), runs
# make installcheck TAP_TESTS= and stops the cluster. /proc, /dev, /dev/shm
# and /dev/pts are mounted in the chroot for the run and unmounted at the
# end, on failure too. Prints regression.diffs on failure and ends with the
# line "N passed, M failed", counted as scripts/test.sh counts; exits
# non-zero on any failure. The copy is removed after a passing run and kept
# after a failing one (until the next run).
#
# Environment: CHROOT_EXTRA_PKGS adds packages to the chroot, NN in a name
# standing for the major version (e.g. "postgresql-NN-cron"); a chroot made
# before gets those it lacks. CHROOT_PATCHES=DIR applies DIR/*.patch
# (patch -p1, in name order) to the copy before building, to try a change
# without touching the tree; CHROOT_BASE (default /var/cache/provider_connections) and
# DEBIAN_MIRROR (default http://deb.debian.org/debian) say where the chroots
# live and come from; CHROOT_PGPORT (default 55400 + NN) is the cluster's
# port; CHROOT_TIMEOUT (default 1800) bounds the run in the chroot in
# seconds; KEEP_CLUSTER as in common.sh.
#
# Copyright (c) 2026, provider_connections developers.
# Released under the PostgreSQL License (see LICENSE).
set -euo pipefail

case "${1:-}" in
17) SUITE=trixie ;;
18) SUITE=sid ;;
*)
	echo "usage: bash $0 17|18" >&2
	exit 2
	;;
esac
# debootstrap, chroot and mount need root.
if [ "$(id -u)" -ne 0 ]; then exec sudo -E bash "$0" "$@"; fi
PG_MAJOR=$1
. "$(dirname "$0")/common.sh"

BASE=${CHROOT_BASE:-/var/cache/provider_connections}
ROOT=$BASE/chroot-$SUITE
STAMP=$ROOT/.provider_connections-chroot-complete
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Not PGPORT: scripts/test.sh exports its own cluster's.
PORT=${CHROOT_PGPORT:-$((55400 + PG_MAJOR))}
PKGS="postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR make gcc libc6-dev"
EXTRA_PKGS=${CHROOT_EXTRA_PKGS:-}
PKGS="$PKGS ${EXTRA_PKGS//NN/$PG_MAJOR}"
CHROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
T0=$(date +%s)

# in_chroot CMD...: run CMD in the chroot as root, in a clean environment.
in_chroot() {
	chroot "$ROOT" /usr/bin/env -i PATH="$CHROOT_PATH" HOME=/root LANG=C.UTF-8 \
		DEBIAN_FRONTEND=noninteractive "$@"
}

# Mount points at or under ROOT, deepest first.
chroot_mounts() {
	awk -v r="$ROOT" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r
}

mount_chroot() {
	mount -t proc proc "$ROOT/proc"
	mount --bind /dev "$ROOT/dev"
	mount -t tmpfs -o nosuid,nodev,mode=1777 shm "$ROOT/dev/shm"
	mount --bind /dev/pts "$ROOT/dev/pts"
}

# umount_chroot: stop a server a killed run left behind, then unmount
# whatever is mounted under ROOT (debootstrap's own mounts too).
umount_chroot() {
	local pid m
	for pid in "$ROOT"/tmp/provider_connections.*/data/postmaster.pid; do
		[ -e "$pid" ] && [ -e "$ROOT/proc/self" ] || continue
		in_chroot runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$(dirname "${pid#"$ROOT"}")" \
			-m immediate -w stop >/dev/null 2>&1 || true
	done
	for m in $(chroot_mounts); do
		umount "$m" 2>/dev/null || umount -l "$m" || true
	done
}

# The packages of PKGS the chroot lacks.
missing_pkgs() {
	local p
	for p in $PKGS; do
		in_chroot dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || printf ' %s' "$p"
	done
}

# chroot_install PKG...: with the chroot mounted. No service is started and
# postgresql-common makes no cluster of its own.
chroot_install() {
	printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
	chmod 755 "$ROOT/usr/sbin/policy-rc.d"
	mkdir -p "$ROOT/etc/postgresql-common/createcluster.d"
	echo 'create_main_cluster = false' >"$ROOT/etc/postgresql-common/createcluster.d/provider_connections.conf"
	# sid's Release is valid for a week: the mirror may serve one that a
	# clock ahead of it, or a mirror behind, sees as expired. Still signed.
	echo 'Acquire::Check-Valid-Until "false";' >"$ROOT/etc/apt/apt.conf.d/99provider_connections"
	cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
	in_chroot apt-get update -qq
	in_chroot apt-get install -y -qq --no-install-recommends "$@" >/dev/null
	in_chroot apt-get clean
}

setup_chroot() {
	local missing
	if [ -f "$STAMP" ]; then
		missing=$(missing_pkgs)
		if [ -z "$missing" ]; then
			log "reusing the $SUITE chroot in $ROOT"
			return 0
		fi
		log "installing in the $SUITE chroot:$missing"
		mount_chroot
		# shellcheck disable=SC2086
		chroot_install $missing
		umount_chroot
		# shellcheck disable=SC2086
		in_chroot dpkg-query -W $PKGS >"$STAMP"
		return 0
	fi
	if ! command -v debootstrap >/dev/null; then
		log "installing debootstrap"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
	fi
	umount_chroot
	if [ -n "$(chroot_mounts)" ]; then
		echo "still mounted under $ROOT; not removing it" >&2
		exit 1
	fi
	log "making the $SUITE chroot in $ROOT (debootstrap)"
	rm -rf --one-file-system "$ROOT"
	mkdir -p "$ROOT"
	if ! debootstrap --variant=minbase --components=main "$SUITE" "$ROOT" "$MIRROR" >"$BASE/debootstrap-$SUITE.log" 2>&1; then
		tail -n 30 "$BASE/debootstrap-$SUITE.log" >&2
		exit 1
	fi
	log "installing in the $SUITE chroot: $PKGS"
	mount_chroot
	# shellcheck disable=SC2086
	chroot_install $PKGS
	umount_chroot
	# shellcheck disable=SC2086
	in_chroot dpkg-query -W $PKGS >"$STAMP"
	log "$SUITE chroot made in $(($(date +%s) - T0)) s"
}

# chroot_run: runs in the chroot (bash -c, its definition copied there), in
# the copy of the tree, as root; common.sh comes from that copy.
chroot_run() {
	set -euo pipefail
	# So that start_cluster's EXIT trap stops the cluster then too.
	trap 'exit 130' INT
	trap 'exit 143' TERM
	. "$SRC/scripts/common.sh"
	MAKEFLAGS=-j2 build_install
	start_cluster
	if make -C "$TOP" PG_CONFIG="$PG_BIN/pg_config" TAP_TESTS= installcheck; then
		return 0
	else
		local rc=$?
		echo "---- server log (last 40 lines)"
		tail -n 40 "$CLUSTER_DIR/server.log" || true
		return "$rc"
	fi
}

mkdir -p "$BASE"
exec 9>"$BASE/chroot-$SUITE.lock"
if ! flock -n 9; then
	log "waiting for another run in the $SUITE chroot"
	flock 9
fi
# On a signal too: end the run in the chroot (its cluster stops), unmount.
RUN_PID=
out=
cleanup() {
	if [ -n "$RUN_PID" ]; then
		kill -TERM "$RUN_PID" 2>/dev/null || true
		wait "$RUN_PID" 2>/dev/null || true
	fi
	umount_chroot
	[ -z "$out" ] || rm -f "$out"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP
setup_chroot
T1=$(date +%s)
log "chroot ready in $((T1 - T0)) s"

# A fresh copy of the tree; copies older runs kept are removed.
rm -rf --one-file-system "$ROOT"/tmp/provider_connections.src.*
SRC=$(chroot "$ROOT" mktemp -d /tmp/provider_connections.src.XXXXXX)
log "copying the tree to $ROOT$SRC"
git -C "$TOP" -c safe.directory="$TOP" ls-files -z --cached --others --exclude-standard |
	while IFS= read -r -d '' f; do [ -e "$TOP/$f" ] && printf '%s\0' "$f"; done |
	tar -C "$TOP" --null -T - -cf - | tar -C "$ROOT$SRC" -xf -
if [ -n "${CHROOT_PATCHES:-}" ]; then
	for p in "$CHROOT_PATCHES"/*.patch; do
		[ -e "$p" ] || continue
		log "applying $(basename "$p")"
		patch -s -p1 -d "$ROOT$SRC" <"$p"
	done
fi

mount_chroot
out=$(mktemp)
# In the background, so that a signal's trap runs at once (see cleanup).
timeout "${CHROOT_TIMEOUT:-1800}" chroot "$ROOT" /usr/bin/env -i PATH="$CHROOT_PATH" HOME=/root \
	LANG=C.UTF-8 PG_MAJOR="$PG_MAJOR" PGPORT="$PORT" SRC="$SRC" \
	${EXTRA_CFLAGS:+EXTRA_CFLAGS="$EXTRA_CFLAGS"} ${KEEP_CLUSTER:+KEEP_CLUSTER="$KEEP_CLUSTER"} \
	bash -c "$(declare -f chroot_run); chroot_run" >"$out" 2>&1 &
RUN_PID=$!
if wait "$RUN_PID"; then rc=0; else rc=$?; fi
RUN_PID=
umount_chroot
cat "$out"
[ "$rc" -eq 124 ] && echo "---- timed out after ${CHROOT_TIMEOUT:-1800} s"

# Counted as in scripts/test.sh: 15 prints "test x ... ok", 16 on TAP lines.
passed=$(grep -cE '(\.\.\. +ok|^ok [0-9]+ )' "$out" || true)
failed=$(grep -cE '(\.\.\. +FAILED|^not ok [0-9]+ )' "$out" || true)
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
for d in "$ROOT$SRC/regression.diffs" "$ROOT$SRC/output_iso/regression.diffs"; do
	[ -s "$d" ] && { echo "---- $d"; cat "$d"; }
done
if [ "$failed" -eq 0 ]; then
	rm -rf --one-file-system "${ROOT:?}$SRC"
else
	log "the tree and its results kept in $ROOT$SRC"
fi
log "PostgreSQL $PG_MAJOR ($SUITE chroot): chroot ready in $((T1 - T0)) s, whole run $(($(date +%s) - T0)) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
