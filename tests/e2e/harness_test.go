package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ---------------------------------------------------------------- users

type idRange struct{ Start, Count int64 }

func (r idRange) String() string {
	if r.Count == 0 {
		return "none"
	}
	return fmt.Sprintf("%d+%d", r.Start, r.Count)
}

type testUser struct {
	name     string
	uid, gid uint32
	subuid   idRange // Count 0: no range in /etc/subuid
	subgid   idRange
	switchTo bool // run commands with this uid/gid (the suite runs as root)
}

func lookupUser(name string, switchTo bool) (*testUser, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("user %s: %w", name, err)
	}
	return newTestUser(u, switchTo)
}

func currentUser() (*testUser, error) {
	u, err := user.Current()
	if err != nil {
		return nil, err
	}
	return newTestUser(u, false)
}

func newTestUser(u *user.User, switchTo bool) (*testUser, error) {
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	return &testUser{
		name:     u.Username,
		uid:      uint32(uid),
		gid:      uint32(gid),
		subuid:   subIDRange("/etc/subuid", u.Username, u.Uid),
		subgid:   subIDRange("/etc/subgid", u.Username, u.Uid),
		switchTo: switchTo,
	}, nil
}

// subIDRange returns the first range FILE gives to NAME or UID.
func subIDRange(file, name, uid string) idRange {
	data, err := os.ReadFile(file)
	if err != nil {
		return idRange{}
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(strings.TrimSpace(line), ":")
		if len(f) != 3 || (f[0] != name && f[0] != uid) {
			continue
		}
		start, err1 := strconv.ParseInt(f[1], 10, 64)
		count, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 == nil && err2 == nil && count > 0 {
			return idRange{start, count}
		}
	}
	return idRange{}
}

// ---------------------------------------------------------------- sandbox

// A sandbox is one user's environment for one test: a fresh HOME (so its own
// image store), its own XDG_RUNTIME_DIR (unless unset), a clean environment.
type sandbox struct {
	t          testing.TB
	user       *testUser
	home       string
	runtimeDir string   // XDG_RUNTIME_DIR; "" = unset
	env        []string // extra K=V, applied last
	timeout    time.Duration

	mu         sync.Mutex
	transcript strings.Builder
}

type sandboxOpt func(*sandbox)

// withoutXDGRuntimeDir leaves XDG_RUNTIME_DIR unset (as after `su`, ssh
// without logind, cron): unroot must fall back to /tmp/unroot-$UID.
func withoutXDGRuntimeDir() sandboxOpt { return func(s *sandbox) { s.runtimeDir = "" } }

// withEnv adds K=V settings to every command of the sandbox.
func withEnv(kv ...string) sandboxOpt { return func(s *sandbox) { s.env = append(s.env, kv...) } }

var (
	sandboxesMu sync.Mutex
	sandboxes   = map[string]*sandbox{}
	homeSeq     int
)

// runAs runs unroot ARGS as user u (nil: the default test user) in the
// test's sandbox for that user, created on first use: every test gets its own
// HOME, shared by all its runAs calls.
func runAs(t testing.TB, u *testUser, args ...string) result {
	t.Helper()
	return sandboxFor(t, u).run(args...)
}

func sandboxFor(t testing.TB, u *testUser) *sandbox {
	if u == nil {
		u = suite.user
	}
	key := t.Name() + "\x00" + u.name
	sandboxesMu.Lock()
	s := sandboxes[key]
	sandboxesMu.Unlock()
	if s != nil {
		return s
	}
	s = newSandbox(t, u)
	sandboxesMu.Lock()
	sandboxes[key] = s
	sandboxesMu.Unlock()
	t.Cleanup(func() {
		sandboxesMu.Lock()
		delete(sandboxes, key)
		sandboxesMu.Unlock()
	})
	return s
}

