SHELL := /bin/bash
# Build tags: pure-Go OpenPGP, and no graph drivers that need cgo headers we
# don't use (btrfs, devicemapper) or quota support.
TAGS := containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper exclude_disk_quota
GO   ?= go
BIN  := bin/unroot

.PHONY: all build install deps demo test test-unit test-e2e test-vm bench clean

all: build

# Three binaries, one file to install: the container's init (small, static:
# it starts in a few milliseconds) is embedded into the full unroot
# (cmd/unroot), and both into the small user-facing binary (cmd/unroot-fast),
# which runs `run --rm` of a stored image itself and execs the full unroot
# for everything else (see container/fastrun). It is static (no cgo: a Go
# program linked with libc starts several ms slower); the full unroot keeps
# cgo for NSS user lookups (LDAP, sssd). A second build of the full unroot
# without the gvisor stack is the detached process of containers that do not
# use it (container/enginebin says why). The user-facing binary is built
# twice: "fastnet" with the user-mode network (RootlessKit's drivers), and
# the one users run without it (tag unroot_tiny; several ms faster to
# start), which embeds fastnet and execs it for a fast run with a network.
# The init and the user-facing binaries are built with Go's previous
# collector: they collect once if ever, and the Green Tea collector's span
# metadata is ~40 kB more of every idle container's memory (the init keeps
# a detached container alone: see docs/design.md) and ~35 page faults more
# of every start-up (each span's last page is touched at once).
INITBIN := container/initbin/unroot-init
ENGINEBIN := container/enginebin/unroot-engine
build:
	GOEXPERIMENT=nogreenteagc CGO_ENABLED=0 $(GO) build -trimpath -ldflags=-s -o $(INITBIN) ./cmd/unroot-init
	cd $(dir $(INITBIN)) && sha256sum unroot-init > unroot-init.sha256
	$(GO) build -tags "$(TAGS) embedinit" -trimpath -ldflags="-s -w" -o $(ENGINEBIN) ./cmd/unroot
	cd $(dir $(ENGINEBIN)) && sha256sum unroot-engine > unroot-engine.sha256
	$(GO) build -tags "$(TAGS) embedinit unroot_nogvisor" -trimpath -ldflags="-s -w" -o $(ENGINEBIN)-lite ./cmd/unroot
	cd $(dir $(ENGINEBIN)) && sha256sum unroot-engine-lite > unroot-engine-lite.sha256
	GOEXPERIMENT=nogreenteagc CGO_ENABLED=0 $(GO) build -tags "$(TAGS) embedinit unroot_nogvisor" -trimpath -o $(dir $(ENGINEBIN))unroot-fastnet ./cmd/unroot-fast
	cd $(dir $(ENGINEBIN)) && sha256sum unroot-fastnet > unroot-fastnet.sha256
	GOEXPERIMENT=nogreenteagc CGO_ENABLED=0 $(GO) build -tags "$(TAGS) embedinit embedengine unroot_nogvisor unroot_tiny" -trimpath -o $(BIN) ./cmd/unroot-fast

install: build
	install -m 0755 $(BIN) $(or $(PREFIX),/usr/local)/bin/unroot

# Everything a fresh Debian 12 machine needs for the tests (packages, device
# permissions, a test user with a subuid range). Idempotent and quick when done.
deps:
	hack/setup-host.sh

# Fresh machine to a running container, as an unprivileged user.
demo:
	hack/demo.sh

test: deps build test-unit test-e2e test-vm

# Unit tests: every package but the end-to-end and benchmark trees.
test-unit:
	@set -eo pipefail; \
	pkgs="$$($(GO) list -tags "$(TAGS)" ./... | grep -v -e /tests/ -e /bench)"; \
	echo "$(GO) test -tags \"$(TAGS)\" -count=1 <$$(wc -w <<<"$$pkgs") packages>"; \
	$(GO) test -tags "$(TAGS)" -count=1 $$pkgs

# End-to-end tests of the built binary (tests/e2e): as root they run unroot as
# the user unroot-test that `make deps` creates. The first run builds the
# fixture images (debootstrap: a few minutes), cached in $UNROOT_FIXTURES
# (default /var/cache/unroot-tests). go test's own output, closing lines and
# exit status included, goes straight to the log.
E2E_FLAGS ?= -timeout 40m -parallel 4
test-e2e: deps build
	UNROOT_BIN=$(CURDIR)/$(BIN) $(GO) test -tags "$(TAGS)" -count=1 -v $(E2E_FLAGS) ./tests/e2e/

# The cgroup v2 stage, in a VM with systemd: the cgroupv2 package's own
# checks, then the same limits end to end through `unroot run`.
VM_DIR := /tmp/unroot-vm-files
test-vm: deps build
	rm -rf $(VM_DIR) && mkdir -p $(VM_DIR)
	skopeo copy -q oci:$$(tests/fixtures/images.sh):busybox:latest docker-archive:$(VM_DIR)/busybox.tar:busybox:latest
	tests/vm/run.sh --copy $(VM_DIR)/busybox.tar --copy tests/vm/unroot-checks.sh \
		--cmd '$$UNROOT_VM_XFER/cgtest -v; r=$$?; sh $$UNROOT_VM_XFER/unroot-checks.sh && exit $$r' 

bench: build
	bench/run.sh

clean:
	rm -rf bin
