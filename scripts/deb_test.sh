#!/usr/bin/env bash
# scripts/deb_test.sh: build the Debian package of provider_connections from
# debian/ and test the installed package: for each PostgreSQL version named
# (default: 15 17 18), in a Debian chroot of the release that ships it
# (15: bookworm, 17: trixie, 18: sid),
#
#   1. builds postgresql-NN-provider-connections with pg_buildext
#      (pg_buildext updatecontrol, then dpkg-buildpackage -b) from a copy of
#      the work tree (the files git tracks or would track), in the build
#      chroot /var/cache/provider_connections/chroot-SUITE: the one
#      scripts/chroot_test.sh uses, made the same way (debootstrap minbase,
#      stamp file, lock), with the build dependencies added;
#   2. copies the package-test base chroot
#      /var/cache/provider_connections/pkgbase-SUITE (debootstrap minbase and
#      Debian's postgresql-NN, nothing else; made once and kept) to a fresh
#      chroot, installs the package there with
#      apt-get install ./postgresql-NN-provider-connections_*.deb, starts a
#      throwaway cluster (common.sh's start_cluster: key file configured,
#      library preloaded), creates the extension and runs the pg_regress and
#      isolation suites against the installed package with the pg_regress
#      and pg_isolation_regress of postgresql-client-NN, with the options
#      PGXS's make installcheck gives them;
#   3. removes the fresh chroot (the build chroot and the base stay).
#
#   bash scripts/deb_test.sh [15|17|18 ...]
#
# Prints one line per version, "PostgreSQL NN (package, SUITE): ok ..." or
# "... FAILED ...", with regression.diffs and the server log's tail on a
# failure, and ends with the line "N passed, M failed", one check per
# version; exits non-zero on any failure. The built packages are left in
# /var/cache/provider_connections/debs (DEB_OUT).
#
# Disk: each base chroot takes about 0.5 GB, a build chroot 1.5 GB (shared
# with scripts/chroot_test.sh; bookworm's is made for this script only);
# rm -rf /var/cache/provider_connections removes them all.
#
# Environment: CHROOT_BASE (default /var/cache/provider_connections),
# DEBIAN_MIRROR (default http://deb.debian.org/debian), DEB_PGPORT (default
# 55500 + NN) the cluster's port, DEB_TIMEOUT (default 1200) bounds each
# build and each test run in seconds, DEB_OUT where the .deb files go.
#
# Copyright (c) 2026, provider_connections developers.
# Released under the PostgreSQL License (see LICENSE).
set -euo pipefail

# debootstrap, chroot and mount need root.
if [ "$(id -u)" -ne 0 ]; then exec sudo -E bash "$0" "$@"; fi
. "$(dirname "$0")/common.sh"

VERSIONS=${*:-15 17 18}
BASE=${CHROOT_BASE:-/var/cache/provider_connections}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEB_OUT=${DEB_OUT:-$BASE/debs}
TIMEOUT=${DEB_TIMEOUT:-1200}
CHROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
STAMP_NAME=.provider_connections-chroot-complete

suite_of() {
	case "$1" in
	15) echo bookworm ;;
	17) echo trixie ;;
	18) echo sid ;;
	*) return 1 ;;
	esac
}
for v in $VERSIONS; do
	suite_of "$v" >/dev/null || {
		echo "usage: bash $0 [15|17|18 ...]" >&2
		exit 2
	}
done

# in_root ROOT CMD...: run CMD in the chroot ROOT as root, in a clean
# environment.
in_root() {
	local root=$1
	shift
	chroot "$root" /usr/bin/env -i PATH="$CHROOT_PATH" HOME=/root LANG=C.UTF-8 \
		DEBIAN_FRONTEND=noninteractive "$@"
}

# Mount points at or under ROOT, deepest first.
root_mounts() {
	awk -v r="$1" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r
}

mount_root() {
	mount -t proc proc "$1/proc"
	mount --bind /dev "$1/dev"
	mount -t tmpfs -o nosuid,nodev,mode=1777 shm "$1/dev/shm"
	mount --bind /dev/pts "$1/dev/pts"
}

