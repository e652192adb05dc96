#!/bin/bash
# VM test stage (make test-vm): boots a Debian 12 VM under qemu (TCG, no KVM
# needed) with a real cgroup v2 hierarchy and a systemd user instance, and
# runs a test command there as an unprivileged, lingering user. Two boots:
#   delegated    user@.service has Delegate=cpu cpuset io memory pids
#   undelegated  systemd's default delegation (cpu memory pids on Debian 12):
#                requesting an io/cpuset limit must fail with the clear error
#
# Run as root on the host (Debian 12). Options / environment:
#   --cmd CMD            command run inside the VM as the test user; default:
#                        the cgroupv2 test helper (cgtest). It sees
#                        UNROOT_VM_DELEGATED=0|1 and UNROOT_VM_XFER (the share
#                        with everything copied in, e.g. $UNROOT_VM_XFER/unroot).
#                        Output lines starting "--- PASS: x" / "--- FAIL: x" are
#                        counted (go test -v output works as is).
#   --copy FILE          extra file to copy into the share (repeatable; also
#                        UNROOT_VM_FILES="f1 f2"); bin/unroot is copied when built.
#   --only NAME          run one boot (delegated or undelegated)
#   --build-only         build / check the cached image and stop
#   --no-fix-check       in the undelegated boot, don't apply the admin fix
#                        afterwards (as root) and re-run the io/cpuset checks
#   UNROOT_VM_CACHE      image cache (default /var/cache/unroot-vm)
#   UNROOT_VM_LOGS       logs: debootstrap, qemu consoles, guest journals
#                        (default /tmp/unroot-vm-logs)
#   UNROOT_VM_TIMEOUT    seconds per boot before qemu is killed (default 900)
#   UNROOT_VM_MIRROR     Debian mirror; default: read from the host's apt sources
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
suite=bookworm
cache_root=${UNROOT_VM_CACHE:-/var/cache/unroot-vm}
logs=${UNROOT_VM_LOGS:-/tmp/unroot-vm-logs}
timeout_s=${UNROOT_VM_TIMEOUT:-900}
TAGS="containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper exclude_disk_quota"

cmd=""
copies=(${UNROOT_VM_FILES:-})
only=""
build_only=0
fixcheck=1
while [ $# -gt 0 ]; do
	case "$1" in
	--cmd) cmd=$2; shift 2 ;;
	--copy) copies+=("$2"); shift 2 ;;
	--only) only=$2; shift 2 ;;
	--build-only) build_only=1; shift ;;
	--no-fix-check) fixcheck=0; shift ;;
	*) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done

