// Package e2e holds unroot's end-to-end tests. They drive the built binary
// (UNROOT_BIN, an absolute path; `make test-e2e` sets it) as an unprivileged
// user against local registries filled from the fixture images in
// tests/fixtures. Run as root (CI), commands run as the user unroot-test that
// hack/setup-host.sh creates; run as a normal user, they run as that user.
//
//	make test-e2e
//	UNROOT_BIN=$PWD/bin/unroot go test -tags "$TAGS" -count=1 -v -run TestRunExitCode ./tests/e2e/
//
// Environment:
//
//	UNROOT_BIN        binary under test (required; without it the suite skips)
//	UNROOT_FIXTURES   fixture cache (default /var/cache/unroot-tests)
//	UNROOT_E2E_KEEP=1 keep the state directory (homes, registries, logs)
package e2e