// newSandbox makes a fresh home for u (nil: the default test user), removed
// when the test ends (unless UNROOT_E2E_KEEP is set).
func newSandbox(t testing.TB, u *testUser, opts ...sandboxOpt) *sandbox {
	t.Helper()
	if u == nil {
		u = suite.user
	}
	sandboxesMu.Lock()
	homeSeq++
	n := homeSeq
	sandboxesMu.Unlock()
	// Short paths: run state may hold unix sockets (108-byte limit). The
	// test's name is in base/TEST.
	base := filepath.Join(suite.state, "h", fmt.Sprint(n))
	home := filepath.Join(base, "home")
	run := filepath.Join(base, "run")
	for _, d := range []string{base, home, run} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if u.switchTo {
			if err := os.Chown(d, int(u.uid), int(u.gid)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if u.switchTo {
		_ = os.Chmod(base, 0o711)
	}
	_ = os.WriteFile(filepath.Join(base, "TEST"), []byte(t.Name()+" "+u.name+"\n"), 0o644)
	s := &sandbox{t: t, user: u, home: home, runtimeDir: run, timeout: 3 * time.Minute}
	for _, o := range opts {
		o(s)
	}
	t.Cleanup(func() {
		if t.Failed() {
			s.mu.Lock()
			t.Logf("transcript of %s's commands (home %s):\n%s", u.name, home, s.transcript.String())
			s.mu.Unlock()
		}
		if os.Getenv("UNROOT_E2E_KEEP") != "" {
			return
		}
		if err := removeTree(base, u); err != nil {
			t.Logf("cleanup: %v", err)
		}
	})
	return s
}

// storeDir is the default graph root for the sandbox's user.
func (s *sandbox) storeDir() string {
	return filepath.Join(s.home, ".local", "share", "unroot", "storage")
}

// environ is the clean environment commands run with.
func (s *sandbox) environ() []string {
	env := []string{
		"HOME=" + s.home,
		"USER=" + s.user.name,
		"LOGNAME=" + s.user.name,
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"LANG=C.UTF-8",
	}
	if s.runtimeDir != "" {
		env = append(env, "XDG_RUNTIME_DIR="+s.runtimeDir)
	}
	// UNROOT_E2E_NO_FAST=1: every command through the full unroot, to
	// test what the fast path (container/fastrun) otherwise takes over.
	if os.Getenv("UNROOT_E2E_NO_FAST") != "" {
		env = append(env, "UNROOT_NO_FAST=1")
	}
	return mergeEnv(env, s.env)
}

// mergeEnv returns base with each K=V of over replacing or adding K; a bare
// "K" (no '=') removes K.
func mergeEnv(base, over []string) []string {
	out := append([]string(nil), base...)
	for _, kv := range over {
		k, _, hasEq := strings.Cut(kv, "=")
		kept := out[:0]
		for _, e := range out {
			if ek, _, _ := strings.Cut(e, "="); ek != k {
				kept = append(kept, e)
			}
		}
		out = kept
		if hasEq {
			out = append(out, kv)
		}
	}
	return out
}

func (s *sandbox) sysProcAttr() *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Setpgid: true}
	if s.user.switchTo {
		attr.Credential = &syscall.Credential{Uid: s.user.uid, Gid: s.user.gid, Groups: []uint32{}}
	}
	return attr
}

type runOpts struct {
	stdin   io.Reader // nil: /dev/null
	env     []string  // extra K=V (or bare K to unset) for this command
	timeout time.Duration
	extra   []*os.File // descriptors 3... of unroot
}

type result struct {
	args           []string
	stdout, stderr string
	code           int   // exit status; -1 if unroot did not exit normally
	err            error // start/timeout/signal problems
	dur            time.Duration
}

func (r result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "$ unroot %s\n", shellJoin(r.args))
	fmt.Fprintf(&b, "exit %d after %s", r.code, r.dur.Round(time.Millisecond))
	if r.err != nil {
		fmt.Fprintf(&b, " (%v)", r.err)
	}
	b.WriteString("\n")
	if r.stdout != "" {
		fmt.Fprintf(&b, "--- stdout:\n%s", withNL(r.stdout))
	}
	if r.stderr != "" {
		fmt.Fprintf(&b, "--- stderr:\n%s", withNL(r.stderr))
	}
	return b.String()
}

// out is stdout without surrounding white space.
func (r result) out() string { return strings.TrimSpace(r.stdout) }

// ok fails the test unless the command exited 0.
func (r result) ok(t testing.TB) result {
	t.Helper()
	if r.code != 0 || r.err != nil {
		t.Fatalf("command failed:\n%s", r)
	}
	return r
}

// wantCode fails the test unless the command exited with code.
func (r result) wantCode(t testing.TB, code int) result {
	t.Helper()
	if r.code != code {
		t.Fatalf("want exit status %d, got:\n%s", code, r)
	}
	return r
}

// wantOut fails the test unless the command exited 0 and printed want
// (compared without surrounding white space).
func (r result) wantOut(t testing.TB, want string) result {
	t.Helper()
	r.ok(t)
	if r.out() != want {
		t.Fatalf("want stdout %q, got:\n%s", want, r)
	}
	return r
}

