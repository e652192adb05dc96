#!/usr/bin/env bash
# TCP throughput of each user-mode network driver (package slirp), with
# iperf3: "in" = host -> published port -> container, "out" = container ->
# host loopback (host.containers.internal). Runs the slirp package's
# TestIperf in real user+net namespaces; drivers whose helper is missing or
# too old are skipped. Needs iperf3, and /dev/net/tun mode 0666 when not root.
# These are the raw drivers (no container, no host-loopback bypass); the
# comparison with Podman through real containers is `bench/run.sh net`.
# UNROOT_SLIRP_IPERF_SECS (default 3) sets the duration of each run.
# UNROOT_BENCH_RUN_AS=USER (as root): build as root, run the test binary as
# USER with an empty environment (bench/run.sh uses it).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v iperf3 >/dev/null || { echo "bench/net.sh: iperf3 is not installed (apt-get install iperf3)" >&2; exit 1; }
TAGS="containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper exclude_disk_quota"
bin=$(mktemp /tmp/unroot-slirp-bench.XXXXXX)
trap 'rm -f "$bin"' EXIT
${GO:-go} test -tags "$TAGS" -c -o "$bin" ./slirp
chmod 0755 "$bin"
cd /tmp
run=(env)
if [[ -n ${UNROOT_BENCH_RUN_AS:-} && $(id -u) -eq 0 ]]; then
	run=(runuser -u "$UNROOT_BENCH_RUN_AS" -- env -i HOME=/tmp PATH=/usr/local/bin:/usr/bin:/bin
		${UNROOT_SLIRP_IPERF_SECS:+UNROOT_SLIRP_IPERF_SECS=$UNROOT_SLIRP_IPERF_SECS})
fi
"${run[@]}" UNROOT_SLIRP_IPERF=1 "$bin" -test.run '^TestIperf$' -test.v -test.count=1 2>&1 | grep -E '^IPERF|SKIP|skip|FAIL' | sed 's/^IPERF //'
