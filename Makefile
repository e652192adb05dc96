SHELL := /bin/bash
# Build tags: pure-Go OpenPGP, and no graph drivers that need cgo headers we
# don't use (btrfs, devicemapper) or quota support.
TAGS := containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper exclude_disk_quota
GO   ?= go
BIN  := bin/unroot

.PHONY: all build install deps test test-unit test-e2e test-vm bench clean

all: build

build:
	$(GO) build -tags "$(TAGS)" -trimpath -o $(BIN) ./cmd/unroot

install: build
	install -m 0755 $(BIN) $(or $(PREFIX),/usr/local)/bin/unroot

# Everything a fresh Debian 12 machine needs for the tests (packages, device
# permissions, a test user with a subuid range). Idempotent and quick when done.
deps:
	hack/setup-host.sh

test: deps build test-unit test-e2e test-vm

test-unit:
	$(GO) test -tags "$(TAGS)" -count=1 $$($(GO) list -tags "$(TAGS)" ./... | grep -v -e /tests -e /bench)

test-e2e: build
	@set -o pipefail; true
	UNROOT_BIN=$(CURDIR)/$(BIN) $(GO) test -tags "$(TAGS)" -count=1 -timeout 40m -v ./tests/e2e/ 2>&1 | tee /tmp/unroot-e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic|\s+\S+_test.go)' ; exit $${PIPESTATUS[0]}

test-vm: build
	tests/vm/run.sh

bench: build
	bench/run.sh

clean:
	rm -rf bin
