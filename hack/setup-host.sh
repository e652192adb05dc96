#!/usr/bin/env bash
# Prepare a Debian 12 host for unroot's tests (called by `make deps`).
#
# As root: installs the Debian packages the tests and benchmarks need (only
# when one is missing), opens /dev/fuse and /dev/net/tun to everyone (0666,
# as distros ship them), and creates the test users:
#   unroot-test   a normal user with one 65536-id subuid/subgid range
#   unroot-nosub  a normal user with NO subuid/subgid range
# As non-root: only reports what is missing and how to fix it.
#
# Idempotent; when everything is in place it takes well under a second.
set -euo pipefail

PACKAGES=(
	uidmap fuse-overlayfs docker-registry skopeo umoci busybox-static
	debootstrap podman runc passt slirp4netns iperf3 qemu-system-x86
	qemu-utils openssl apache2-utils procps iproute2 hyperfine
	postgresql-client
	# Only so that a plain `go build ./...` or `go vet ./...` (no build
	# tags) compiles containers/image's and containers/storage's cgo parts.
	pkg-config libgpgme-dev libbtrfs-dev libdevmapper-dev
)
TEST_USER=unroot-test
NOSUB_USER=unroot-nosub
SUB_COUNT=65536
SUB_START_WANTED=200000

log() { printf 'setup-host: %s\n' "$*" >&2; }

missing_packages() {
	local installed p
	installed=" $(dpkg-query -W -f='${db:Status-Status}:${Package} ' "${PACKAGES[@]}" 2>/dev/null || true) "
	for p in "${PACKAGES[@]}"; do
		[[ $installed == *" installed:$p "* ]] || printf '%s\n' "$p"
	done
}

# has_subid FILE USER: does FILE give USER (by name or uid) a range?
has_subid() {
	local file=$1 user=$2 uid
	uid=$(id -u "$user" 2>/dev/null || echo -1)
	[[ -f $file ]] && awk -F: -v u="$user" -v id="$uid" \
		'($1 == u || $1 == id) && $3 > 0 { found = 1 } END { exit !found }' "$file"
}

# first_free_start FILE: $SUB_START_WANTED unless another user's range
# overlaps [start, start+count), then the first 65536-aligned start past all
# ranges in FILE.
first_free_start() {
	local file=$1
	awk -F: -v s="$SUB_START_WANTED" -v c="$SUB_COUNT" -v skip="$TEST_USER" '
		$1 == skip || NF < 3 { next }
		{ lo = $2 + 0; hi = $2 + $3; if (hi > max) max = hi
		  if (lo < s + c && hi > s) clash = 1 }
		END { if (!clash) print s; else print (int((max + c - 1) / c) * c) }
	' "$file"
}

# ensure_subid FILE: exactly one line "unroot-test:START:65536", no line for
# unroot-nosub. Lines of other users are kept as they are.
ensure_subid() {
	local file=$1 tuid nuid start cur
	touch "$file"
	tuid=$(id -u "$TEST_USER")
	nuid=$(id -u "$NOSUB_USER")
	cur=$(awk -F: -v u="$TEST_USER" -v id="$tuid" -v n="$SUB_COUNT" \
		'($1 == u || $1 == id) { c++; if ($3 == n) s = $2 } END { if (c == 1 && s != "") print s }' "$file")
	if [[ -n $cur ]] && ! grep -qE "^($NOSUB_USER|$nuid):" "$file"; then
		return 0
	fi
	start=${cur:-$(first_free_start "$file")}
	local tmp
	tmp=$(mktemp "$file.XXXXXX")
	awk -F: -v a="$TEST_USER" -v ai="$tuid" -v b="$NOSUB_USER" -v bi="$nuid" \
		'!($1 == a || $1 == ai || $1 == b || $1 == bi)' "$file" >"$tmp"
	printf '%s:%s:%s\n' "$TEST_USER" "$start" "$SUB_COUNT" >>"$tmp"
	chmod 0644 "$tmp"
	mv "$tmp" "$file"
	log "$file: $TEST_USER:$start:$SUB_COUNT"
}

ensure_user() {
	local user=$1
	if ! getent passwd "$user" >/dev/null; then
		# useradd allocates subordinate ids itself on Debian 12
		# (SUB_UID_COUNT in login.defs); ensure_subid fixes them up.
		useradd --create-home --home-dir "/home/$user" --shell /bin/sh \
			--user-group "$user"
		log "created user $user (uid $(id -u "$user"))"
	fi
}

device_ok() { [[ -c $1 ]] && [[ $(stat -c %a "$1") == 666 ]]; }

as_root() {
	local missing
	missing=$(missing_packages)
	if [[ -n $missing ]]; then
		log "installing: $(echo $missing)"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -q
		# shellcheck disable=SC2086
		apt-get install -y -q --no-install-recommends $missing
		missing=$(missing_packages)
		if [[ -n $missing ]]; then
			log "still missing after apt-get install: $(echo $missing)"
			exit 1
		fi
	fi

	if [[ ! -e /dev/net/tun ]]; then
		mkdir -p /dev/net
		mknod -m 0666 /dev/net/tun c 10 200 || log "warning: cannot create /dev/net/tun"
	fi
	if [[ ! -e /dev/fuse ]]; then
		mknod -m 0666 /dev/fuse c 10 229 || log "warning: cannot create /dev/fuse"
	fi
	local d
	for d in /dev/fuse /dev/net/tun; do
		if [[ -c $d ]] && ! device_ok "$d"; then
			chmod 0666 "$d"
			log "chmod 0666 $d"
		fi
	done

	ensure_user "$TEST_USER"
	ensure_user "$NOSUB_USER"
	ensure_subid /etc/subuid
	ensure_subid /etc/subgid
}

as_user() {
	local missing problems=0 me
	me=$(id -un)
	missing=$(missing_packages)
	if [[ -n $missing ]]; then
		log "missing Debian packages: $(echo $missing)"
		log "  fix: sudo apt-get install --no-install-recommends $(echo $missing)"
		problems=1
	fi
	local d
	for d in /dev/fuse /dev/net/tun; do
		if ! device_ok "$d"; then
			log "$d is not a 0666 character device"
			log "  fix: sudo chmod 0666 $d"
			problems=1
		fi
	done
	local f
	for f in /etc/subuid /etc/subgid; do
		if ! has_subid "$f" "$me"; then
			log "$f has no range for $me"
			log "  fix: sudo usermod --add-subuids 200000-265535 --add-subgids 200000-265535 $me"
			problems=1
		fi
	done
	if ((problems)); then
		log "(not root: nothing changed; the e2e tests may fail or skip)"
	else
		log "host is ready"
	fi
}

if [[ $(id -u) -eq 0 ]]; then
	as_root
else
	as_user
fi
