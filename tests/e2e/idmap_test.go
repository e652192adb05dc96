package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Issue #3: unroot runs for every user (subordinate ids or not), says what
// is missing (`unroot check`, and early errors of `run`), and can keep the
// caller's ids inside (--userns=keep-id).

func needNosub(t *testing.T) *testUser {
	t.Helper()
	if suite.nosub == nil {
		t.Skip("needs root: runs as " + nosubUserName)
	}
	return suite.nosub
}

func needSubRange(t *testing.T) *testUser {
	t.Helper()
	u := suite.user
	if u.subuid.Count == 0 || u.subgid.Count == 0 {
		t.Skipf("%s has no subuid/subgid range (run hack/setup-host.sh as root)", u.name)
	}
	return u
}

// A user without a range runs ordinary images as root in a one-id map.
func TestIdmapNoRangeRunsBusyboxAndDebian(t *testing.T) {
	t.Parallel()
	u := needNosub(t)
	s := sandboxFor(t, u)
	for _, image := range []string{busybox(), debian()} {
		r := s.runSh(image, "id -u; cat /proc/self/uid_map; echo ---; cat /proc/self/gid_map", "--net=none").ok(t)
		parts := strings.Split(r.stdout, "---\n")
		lines := strings.SplitN(parts[0], "\n", 2)
		if len(parts) != 2 || lines[0] != "0" {
			t.Fatalf("%s: unexpected output:\n%s", image, r)
		}
		if m := parseIDMap(t, lines[1]); len(m) != 1 || m[0] != [3]int64{0, int64(u.uid), 1} {
			t.Errorf("%s: want uid_map \"0 %d 1\", got %v", image, u.uid, m)
		}
		if m := parseIDMap(t, parts[1]); len(m) != 1 || m[0] != [3]int64{0, int64(u.gid), 1} {
			t.Errorf("%s: want gid_map \"0 %d 1\", got %v", image, u.gid, m)
		}
	}
	// Debian's files of other owners were squashed, and apt's sandbox user
	// is refused clearly rather than half-working.
	s.runSh(debian(), "stat -c %u /etc/shadow /usr/bin/passwd", "--net=none").wantOut(t, "0\n0")
	s.run("run", "--rm", "--tls-verify=false", "--net=none", "-u", "1000", busybox(), "true").
		wantCode(t, 125).wantStderr(t, "not mapped", "/etc/subuid")
}

func TestIdmapCheck(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	r := s.run("check").ok(t)
	for _, want := range []string{"user namespaces", "newuidmap", "subordinate ids", "namespace probe", "run directory", "storage", "ready"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("check does not mention %q:\n%s", want, r)
		}
	}
	if strings.Contains(r.stdout, "missing ") {
		t.Errorf("check reports something missing on the test machine:\n%s", r)
	}
	// XDG_RUNTIME_DIR unset: fine, and it says where the run directory is.
	s2 := newSandbox(t, nil, withoutXDGRuntimeDir())
	r = s2.run("check", "--no-probe").ok(t)
	if !strings.Contains(r.stdout, "XDG_RUNTIME_DIR is unset") || !strings.Contains(r.stdout, fmt.Sprintf("unroot-%d", s2.user.uid)) {
		t.Errorf("check does not explain the run directory fallback:\n%s", r)
	}
	// The AppArmor profile for this very binary.
	r = s.run("check", "--apparmor-profile").ok(t)
	real, _ := filepath.EvalSymlinks(suite.bin)
	for _, want := range []string{"abi <abi/4.0>,", "profile unroot " + real + " flags=(unconfined) {", "userns,", "include if exists <local/unroot>"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("profile lacks %q:\n%s", want, r)
		}
	}
}

func TestIdmapCheckWithoutRange(t *testing.T) {
	t.Parallel()
	u := needNosub(t)
	r := sandboxFor(t, u).run("check").ok(t)
	for _, want := range []string{"single-id", "sudo usermod --add-subuids", u.name, "ready"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("check does not mention %q:\n%s", want, r)
		}
	}
}

// Without newuidmap in PATH, check and run both name the package.
func TestIdmapNoNewuidmapHint(t *testing.T) {
	t.Parallel()
	needSubRange(t)
	s := sandboxFor(t, nil)
	s.pull(busybox())
	empty := filepath.Join(filepath.Dir(s.home), "empty-bin")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=" + empty}
	r := s.runWith(runOpts{env: env}, "check", "--no-probe").wantCode(t, 1)
	if !strings.Contains(r.stdout, "apt-get install uidmap") || !strings.Contains(r.stdout, "NOT READY") {
		t.Errorf("check lacks the uidmap hint:\n%s", r)
	}
	s.runWith(runOpts{env: env}, "run", "--rm", "--net=none", busybox(), "true").
		wantCode(t, 125).wantStderr(t, "newuidmap", "apt-get install uidmap")
	// Nothing was created.
	if n := s.containerCount(t); n != 0 {
		t.Errorf("%d container(s) left after the refused run", n)
	}
}