// wantStderr fails the test unless stderr contains every one of subs
// (case-insensitive).
func (r result) wantStderr(t testing.TB, subs ...string) result {
	t.Helper()
	low := strings.ToLower(r.stderr)
	for _, s := range subs {
		if !strings.Contains(low, strings.ToLower(s)) {
			t.Errorf("stderr does not mention %q:\n%s", s, r)
		}
	}
	return r
}

// wantStderrAny fails the test unless stderr contains one of subs
// (case-insensitive).
func (r result) wantStderrAny(t testing.TB, subs ...string) result {
	t.Helper()
	low := strings.ToLower(r.stderr)
	for _, s := range subs {
		if strings.Contains(low, strings.ToLower(s)) {
			return r
		}
	}
	t.Errorf("stderr mentions none of %q:\n%s", subs, r)
	return r
}

func (s *sandbox) run(args ...string) result {
	s.t.Helper()
	return s.runWith(runOpts{}, args...)
}

func (s *sandbox) runWith(o runOpts, args ...string) result {
	s.t.Helper()
	timeout := o.timeout
	if timeout == 0 {
		timeout = s.timeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, suite.bin, args...)
	cmd.Dir = s.home
	cmd.Env = mergeEnv(s.environ(), o.env)
	cmd.SysProcAttr = s.sysProcAttr()
	// On time-out kill the whole process group, and don't wait forever for
	// pipes held open by leftover children.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Stdin = o.stdin
	cmd.ExtraFiles = o.extra
	start := time.Now()
	err := cmd.Run()
	r := result{args: args, dur: time.Since(start), code: -1}
	r.stdout, r.stderr = stdout.String(), stderr.String()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		r.err = fmt.Errorf("timed out after %s", timeout)
	case errors.As(err, &ee):
		if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			r.err = fmt.Errorf("unroot itself was killed by %v", st.Signal())
		} else {
			r.code = ee.ExitCode()
		}
	case err != nil:
		r.err = err
	default:
		r.code = 0
	}
	s.log(r.String())
	return r
}

func (s *sandbox) log(text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.transcript.WriteString(withNL(text))
}

// runSh runs `unroot run --rm --tls-verify=false [FLAGS...] IMAGE sh -c SCRIPT`.
func (s *sandbox) runSh(image, script string, flags ...string) result {
	s.t.Helper()
	args := append([]string{"run", "--rm", "--tls-verify=false"}, flags...)
	return s.run(append(args, image, "sh", "-c", script)...)
}

// pull pulls an image of the plain registry, failing the test if it fails.
func (s *sandbox) pull(image string) {
	s.t.Helper()
	s.run("pull", "--tls-verify=false", image).ok(s.t)
}

// containerCount counts the containers in the store's containers.json
// (whatever the graph driver: overlay-containers, vfs-containers, ...).
func (s *sandbox) containerCount(t testing.TB) int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(s.storeDir(), "*-containers", "containers.json"))
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		n += strings.Count(string(data), `"id":`)
	}
	return n
}

// ---------------------------------------------------------------- pty

// ptySession is unroot running with a pseudo-terminal as its stdin, stdout
// and stderr (and controlling terminal), as in an interactive shell.
type ptySession struct {
	t      testing.TB
	s      *sandbox
	master *os.File
	cmd    *exec.Cmd
	args   []string

	mu   sync.Mutex
	buf  bytes.Buffer
	seen int // expect() consumed output up to here
	eof  chan struct{}
	done chan struct{}
	res  result
}

// startPTY starts `unroot ARGS` on a new pty (80x24, TERM=xterm).
func (s *sandbox) startPTY(args ...string) *ptySession {
	t := s.t
	t.Helper()
	master, slave, err := openPTY()
	if err != nil {
		t.Fatalf("opening a pty: %v", err)
	}
	if s.user.switchTo {
		// As login(1) would: the terminal belongs to the user.
		if err := slave.Chown(int(s.user.uid), int(s.user.gid)); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(suite.bin, args...)
	cmd.Dir = s.home
	cmd.Env = mergeEnv(s.environ(), []string{"TERM=xterm"})
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	attr := s.sysProcAttr()
	attr.Setpgid = false
	attr.Setsid = true
	attr.Setctty = true
	attr.Ctty = 0
	cmd.SysProcAttr = attr
	p := &ptySession{t: t, s: s, master: master, cmd: cmd, args: args,
		eof: make(chan struct{}), done: make(chan struct{})}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		master.Close()
		slave.Close()
		t.Fatalf("starting unroot on a pty: %v", err)
	}
	slave.Close()
	go func() {
		defer close(p.eof)
		b := make([]byte, 4096)
		for {
			n, err := master.Read(b)
			p.mu.Lock()
			p.buf.Write(b[:n])
			p.mu.Unlock()
			if err != nil {
				return // EIO once no process has the terminal open
			}
		}
	}()
	go func() {
		err := cmd.Wait()
		r := result{args: args, dur: time.Since(start), code: -1}
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
				r.err = fmt.Errorf("unroot itself was killed by %v", st.Signal())
			} else {
				r.code = ee.ExitCode()
			}
		case err != nil:
			r.err = err
		default:
			r.code = 0
		}
		// Collect what is still in flight, then stop reading.
		select {
		case <-p.eof:
		case <-time.After(2 * time.Second):
		}
		p.mu.Lock()
		r.stdout = p.buf.String()
		p.mu.Unlock()
		p.res = r
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
		master.Close()
		s.log(p.res.String())
	})
	return p
}

