package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Errors of unroot's own exit 125 with a message that says what to do.

func TestErrorUnknownFlag(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	s.run("run", "--no-such-flag", busybox(), "true").wantCode(t, 125).
		wantStderr(t, "unknown flag", "--no-such-flag", "--help")
	s.run("--no-such-global-flag", "images").wantCode(t, 125).wantStderr(t, "--no-such-global-flag")
	s.run("no-such-verb").wantCode(t, 125).wantStderr(t, "no-such-verb", "--help")
}

func TestErrorImageNotFoundInRegistry(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	nope := img("nope")
	s.run("run", "--rm", "--tls-verify=false", nope, "true").wantCode(t, 125).
		wantStderr(t, "nope").wantStderrAny(t, "not found", "manifest unknown", "does not exist", "no such")
	if r := s.run("pull", "--tls-verify=false", nope); r.code == 0 {
		t.Errorf("pull of a missing image succeeded:\n%s", r)
	} else {
		r.wantStderr(t, "nope")
	}
	s.run("run", "--rm", "--tls-verify=false", busybox()+":no-such-tag", "true").wantCode(t, 125).
		wantStderr(t, "no-such-tag")
}

func TestErrorRegistryUnreachable(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	addr := closedPort(t)
	s.run("run", "--rm", "--tls-verify=false", addr+"/busybox", "true").wantCode(t, 125).
		wantStderr(t, addr).wantStderrAny(t, "connection refused", "unreachable", "connect")
	if r := s.run("pull", "--tls-verify=false", addr+"/busybox"); r.code == 0 {
		t.Errorf("pull from a closed port succeeded:\n%s", r)
	}
}

// Without newuidmap in PATH unroot must say which package to install.
func TestErrorNewuidmapMissing(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	s.pull(busybox()) // with the normal PATH
	empty := filepath.Join(filepath.Dir(s.home), "empty-bin")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	// (/bin is /usr/bin on Debian 12: a PATH without /usr/bin must not
	// have /bin either.)
	// --net=none: no network helper (slirp4netns, pasta) is looked up first.
	r := s.runWith(runOpts{env: []string{"PATH=" + empty}}, "run", "--rm", "--net=none", busybox(), "true")
	r.wantCode(t, 125).wantStderr(t, "newuidmap", "uidmap")
}

// A user with no /etc/subuid range: either a one-id container (uid_map is a
// single line "0 UID 1") or a clear error pointing at /etc/subuid.
func TestUserWithoutSubuidRange(t *testing.T) {
	t.Parallel()
	if suite.nosub == nil {
		t.Skip("needs root: runs as " + nosubUserName)
	}
	u := suite.nosub
	s := sandboxFor(t, u)
	r := s.runSh(busybox(), "id -u; cat /proc/self/uid_map")
	switch r.code {
	case 0:
		lines := strings.Split(r.out(), "\n")
		if len(lines) != 2 || lines[0] != "0" {
			t.Fatalf("unexpected output:\n%s", r)
		}
		m := parseIDMap(t, lines[1])
		if len(m) != 1 || m[0] != [3]int64{0, int64(u.uid), 1} {
			t.Errorf("want uid_map \"0 %d 1\", got %v", u.uid, m)
		}
	case 125:
		r.wantStderr(t, "/etc/subuid")
	default:
		t.Errorf("want exit 0 (single-id map) or 125 (error naming /etc/subuid):\n%s", r)
	}
}
