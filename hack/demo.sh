#!/usr/bin/env bash
# `make demo`: from a fresh Debian 12 machine to a running container.
# Installs what is needed (hack/setup-host.sh), builds unroot, builds a
# busybox image from Debian's busybox-static, serves it from a local
# registry (this machine reaches no public registry), then, as an
# unprivileged user, pulls it and runs a command in it.
set -euo pipefail
cd "$(dirname "$0")/.."
hack/setup-host.sh
make -s build
layout=$(tests/fixtures/images.sh)
state=${UNROOT_DEMO_STATE:-/tmp/unroot-demo}
mkdir -p "$state"
tests/fixtures/registry.sh stop "$state" >/dev/null 2>&1 || true
addr=$(tests/fixtures/registry.sh start "$state")
trap 'tests/fixtures/registry.sh stop "$state" >/dev/null 2>&1 || true' EXIT
tests/fixtures/push.sh "$layout" busybox:latest "$addr/busybox:latest" --dest-tls-verify=false >/dev/null

run_as=()
if [ "$(id -u)" = 0 ]; then
	# unroot is for users without root: demonstrate it as one.
	install -D -m 0755 bin/unroot /usr/local/libexec/unroot-demo/unroot
	bin=/usr/local/libexec/unroot-demo/unroot
	home=$(getent passwd unroot-test | cut -d: -f6)
	run_as=(runuser -u unroot-test -- env -i HOME="$home" PATH=/usr/local/bin:/usr/bin:/bin)
else
	bin=$PWD/bin/unroot
fi
set -x
"${run_as[@]}" "$bin" run --rm --tls-verify=false "$addr/busybox" \
	sh -c 'echo "hello from unroot: uid $(id -u) in the container"; cat /proc/self/uid_map'