// send writes to the terminal (as typed keys: "\x03" is Ctrl-C, "\x04" Ctrl-D).
func (p *ptySession) send(keys string) {
	p.t.Helper()
	if _, err := p.master.Write([]byte(keys)); err != nil {
		p.t.Fatalf("writing %q to the pty: %v", keys, err)
	}
}

// expect waits until the output after the previous match contains want.
func (p *ptySession) expect(want string, timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		p.mu.Lock()
		out := p.buf.String()
		p.mu.Unlock()
		if i := strings.Index(out[p.seen:], want); i >= 0 {
			p.seen += i + len(want)
			return
		}
		select {
		case <-p.done:
			p.t.Fatalf("unroot exited before printing %q:\n%s", want, p.res)
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("no %q on the terminal within %s; terminal so far:\n%s", want, timeout, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wait waits for unroot to exit and returns its result (stdout holds
// everything the terminal showed).
func (p *ptySession) wait(timeout time.Duration) result {
	p.t.Helper()
	select {
	case <-p.done:
		return p.res
	case <-time.After(timeout):
		p.mu.Lock()
		out := p.buf.String()
		p.mu.Unlock()
		p.t.Fatalf("unroot %s did not exit within %s; terminal so far:\n%s", shellJoin(p.args), timeout, out)
		return result{}
	}
}

// openPTY opens a new pseudo-terminal pair with golang.org/x/sys/unix. The
// master is non-blocking (so Close interrupts a pending Read); the slave is
// an ordinary blocking file for the child.
func openPTY() (master, slave *os.File, err error) {
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(mfd)
		return nil, nil, fmt.Errorf("unlockpt: %w", err)
	}
	n, err := unix.IoctlGetUint32(mfd, unix.TIOCGPTN)
	if err != nil {
		unix.Close(mfd)
		return nil, nil, fmt.Errorf("ptsname: %w", err)
	}
	name := fmt.Sprintf("/dev/pts/%d", n)
	sfd, err := unix.Open(name, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(mfd)
		return nil, nil, err
	}
	if err := unix.IoctlSetWinsize(sfd, unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: 80}); err != nil {
		unix.Close(mfd)
		unix.Close(sfd)
		return nil, nil, err
	}
	return os.NewFile(uintptr(mfd), "/dev/ptmx"), os.NewFile(uintptr(sfd), name), nil
}

// ---------------------------------------------------------------- misc

// removeTree removes dir, which may hold files of u's subordinate ids (a
// store's layers). Root removes anything; a normal user needs a user
// namespace in which those ids are mapped (unshare --map-auto, util-linux
// 2.38), else the leftovers are reported.
func removeTree(dir string, u *testUser) error {
	if os.Geteuid() == 0 {
		return os.RemoveAll(dir)
	}
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	out, err := exec.Command("unshare", "--map-root-user", "--map-auto", "rm", "-rf", dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("removing %s in a user namespace: %v: %s", dir, err, out)
	}
	return nil
}

// closedPort returns a 127.0.0.1 address nothing listens on.
func closedPort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// parseIDMap parses /proc/PID/uid_map or gid_map text.
func parseIDMap(t testing.TB, text string) [][3]int64 {
	t.Helper()
	var m [][3]int64
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			t.Fatalf("bad id map line %q in:\n%s", sc.Text(), text)
		}
		var e [3]int64
		for i := range f {
			v, err := strconv.ParseInt(f[i], 10, 64)
			if err != nil {
				t.Fatalf("bad id map line %q: %v", sc.Text(), err)
			}
			e[i] = v
		}
		m = append(m, e)
	}
	return m
}

func withNL(s string) string {
	if s == "" || strings.HasSuffix(s, "\n") {
		return s
	}
	return s + "\n"
}

func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,@+%", r))
		}) < 0 {
			q[i] = a
		} else {
			q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(q, " ")
}
