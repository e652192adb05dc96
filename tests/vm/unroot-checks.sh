#!/bin/sh
# End-to-end cgroup checks through `unroot run`, run inside the test VM as
# the unprivileged, lingering user (tests/vm/run.sh copies this file, the
# unroot binary and busybox.tar into the share $UNROOT_VM_XFER). Prints
# go-test-like "--- PASS: name" / "--- FAIL: name" lines; exits non-zero on
# any failure. UNROOT_VM_DELEGATED=1: io and cpuset are delegated too.
set -u
X=${UNROOT_VM_XFER:?}
U="$X/unroot"
fails=0
pass() { echo "--- PASS: unroot_$1"; }
fail() { echo "--- FAIL: unroot_$1: $2"; fails=$((fails + 1)); }
# run "FLAGS" COMMAND...: unroot run of busybox (FLAGS is word-split).
run() {
	f=$1
	shift
	# shellcheck disable=SC2086
	"$U" run --rm --net=none $f busybox "$@"
}

out=$("$U" load -q -i "$X/busybox.tar" 2>&1) && pass load || fail load "$out"

# -m 200M --memory-swap 300M: memory.max 200M, memory.swap.max 100M.
out=$(run "-m 200M --memory-swap 300M" sh -c 'cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory.swap.max' 2>&1)
[ "$(echo $out)" = "209715200 104857600" ] && pass memory_values || fail memory_values "$out"

# An allocation beyond --memory is OOM-killed: exit 137.
run "-m 32M --memory-swap 32M" sh -c 'tail /dev/zero' >/dev/null 2>&1
rc=$?
[ $rc = 137 ] && pass oom_exit_137 || fail oom_exit_137 "exit $rc"

# A fork bomb stops at --pids-limit.
out=$(run "--pids-limit 20" sh -c 'cat /sys/fs/cgroup/pids.max; for i in $(seq 60); do sleep 5 & done 2>&1 | head -1; true' 2>&1)
case "$out" in 20*fork*|20*"Resource temporarily unavailable"*) pass pids_limit ;; *) fail pids_limit "$out" ;; esac

# --cpus 0.5 holds a busy loop to at most ~50%: CPU time from cpu.stat over
# wall time from /proc/uptime, both read inside (TCG makes fixed windows
# stretch). Only the cap is asserted: a VM starved by a busy host gets less
# (31% was seen), never more.
out=$(run "--cpus 0.5" sh -c 'cat /sys/fs/cgroup/cpu.max
(while :; do :; done) &
use() { awk "/usage_usec/ {print \$2}" /sys/fs/cgroup/cpu.stat; }
cs() { cut -d" " -f1 /proc/uptime | tr -d .; }
u0=$(use); c0=$(cs); sleep 4; u1=$(use); c1=$(cs); kill $!
echo "pct $(( (u1 - u0) / ((c1 - c0) * 100) ))"' 2>&1)
pct=$(echo "$out" | awk '/^pct/ {print $2}')
case "$out" in
"50000 100000"*) if [ -n "$pct" ] && [ "$pct" -ge 1 ] && [ "$pct" -le 65 ]; then pass cpus_half; else fail cpus_half "$out"; fi ;;
*) fail cpus_half "$out" ;;
esac

# -c 512 weighs the container: cpu.weight = 1 + (512-2)*9999/262142 = 20.
out=$(run "-c 512" cat /sys/fs/cgroup/cpu.weight 2>&1)
[ "$out" = 20 ] && pass cpu_shares_weight || fail cpu_shares_weight "$out"

# The container sees its own cgroup as /.
out=$(run "-m 100M" cat /proc/self/cgroup 2>&1)
[ "$out" = "0::/" ] && pass cgroup_namespace || fail cgroup_namespace "$out"

dev=/dev/vda
if [ "${UNROOT_VM_DELEGATED:-0}" = 1 ]; then
	# --device-write-bps: io.max on the virtio disk, and dd O_DIRECT slowed.
	out=$(run "--device-write-bps $dev:1MB" sh -c 'cat /sys/fs/cgroup/io.max; s=$(date +%s); dd if=/dev/zero of=/f bs=64k count=48 oflag=direct 2>/dev/null; e=$(date +%s); echo secs=$((e-s))' 2>&1)
	secs=$(echo "$out" | sed -n 's/^secs=//p')
	case "$out" in
	*wbps=1048576*) if [ -n "$secs" ] && [ "$secs" -ge 2 ]; then pass device_write_bps; else fail device_write_bps "$out"; fi ;;
	*) fail device_write_bps "$out" ;;
	esac
	out=$(run "--cpuset-cpus 0" cat /sys/fs/cgroup/cpuset.cpus 2>&1)
	[ "$out" = 0 ] && pass cpuset || fail cpuset "$out"
else
	# Not delegated: a clear error naming the drop-in, before anything starts.
	out=$(run "--device-write-bps $dev:1MB" true 2>&1)
	rc=$?
	case "$out" in *Delegate=*) [ $rc = 125 ] && pass io_not_delegated_error || fail io_not_delegated_error "exit $rc: $out" ;; *) fail io_not_delegated_error "exit $rc: $out" ;; esac
fi

# stats and update on a running, detached container.
"$U" run -d --net=none --name st -m 100M --pids-limit 50 busybox sleep 60 >/dev/null 2>&1
out=$("$U" stats --no-stream st 2>&1)
case "$out" in *st*"/ 100MiB"*) pass stats ;; *) fail stats "$out" ;; esac
out=$("$U" update --memory 150M --pids-limit 70 st 2>&1 && "$U" exec st sh -c 'cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max' 2>&1)
case "$(echo $out)" in *"157286400 70") pass update ;; *) fail update "$out" ;; esac
"$U" rm -f st >/dev/null 2>&1

# An OOM-killed detached container: exit 137 and OOMKilled in inspect.
"$U" run -d --net=none --name oom -m 32M --memory-swap 32M busybox sh -c 'tail /dev/zero' >/dev/null 2>&1
code=$("$U" wait oom 2>&1)
out=$("$U" inspect oom 2>&1)
case "$code $out" in 137*'"OOMKilled": true'*) pass oomkilled_reported ;; *) fail oomkilled_reported "wait: $code; $(echo "$out" | grep -i oom)" ;; esac
"$U" rm -f oom >/dev/null 2>&1

# Without a limit flag, a container runs with no warning noise.
out=$(run "" echo plain 2>&1)
[ "$out" = plain ] && pass no_limits_no_noise || fail no_limits_no_noise "$out"

[ $fails = 0 ]