# umount_root ROOT: stop a server a killed run left behind, then unmount
# whatever is mounted under ROOT.
umount_root() {
	local root=$1 pid m bin
	for pid in "$root"/tmp/provider_connections.*/data/postmaster.pid; do
		[ -e "$pid" ] && [ -e "$root/proc/self" ] || continue
		for bin in "$root"/usr/lib/postgresql/*/bin; do
			in_root "$root" runuser -u postgres -- "${bin#"$root"}/pg_ctl" -D "$(dirname "${pid#"$root"}")" \
				-m immediate -w stop >/dev/null 2>&1 || true
		done
	done
	for m in $(root_mounts "$root"); do
		umount "$m" 2>/dev/null || umount -l "$m" || true
	done
}

# root_install ROOT PKG...: with ROOT mounted. No service is started and
# postgresql-common makes no cluster of its own.
root_install() {
	local root=$1
	shift
	printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
	chmod 755 "$root/usr/sbin/policy-rc.d"
	mkdir -p "$root/etc/postgresql-common/createcluster.d"
	echo 'create_main_cluster = false' >"$root/etc/postgresql-common/createcluster.d/provider_connections.conf"
	# sid's Release is valid for a week (see chroot_test.sh).
	echo 'Acquire::Check-Valid-Until "false";' >"$root/etc/apt/apt.conf.d/99provider_connections"
	cp /etc/resolv.conf "$root/etc/resolv.conf"
	in_root "$root" apt-get update -qq
	in_root "$root" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
	in_root "$root" apt-get clean
}

# setup_root ROOT SUITE PKG...: a chroot of SUITE with PKG..., made with
# debootstrap unless a complete one (stamp file) is there, given those of
# PKG it lacks otherwise. The caller holds ROOT's lock.
setup_root() {
	local root=$1 suite=$2 missing p t0
	shift 2
	t0=$(date +%s)
	if [ -f "$root/$STAMP_NAME" ]; then
		missing=
		for p in "$@"; do
			in_root "$root" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
		done
		[ -z "$missing" ] && return 0
		log "installing in $root:$missing"
		mount_root "$root"
		# shellcheck disable=SC2086
		root_install "$root" $missing
		umount_root "$root"
		return 0
	fi
	if ! command -v debootstrap >/dev/null; then
		log "installing debootstrap"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
	fi
	umount_root "$root"
	if [ -n "$(root_mounts "$root")" ]; then
		echo "still mounted under $root; not removing it" >&2
		return 1
	fi
	log "making the $suite chroot in $root (debootstrap)"
	rm -rf --one-file-system "$root"
	mkdir -p "$root"
	if ! debootstrap --variant=minbase --components=main "$suite" "$root" "$MIRROR" \
		>"$root.debootstrap.log" 2>&1; then
		tail -n 30 "$root.debootstrap.log" >&2
		return 1
	fi
	log "installing in $root: $*"
	mount_root "$root"
	root_install "$root" "$@"
	umount_root "$root"
	in_root "$root" dpkg-query -W "$@" >"$root/$STAMP_NAME"
	log "$root made in $(($(date +%s) - t0)) s"
}

# build_deb: runs in the build chroot (bash -c, its definition copied
# there), in the copy of the tree, as root.
build_deb() {
	set -euo pipefail
	cd "$SRC/provider-connections"
	# debian/control names the packages of the release it was made on.
	pg_buildext updatecontrol
	DEB_BUILD_OPTIONS="parallel=2" dpkg-buildpackage -us -uc -b
}

# test_deb: runs in the fresh chroot (bash -c), as root: installs the
# package, then runs the suites from the copy of the tests in TESTS.
test_deb() {
	set -euo pipefail
	trap 'exit 130' INT
	trap 'exit 143' TERM
	cd "$TESTS"
	echo "---- apt-get install ./$DEB"
	apt-get install -y -q --no-install-recommends "./$DEB"
	dpkg-query -W "postgresql-$PG_MAJOR-provider-connections"
	. "$TESTS/scripts/common.sh"
	start_cluster
	"$PG_BIN/psql" -X -v ON_ERROR_STOP=1 -c 'CREATE EXTENSION provider_connections CASCADE' \
		-c "SELECT extversion FROM pg_extension WHERE extname = 'provider_connections'"
	"$PG_BIN/psql" -X -v ON_ERROR_STOP=1 -qc 'DROP EXTENSION provider_connections'
	# What the Makefile's REGRESS and ISOLATION list, and the options PGXS's
	# installcheck gives pg_regress and pg_isolation_regress.
	local regress iso pgxs rc=0
	regress=$(cd sql && printf '%s\n' *.sql | LC_ALL=C sort | sed 's/\.sql$//')
	iso=$(cd specs && printf '%s\n' *.spec | LC_ALL=C sort | sed 's/\.spec$//')
	pgxs=/usr/lib/postgresql/$PG_MAJOR/lib/pgxs/src/test
	# shellcheck disable=SC2086
	"$pgxs/regress/pg_regress" --inputdir=./ --bindir="$PG_BIN" \
		--load-extension=pgcrypto --dbname=contrib_regression $regress || rc=$?
	# shellcheck disable=SC2086
	"$pgxs/isolation/pg_isolation_regress" --inputdir=./ --outputdir=output_iso \
		--bindir="$PG_BIN" --load-extension=pgcrypto --dbname=isolation_regression $iso || rc=$?
	if [ "$rc" -ne 0 ]; then
		echo "---- server log (last 40 lines)"
		tail -n 40 "$CLUSTER_DIR/server.log" || true
	fi
	return "$rc"
}

mkdir -p "$BASE" "$DEB_OUT"
ROOTS_MOUNTED=()
RUN_PID=
FRESH=
cleanup() {
	local r
	if [ -n "$RUN_PID" ]; then
		kill -TERM "$RUN_PID" 2>/dev/null || true
		wait "$RUN_PID" 2>/dev/null || true
	fi
	for r in "${ROOTS_MOUNTED[@]}"; do umount_root "$r"; done
	if [ -n "$FRESH" ] && [ -z "$(root_mounts "$FRESH")" ]; then rm -rf --one-file-system "$FRESH"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# run_bg ROOT FUNC VAR=VALUE...: FUNC in the chroot ROOT (mounted for the
# run, in the background so that a signal's trap runs at once), its output
# in $out; sets rc.
run_bg() {
	local root=$1 func=$2
	shift 2
	mount_root "$root"
	ROOTS_MOUNTED=("$root")
	timeout "$TIMEOUT" chroot "$root" /usr/bin/env -i PATH="$CHROOT_PATH" HOME=/root LANG=C.UTF-8 \
		DEBIAN_FRONTEND=noninteractive "$@" bash -c "$(declare -f "$func"); $func" >"$out" 2>&1 &
	RUN_PID=$!
	if wait "$RUN_PID"; then rc=0; else rc=$?; fi
	RUN_PID=
	umount_root "$root"
	ROOTS_MOUNTED=()
	if [ "$rc" -eq 124 ]; then echo "---- timed out after $TIMEOUT s" >>"$out"; fi
}

# copy_tree DIR: the files git tracks or would track, as chroot_test.sh.
copy_tree() {
	mkdir -p "$1"
	git -C "$TOP" -c safe.directory="$TOP" ls-files -z --cached --others --exclude-standard |
		while IFS= read -r -d '' f; do [ -e "$TOP/$f" ] && printf '%s\0' "$f"; done |
		tar -C "$TOP" --null -T - -cf - | tar -C "$1" -xf -
}

# test_version NN: build, install, test; prints the version's line.
test_version() {
	local v=$1 suite build pkgbase t0 t1 t2 deb size p f
	suite=$(suite_of "$v")
	build=$BASE/chroot-$suite
	pkgbase=$BASE/pkgbase-$suite
	t0=$(date +%s)

	# 1. Build, in the build chroot (its lock is chroot_test.sh's).
	exec 8>"$BASE/chroot-$suite.lock"
	flock 8
	setup_root "$build" "$suite" postgresql-$v postgresql-server-dev-$v make gcc libc6-dev \
		postgresql-server-dev-all debhelper dpkg-dev build-essential || {
		echo "PostgreSQL $v (package, $suite): FAILED: the build chroot could not be made"
		return 1
	}
	rm -rf --one-file-system "$build"/tmp/provider_connections.deb.*
	SRC=$(chroot "$build" mktemp -d /tmp/provider_connections.deb.XXXXXX)
	copy_tree "$build$SRC/provider-connections"
	log "PostgreSQL $v: building the package in $build"
	run_bg "$build" build_deb SRC="$SRC"
	if [ "$rc" -ne 0 ]; then
		tail -n 60 "$out"
		echo "PostgreSQL $v (package, $suite): FAILED: the build failed (exit $rc; the tree is kept in $build$SRC)"
		exec 8>&-
		return 1
	fi
	deb=$(cd "$build$SRC" && ls postgresql-"$v"-provider-connections_*.deb)
	rm -f "$DEB_OUT"/postgresql-"$v"-provider-connections_*.deb
	cp "$build$SRC/$deb" "$DEB_OUT/"
	rm -rf --one-file-system "${build:?}$SRC"
	exec 8>&-
	t1=$(date +%s)

	# 2. A fresh chroot with Debian's postgresql-NN only; install, test.
	exec 8>"$BASE/pkgbase-$suite.lock"
	flock 8
	setup_root "$pkgbase" "$suite" postgresql-$v || {
		echo "PostgreSQL $v (package, $suite): FAILED: the base chroot could not be made"
		return 1
	}
	FRESH=$(mktemp -d "$BASE/pkgtest-$suite.XXXXXX")
	cp -a "$pkgbase/." "$FRESH/"
	exec 8>&-
	TESTS=/tmp/provider_connections.tests
	mkdir -p "$FRESH$TESTS/scripts"
	cp "$DEB_OUT/$deb" "$FRESH$TESTS/"
	(cd "$TOP" && tar cf - sql expected specs) | tar -C "$FRESH$TESTS" -xf -
	cp "$TOP/scripts/common.sh" "$FRESH$TESTS/scripts/"
	log "PostgreSQL $v: installing $deb in a fresh $suite chroot and running the suites"
	run_bg "$FRESH" test_deb PG_MAJOR="$v" PGPORT="${DEB_PGPORT:-$((55500 + v))}" TESTS="$TESTS" DEB="$deb"
	cat "$out"
	for d in "$FRESH$TESTS/regression.diffs" "$FRESH$TESTS/output_iso/regression.diffs"; do
		[ -s "$d" ] && { echo "---- ${d#"$FRESH"}"; cat "$d"; }
	done
	rm -rf --one-file-system "$FRESH"
	FRESH=
	t2=$(date +%s)

	# Counted as scripts/test.sh counts: 15 prints "test x ... ok", 16 and
	# later TAP lines.
	p=$(grep -cE '(\.\.\. +ok|^ok [0-9]+ )' "$out" || true)
	f=$(grep -cE '(\.\.\. +FAILED|^not ok [0-9]+ )' "$out" || true)
	size=$(du -k "$DEB_OUT/$deb" | cut -f1)
	if [ "$rc" -eq 0 ] && [ "$f" -eq 0 ] && [ "$p" -gt 0 ]; then
		echo "PostgreSQL $v (package, $suite): ok: $deb (${size} kB), $p tests passed against it (build $((t1 - t0)) s, install and tests $((t2 - t1)) s)"
		return 0
	fi
	echo "PostgreSQL $v (package, $suite): FAILED: $deb, $p tests passed, $f failed, exit $rc"
	return 1
}

passed=0
failed=0
T0=$(date +%s)
for v in $VERSIONS; do
	out=$(mktemp)
	if test_version "$v"; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
	fi
	rm -f "$out"
done
log "whole run $(($(date +%s) - T0)) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
