package e2e

import (
	"regexp"
	"strings"
	"testing"
)

// imageRows parses `unroot images` into "REPOSITORY:TAG" entries, checking
// the header.
func imageRows(t testing.TB, r result) []string {
	t.Helper()
	r.ok(t)
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "REPOSITORY") ||
		!strings.Contains(lines[0], "TAG") || !strings.Contains(lines[0], "IMAGE ID") {
		t.Fatalf("`unroot images` has no REPOSITORY TAG IMAGE ID header:\n%s", r)
	}
	var rows []string
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) >= 3 {
			rows = append(rows, f[0]+":"+f[1])
		}
	}
	return rows
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func TestPullImagesRmi(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	if rows := imageRows(t, s.run("images")); len(rows) != 0 {
		t.Errorf("a fresh store lists images: %v", rows)
	}
	s.pull(busybox())
	s.pull(layered())
	rows := imageRows(t, s.run("images"))
	for _, want := range []string{busybox() + ":latest", layered() + ":latest"} {
		if !contains(rows, want) {
			t.Errorf("`unroot images` lacks %s: %v", want, rows)
		}
	}
	// Pulling again is a no-op that succeeds.
	s.pull(busybox())
	if n := len(imageRows(t, s.run("images"))); n != len(rows) {
		t.Errorf("pulling again changed the image count from %d to %d", len(rows), n)
	}
	s.run("rmi", busybox()).ok(t)
	rows = imageRows(t, s.run("images"))
	if contains(rows, busybox()+":latest") || !contains(rows, layered()+":latest") {
		t.Errorf("after rmi busybox: %v", rows)
	}
	// rmi of an image that is not there fails.
	if r := s.run("rmi", busybox()); r.code == 0 {
		t.Errorf("rmi of a missing image succeeded:\n%s", r)
	}
}

// `run` pulls a missing image by itself.
func TestRunPullsMissingImage(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	s.runSh(busybox(), "echo ran").wantOut(t, "ran")
	if rows := imageRows(t, s.run("images")); !contains(rows, busybox()+":latest") {
		t.Errorf("after run, `unroot images` lacks busybox: %v", rows)
	}
}

func TestInfo(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	r := s.run("info").ok(t)
	if !strings.Contains(r.stdout, s.storeDir()) {
		t.Errorf("`unroot info` does not show the store %s:\n%s", s.storeDir(), r)
	}
}

// The TLS + htpasswd registry (suite.authReg) with busybox.
func TestAuthRegistry(t *testing.T) {
	t.Parallel()
	image := suite.authReg + "/busybox"
	creds := suite.authUser + ":" + suite.authPass

	t.Run("NoCredsFailsClearly", func(t *testing.T) {
		s := newSandbox(t, nil)
		r := s.run("pull", "--cert-dir", suite.authDir, image)
		if r.code == 0 {
			t.Fatalf("pull without credentials succeeded:\n%s", r)
		}
		r.wantStderrAny(t, "unauthorized", "authentication required", "credentials", "login")
		if strings.Contains(strings.ToLower(r.stderr), "certificate") {
			t.Errorf("the error is about certificates, not credentials:\n%s", r)
		}
	})
	t.Run("WrongPasswordFails", func(t *testing.T) {
		s := newSandbox(t, nil)
		r := s.run("pull", "--cert-dir", suite.authDir, "--creds", suite.authUser+":wrong", image)
		if r.code == 0 {
			t.Fatalf("pull with a wrong password succeeded:\n%s", r)
		}
		r.wantStderrAny(t, "unauthorized", "authentication required", "credentials", "login")
	})
	t.Run("UntrustedCertificateFails", func(t *testing.T) {
		s := newSandbox(t, nil)
		r := s.run("pull", "--creds", creds, image)
		if r.code == 0 {
			t.Fatalf("pull from a self-signed registry without --cert-dir succeeded:\n%s", r)
		}
		r.wantStderrAny(t, "certificate", "x509", "tls")
	})
	t.Run("CredsAndCertDir", func(t *testing.T) {
		s := newSandbox(t, nil)
		s.run("pull", "--creds", creds, "--cert-dir", suite.authDir, image).ok(t)
		if rows := imageRows(t, s.run("images")); !contains(rows, image+":latest") {
			t.Errorf("`unroot images` lacks %s: %v", image, rows)
		}
	})
	t.Run("CredsAndTLSVerifyFalse", func(t *testing.T) {
		s := newSandbox(t, nil)
		s.run("pull", "--tls-verify=false", "--creds", creds, image).ok(t)
		s.run("run", "--rm", image, "echo", "authed").wantOut(t, "authed")
	})
	t.Run("Login", func(t *testing.T) {
		s := newSandbox(t, nil)
		s.run("login", "--tls-verify=false", "-u", suite.authUser, "-p", suite.authPass, suite.authReg).ok(t)
		s.run("pull", "--tls-verify=false", image).ok(t)
	})
	t.Run("LoginWrongPasswordFails", func(t *testing.T) {
		s := newSandbox(t, nil)
		if r := s.run("login", "--tls-verify=false", "-u", suite.authUser, "-p", "wrong", suite.authReg); r.code == 0 {
			t.Errorf("login with a wrong password succeeded:\n%s", r)
		}
	})
}

var createdAgo = regexp.MustCompile(`\S+( \S+)?( \S+)? ago`)

// A pull that fails, for whatever reason, leaves the store's image list as
// it was.
func TestFailedPullLeavesImagesUnchanged(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	s.pull(busybox())
	// The CREATED column ("51 minutes ago") may tick over in between.
	images := func() string {
		return createdAgo.ReplaceAllString(s.run("images").ok(t).stdout, "CREATED")
	}
	before := images()
	for _, args := range [][]string{
		{"pull", "--tls-verify=false", img("nope")},
		{"pull", "--tls-verify=false", busybox() + ":no-such-tag"},
		{"pull", "--cert-dir", suite.authDir, suite.authReg + "/busybox"},
		{"pull", "--tls-verify=false", closedPort(t) + "/busybox"},
	} {
		if r := s.run(args...); r.code == 0 {
			t.Errorf("expected a failure:\n%s", r)
		}
		if after := images(); after != before {
			t.Errorf("`unroot images` changed after a failed %v:\nbefore:\n%s\nafter:\n%s", args, before, after)
		}
	}
}