log() { echo "[vm $(date +%T)] $*"; }
die() { echo "[vm] FATAL: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (qemu, debootstrap and the image cache need it)"
mkdir -p "$logs"

# --- host packages --------------------------------------------------------
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v qemu-img >/dev/null || need+=(qemu-utils)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
if [ ${#need[@]} -gt 0 ]; then
	log "installing ${need[*]} (log: $logs/apt.log)"
	{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"; } \
		>"$logs/apt.log" 2>&1 || die "apt-get install failed, see $logs/apt.log"
fi

# --- mirror: from the host's apt sources, never hard-coded ------------------
apt_mirror() {
	# deb822 .sources files: first "deb" stanza whose Suites contain $suite
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk -v s="$suite" '
			function flush() { if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " s " ") && uri != "") { print uri; found=1; exit } types=""; suites=""; uri="" }
			/^[ \t]*$/ { flush(); next }
			/^#/ { next }
			tolower($1) == "types:" { $1=""; types=$0 }
			tolower($1) == "suites:" { $1=""; suites=$0 }
			tolower($1) == "uris:" { uri=$2 }
			END { if (!found) flush() }' "$f"
	done
	# one-line format
	cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
		sed -e 's/\[[^]]*\]//' |
		awk -v s="$suite" '$1 == "deb" && $3 == s { print $2 }' || true
}
mirror=${UNROOT_VM_MIRROR:-$(apt_mirror | grep -E '^https?://' | head -1 || true)}
[ -n "$mirror" ] || die "no Debian $suite mirror in the apt sources; set UNROOT_VM_MIRROR"

# --- image cache ------------------------------------------------------------
key=$( (echo "$suite"; cat "$here/build-image.sh"; cd "$here/guest" && for f in $(ls); do echo "== $f"; cat "$f"; done) | sha256sum | cut -c1-16)
img=$cache_root/$suite-$key
mkdir -p "$cache_root"
exec 9>"$cache_root/.lock"
flock 9
if [ ! -f "$img/rootfs.qcow2" ]; then
	log "building VM image $img from $mirror (log: $logs/build-image.log)"
	t0=$SECONDS
	rm -rf "$img.tmp"
	"$here/build-image.sh" "$mirror" "$suite" "$img.tmp" >"$logs/build-image.log" 2>&1 ||
		{ tail -n 20 "$logs/build-image.log" >&2; die "image build failed, see $logs/build-image.log"; }
	mv "$img.tmp" "$img"
	log "image built in $((SECONDS - t0))s ($(du -sh "$img" | cut -f1))"
	# keep only the current image
	for old in "$cache_root"/"$suite"-*; do
		[ "$old" = "$img" ] || rm -rf "$old"
	done
else
	log "using cached image $img"
fi
flock -u 9
[ "$build_only" = 1 ] && exit 0

# --- what goes into the VM ---------------------------------------------------
bindir=$(mktemp -d /tmp/unroot-vm-bin.XXXXXX)
trap 'rm -rf "$bindir"' EXIT
log "building the cgroupv2 test helper"
(cd "$repo" && CGO_ENABLED=0 go build -tags "$TAGS" -trimpath -o "$bindir/cgtest" ./cgroupv2/internal/cgtest) ||
	die "go build of cgroupv2/internal/cgtest failed"
[ -x "$repo/bin/unroot" ] && copies+=("$repo/bin/unroot")
for f in "${copies[@]}"; do
	[ -e "$f" ] || die "--copy: $f does not exist"
done
[ -n "$cmd" ] || cmd='$UNROOT_VM_XFER/cgtest -v'

# --- boots -------------------------------------------------------------------
passed=0 failed=0
summary=()
boot() { # name delegate(0|1)
	local name=$1 delegate=$2 share="$logs/share-$1" t0=$SECONDS rc
	rm -rf "$share"
	mkdir -p "$share"
	cp "$bindir/cgtest" "$share/"
	for f in "${copies[@]}"; do cp -a "$f" "$share/"; done
	printf '%s\n' "$cmd" >"$share/cmd"
	if [ "$delegate" = 0 ] && [ "$fixcheck" = 1 ]; then
		# Apply the fix as the "not delegated" error words it (drop-in,
		# daemon-reload, restart of the user manager), then the delegated
		# checks that need io and cpuset must pass.
		cat >"$share/cmd-root-after" <<'FIX'
echo "== root: applying the fix from the error message (drop-in, daemon-reload, restart user@1000.service)"
mkdir -p /etc/systemd/system/user@.service.d
printf '[Service]\nDelegate=cpu cpuset io memory pids\n' >/etc/systemd/system/user@.service.d/delegate.conf
systemctl daemon-reload
# daemon-reload alone is not enough (measured: the running user manager
# keeps its old controller set, new interface files in its scopes belong
# to root): the user manager must be restarted.
systemctl restart user@1000.service
for _ in $(seq 60); do [ -S /run/user/1000/bus ] && break; sleep 0.5; done
echo "user@1000.service controllers now: $(cat /sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/cgroup.controllers)"
runuser -l tester -c "$UNROOT_VM_XFER/cgtest -v -expect delegated -run '^(check_all_limits|cpuset|io_max_throttles_writes)\$'" | sed 's/^\(---\|===\) \(\S*\) */\1 \2 after_fix_/'
exit ${PIPESTATUS[0]}
FIX
	fi
	log "boot '$name' (console: $logs/qemu-$name.log)"
	set +e
	timeout -k 10 "$timeout_s" qemu-system-x86_64 \
		-accel tcg,thread=multi -smp 2 -cpu max -m 2048 -nographic -no-reboot \
		-kernel "$img/vmlinuz" -initrd "$img/initrd.img" \
		-append "console=ttyS0 root=/dev/vda rw systemd.unified_cgroup_hierarchy=1 panic=-1 quiet unroot.delegate=$delegate" \
		-drive "file=$img/rootfs.qcow2,if=virtio,format=qcow2,snapshot=on" \
		-virtfs "local,path=$share,mount_tag=xfer,security_model=none" \
		-nic none </dev/null >"$logs/qemu-$name.log" 2>&1
	rc=$?
	set -e
	local secs=$((SECONDS - t0))
	[ -f "$share/out/journal" ] && cp "$share/out/journal" "$logs/journal-$name.log"
	if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
		log "boot '$name': TIMEOUT after ${secs}s (qemu killed)"
	fi
	if [ ! -f "$share/out/rc" ]; then
		log "boot '$name': no result from the guest after ${secs}s; console tail:"
		tail -n 30 "$logs/qemu-$name.log" | sed 's/^/    /'
		failed=$((failed + 1))
		summary+=("FAIL  $name: no result from the VM (qemu exit $rc, ${secs}s)")
		return
	fi
	local grc np nf
	grc=$(cat "$share/out/rc")
	sed 's/^/    /' "$share/out/info"
	echo "    ---- output of: $cmd"
	sed 's/^/    | /' "$share/out/output"
	np=$(grep -c -- '^--- PASS' "$share/out/output" || true)
	nf=$(grep -c -- '^--- FAIL' "$share/out/output" || true)
	if [ "$grc" != 0 ] && [ "$nf" = 0 ]; then nf=1; fi # failed without saying what
	passed=$((passed + np))
	failed=$((failed + nf))
	if [ "$grc" = 0 ] && [ "$nf" = 0 ]; then
		summary+=("PASS  $name: $np checks, exit 0, ${secs}s")
	else
		summary+=("FAIL  $name: $np passed, $nf failed, exit $grc, ${secs}s")
	fi
	log "boot '$name' done in ${secs}s"
}
[ -z "$only" ] || [ "$only" = delegated ] && boot delegated 1
[ -z "$only" ] || [ "$only" = undelegated ] && boot undelegated 0

echo
echo "==== VM test summary (logs: $logs)"
for s in "${summary[@]}"; do echo "$s"; done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ ${#summary[@]} -gt 0 ]