func TestIdmapKeepID(t *testing.T) {
	t.Parallel()
	u := needSubRange(t)
	s := sandboxFor(t, nil)
	want := fmt.Sprintf("%d\n%d\n%s\n/home/%s\nhome-ok", u.uid, u.gid, u.name, u.name)
	s.runSh(busybox(), `id -u; id -g; whoami; echo "$HOME"; test -d "$HOME" && test -w "$HOME" && echo home-ok`,
		"--net=none", "--userns=keep-id").wantOut(t, want)
	// The image's own files still belong to root and its users.
	s.runSh(busybox(), "stat -c %u:%g /bin/busybox /etc/passwd", "--net=none", "--userns=keep-id").wantOut(t, "0:0\n0:0")
	s.runSh(layered(), "stat -c %u:%g /data/owned101", "--net=none", "--userns=keep-id").wantOut(t, "101:101")
	// -u still picks another user.
	s.runSh(busybox(), "id -u", "--net=none", "--userns=keep-id", "-u", "0").wantOut(t, "0")
	// The composed mapping is Podman's: container uid U is host uid U.
	r := s.runSh(busybox(), "cat /proc/self/uid_map", "--net=none", "--userns=keep-id").ok(t)
	m := parseIDMap(t, r.stdout)
	if len(m) != 3 || m[1] != [3]int64{int64(u.uid), 0, 1} {
		t.Errorf("uid_map (relative to unroot's namespace, where 0 is you): want %d 0 1 in the middle, got %v", u.uid, m)
	}
	// A debian image: whoami through NSS.
	s.runSh(debian(), "id -un; id -u", "--net=none", "--userns=keep-id").wantOut(t, fmt.Sprintf("%s\n%d", u.name, u.uid))

	// What the process writes belongs to the caller on the host.
	marker := "keepid-owner-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	s.run("run", "--tls-verify=false", "--net=none", "--userns=keep-id", busybox(), "sh", "-c", "echo x > /tmp/"+marker).ok(t)
	files, _ := filepath.Glob(filepath.Join(s.storeDir(), "overlay", "*", "diff", "tmp", marker))
	if len(files) != 1 {
		t.Fatalf("want the file in one upper layer, found %v", files)
	}
	st, err := os.Stat(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if sys := st.Sys().(*syscall.Stat_t); sys.Uid != u.uid || sys.Gid != u.gid {
		t.Errorf("%s is owned by %d:%d on the host, want the caller %d:%d", files[0], sys.Uid, sys.Gid, u.uid, u.gid)
	}
}

func TestIdmapKeepIDNeedsRangeAndHostIsRefused(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	s.run("run", "--rm", "--net=none", "--userns=host", busybox(), "true").wantCode(t, 125).
		wantStderr(t, "--userns=host", "user namespace", "keep-id")
	s.run("run", "--rm", "--net=none", "--userns=bogus", busybox(), "true").wantCode(t, 125).wantStderr(t, "bogus")
	if suite.nosub != nil {
		n := sandboxFor(t, suite.nosub)
		n.run("run", "--rm", "--tls-verify=false", "--net=none", "--userns=keep-id", busybox(), "true").
			wantCode(t, 125).wantStderr(t, "keep-id", "subordinate", "usermod --add-subuids")
	}
}

// user.max_user_namespaces = 0: `run` stops before creating anything, with
// the sysctl to change. Non-root users can only do this in a user
// namespace of their own (the limit is per namespace); root sets the
// machine's and restores it.
func TestIdmapUserNamespacesDisabledInNamespace(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	s.pull(busybox())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	script := `echo 0 > /proc/sys/user/max_user_namespaces || exit 99; "$0" run --rm --net=none "$1" true`
	cmd := exec.CommandContext(ctx, "unshare", "--user", "--map-root-user", "sh", "-c", script, suite.bin, busybox())
	cmd.Dir = s.home
	cmd.Env = s.environ()
	cmd.SysProcAttr = s.sysProcAttr()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := cmd.ProcessState.ExitCode()
	if code == 99 || (err != nil && cmd.ProcessState == nil) {
		t.Skipf("cannot set the limit in a user namespace here: %v %s", err, stderr.String())
	}
	r := result{args: []string{"run (max_user_namespaces=0)"}, stdout: stdout.String(), stderr: stderr.String(), code: code}
	r.wantCode(t, 125).wantStderr(t, "user.max_user_namespaces = 0", "sysctl -w user.max_user_namespaces=")
}

func TestIdmapUserNamespacesDisabledAsRoot(t *testing.T) {
	// Not parallel: the sysctl is the machine's.
	if !suite.asRoot {
		t.Skip("needs root to change user.max_user_namespaces")
	}
	s := sandboxFor(t, nil)
	s.pull(busybox())
	const knob = "/proc/sys/user/max_user_namespaces"
	old, err := os.ReadFile(knob)
	if err != nil {
		t.Skip(err)
	}
	if err := os.WriteFile(knob, []byte("0"), 0); err != nil {
		t.Skipf("cannot change %s here: %v", knob, err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := os.WriteFile(knob, old, 0); err != nil {
				t.Errorf("RESTORING %s to %s FAILED: %v", knob, strings.TrimSpace(string(old)), err)
			}
		}
	}
	defer restore()
	r := s.run("run", "--rm", "--net=none", busybox(), "true")
	c := s.run("check")
	restore()
	r.wantCode(t, 125).wantStderr(t, "user.max_user_namespaces = 0", "sysctl -w user.max_user_namespaces=")
	c.wantCode(t, 1)
	if !strings.Contains(c.stdout, "NOT READY") || !strings.Contains(c.stdout, "max_user_namespaces") {
		t.Errorf("check does not report the disabled namespaces:\n%s", c)
	}
	if n := s.containerCount(t); n != 0 {
		t.Errorf("%d container(s) left after the refused run", n)
	}
}
