package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// lifecycleSandbox is a sandbox whose containers are all force-removed when
// the test ends: detached containers outlive the commands that made them.
func lifecycleSandbox(t *testing.T, opts ...sandboxOpt) *sandbox {
	s := sandboxFor(t, nil)
	for _, o := range opts {
		o(s)
	}
	t.Cleanup(func() {
		r := s.run("ps", "-aq", "--no-trunc")
		if ids := strings.Fields(r.stdout); len(ids) > 0 {
			s.run(append([]string{"rm", "-f"}, ids...)...)
		}
	})
	return s
}

// eventually polls f until it returns true or the timeout passes.
func eventually(t *testing.T, what string, timeout time.Duration, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func psLine(t *testing.T, s *sandbox, name string) string {
	t.Helper()
	return s.run("ps", "-a", "--filter", "name=^"+name+"$", "--format", "{{.Names}} {{.Status}}").ok(t).out()
}

type inspected struct {
	ID    string `json:"Id"`
	Name  string
	State struct {
		Status     string
		Running    bool
		Restarting bool
		Pid        int
		ExitCode   int
		OOMKilled  bool
		StartedAt  string
		FinishedAt string
	}
	RestartCount int
	Config       struct {
		Image  string
		Cmd    []string
		Env    []string
		Labels map[string]string
	}
	HostConfig struct {
		RestartPolicy struct {
			Name              string
			MaximumRetryCount int
		}
	}
	Mounts []struct {
		Type, Name, Source, Destination string
		RW                              bool
	}
}

func inspect(t *testing.T, s *sandbox, ref string) inspected {
	t.Helper()
	r := s.run("inspect", ref).ok(t)
	var out []inspected
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || len(out) != 1 {
		t.Fatalf("inspect output: %v\n%s", err, r)
	}
	return out[0]
}

// The whole life of a detached container: run -d, ps, logs (after unroot
// exited), stop, start again with the files of the first run, rm.
func TestLifecycleDetached(t *testing.T) {
	t.Parallel()
	s := lifecycleSandbox(t)
	start := time.Now()
	r := s.run("run", "-d", "--tls-verify=false", "--name", "web", busybox(), "sh", "-c",
		`echo run >> /data.txt; echo "count=$(wc -l < /data.txt)"; echo started; echo oops >&2; trap "echo got TERM; exit 3" TERM; while true; do sleep 0.2; done`).ok(t)
	id := r.out()
	if len(id) != 64 {
		t.Fatalf("run -d must print the full id, got %q", id)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("run -d took %s", d)
	}
	if got := psLine(t, s, "web"); !strings.HasPrefix(got, "web Up") {
		t.Fatalf("ps: want web Up..., got %q", got)
	}
	// ps without -a lists running containers; -q ids (short), --no-trunc full.
	if got := s.run("ps", "-q").ok(t).out(); got != id[:12] {
		t.Errorf("ps -q: want %s, got %q", id[:12], got)
	}
	if got := s.run("ps", "-q", "--no-trunc", "--filter", "id="+id[:5]).ok(t).out(); got != id {
		t.Errorf("ps -q --no-trunc --filter id=: want %s, got %q", id, got)
	}
	if got := s.run("ps", "--format", "{{.ID}} {{.Names}} {{.Image}}").ok(t).out(); got != id[:12]+" web "+busybox() {
		t.Errorf("ps --format: got %q", got)
	}
	if got := s.run("ps", "--format", "table {{.Names}}\t{{.Command}}").ok(t).out(); !strings.HasPrefix(got, "NAMES\tCOMMAND\nweb\t\"sh -c echo run") || !strings.HasSuffix(got, "…\"") {
		t.Errorf("ps --format table: got %q", got)
	}
	if got := s.run("ps", "-q", "--filter", "status=exited").ok(t).out(); got != "" {
		t.Errorf("ps --filter status=exited: want nothing, got %q", got)
	}
	// The logs are written by the detached process: unroot run is gone.
	eventually(t, "the logs", 20*time.Second, func() bool {
		return strings.Contains(s.run("logs", "web").stdout, "started")
	})
	lr := s.run("logs", "-t", id[:8]).ok(t)
	if !strings.Contains(lr.stderr, "oops") || strings.Contains(lr.stdout, "oops") {
		t.Errorf("logs: stderr must go to stderr:\n%s", lr)
	}
	if !strings.Contains(lr.stdout, time.Now().UTC().Format("2006-01-02")) && !strings.Contains(lr.stdout, time.Now().Format("2006-01-02")) {
		t.Errorf("logs -t: no timestamps:\n%s", lr)
	}
	in := inspect(t, s, "web")
	if len(in.Config.Cmd) != 3 || in.Config.Cmd[0] != "sh" || !strings.Contains(strings.Join(in.Config.Env, " "), "PATH=") {
		t.Errorf("inspect: Config.Cmd %q, Config.Env %q", in.Config.Cmd, in.Config.Env)
	}
	if in.ID != id || in.Name != "/web" || !in.State.Running || in.State.Status != "running" || in.State.Pid <= 0 {
		t.Errorf("inspect of a running container: %+v", in)
	}
	// The container's PID 1 is a process of the user's on the host.
	if _, err := os.Stat("/proc/" + strconv.Itoa(in.State.Pid)); err != nil {
		t.Errorf("inspect's Pid %d: %v", in.State.Pid, err)
	}

	sr := s.run("stop", "-t", "20", "web").ok(t)
	if sr.out() != "web" {
		t.Errorf("stop prints the container: %q", sr.out())
	}
	if sr.dur > 15*time.Second {
		t.Errorf("stop waited %s: the TERM trap should have ended it at once", sr.dur)
	}
	if got := psLine(t, s, "web"); !strings.HasPrefix(got, "web Exited (3)") {
		t.Errorf("ps -a after stop: want web Exited (3), got %q", got)
	}
	if got := s.run("wait", "web").ok(t).out(); got != "3" {
		t.Errorf("wait: want 3, got %q", got)
	}
	in = inspect(t, s, id)
	if in.State.Running || in.State.Status != "exited" || in.State.ExitCode != 3 || in.State.FinishedAt == "" {
		t.Errorf("inspect after stop: %+v", in.State)
	}
	if !strings.Contains(s.run("logs", "web").stdout, "got TERM") {
		t.Errorf("logs after stop miss the last output:\n%s", s.run("logs", "web"))
	}

	// start keeps the writable layer: the file written in the first run is
	// there, with a second line now.
	s.run("start", "web").ok(t)
	if got := psLine(t, s, "web"); !strings.HasPrefix(got, "web Up") {
		t.Fatalf("ps after start: %q", got)
	}
	eventually(t, "the second run's output", 20*time.Second, func() bool {
		return strings.Count(s.run("logs", "web").stdout, "started") == 2
	})
	// The last three lines: count=2, started (stdout) and oops (stderr).
	if r := s.run("logs", "--tail", "3", "web").ok(t); r.out() != "count=2\nstarted" || strings.TrimSpace(r.stderr) != "oops" {
		t.Errorf("start must keep the files of the first run; logs --tail 3:\n%s", r)
	}
	s.run("kill", "-s", "TERM", "web").ok(t)
	if got := s.run("wait", "web").ok(t).out(); got != "3" {
		t.Errorf("wait after kill -s TERM: want 3, got %q", got)
	}
	s.run("restart", "-t", "1", "web").ok(t)
	eventually(t, "the third run's output", 20*time.Second, func() bool {
		return strings.Contains(s.run("logs", "web").stdout, "count=3")
	})
	s.run("rm", "web").wantCode(t, 1).wantStderr(t, "running")
	s.run("rm", "-f", "-v", "web").ok(t)
	if got := s.run("ps", "-aq").ok(t).out(); got != "" {
		t.Errorf("ps -a after rm: %q", got)
	}
	if n := s.containerCount(t); n != 0 {
		t.Errorf("rm left %d containers in the store", n)
	}
}

// start -a runs the container again in the foreground, with its exit code.
func TestLifecycleStartAttach(t *testing.T) {
	t.Parallel()
	s := lifecycleSandbox(t)
	r := s.run("run", "--tls-verify=false", "--name", "once", busybox(), "sh", "-c", `echo x >> /f; echo "lines $(wc -l < /f)"; exit 4`).wantCode(t, 4)
	if r.out() != "lines 1" {
		t.Errorf("run: want lines 1, got:\n%s", r)
	}
	// A foreground run (not --rm) is recorded too.
	if got := psLine(t, s, "once"); !strings.HasPrefix(got, "once Exited (4)") {
		t.Errorf("ps -a after a foreground run: %q", got)
	}
	r = s.run("start", "-a", "once").wantCode(t, 4)
	if r.out() != "lines 2" {
		t.Errorf("start -a: want lines 2, got:\n%s", r)
	}
	// Names are unique; generated names look like Docker's.
	s.run("run", "--tls-verify=false", "--name", "once", busybox(), "true").wantCode(t, 125).wantStderr(t, "already in use")
	id := s.run("run", "-d", "--tls-verify=false", busybox(), "true").ok(t).out()
	name := inspect(t, s, id[:12]).Name
	if !strings.Contains(name, "_") {
		t.Errorf("generated name %q is not adjective_noun", name)
	}
	if got := s.run("wait", id).ok(t).out(); got != "0" {
		t.Errorf("wait: %q", got)
	}
	// A command that cannot run is a failure of run -d, with Docker's code.
	s.run("run", "-d", "--tls-verify=false", "--name", "bad", busybox(), "no-such-command").wantCode(t, 127).wantStderr(t, "no-such-command")
	if got := psLine(t, s, "bad"); !strings.HasPrefix(got, "bad Exited (127)") {
		t.Errorf("ps -a after a failed run -d: %q", got)
	}
	s.run("rm", strings.TrimPrefix(name, "/"), "once", "bad").ok(t)
	// run -d --rm: gone, layer and record, once it exits.
	s.run("run", "-d", "--rm", "--tls-verify=false", "--name", "temp", busybox(), "sleep", "0.5").ok(t)
	eventually(t, "the --rm container to go", 20*time.Second, func() bool {
		return s.run("ps", "-aq", "--filter", "name=temp").out() == ""
	})
	if n := s.containerCount(t); n != 0 {
		t.Errorf("rm left %d containers in the store", n)
	}
}

// kill -9 of the container's processes on the host side: ps -a tells the
// truth, nothing hangs, rm and start work.
func TestLifecycleKilledMonitor(t *testing.T) {
	t.Parallel()
	// About the monitor and the detached host process, which a container
	// left to its init has not (TestLifecycleOneProcess kills that init).
	s := lifecycleSandbox(t, withEnv("UNROOT_ONE_PROCESS=0"))
	for _, name := range []string{"a", "b"} {
		s.run("run", "-d", "--tls-verify=false", "--name", name, busybox(), "sleep", "1000").ok(t)
	}
	state := func(name string) map[string]any {
		id := inspect(t, s, name).ID
		b, err := os.ReadFile(filepath.Join(s.runtimeDir, "unroot", "containers", id, "state.json"))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	// a: the monitor (root in the user namespace) dies: the container
	// with it, and the detached process records it.
	mon := int(state("a")["monitor_pid"].(float64))
	// The monitor, once it waits as the small binary, and the init run on
	// one P: each P more costs ~12 kB of caches, ~1 MB per idle container
	// on a 64-CPU login node.
	for _, pid := range []int{mon, int(state("a")["init_pid"].(float64))} {
		eventually(t, fmt.Sprintf("process %d to wait with GOMAXPROCS=1", pid), 10*time.Second, func() bool {
			env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
			return strings.Contains("\x00"+string(env), "\x00GOMAXPROCS=1\x00") &&
				strings.Contains(string(env), "_UNROOT_STAGE=monitor-wait") == (pid == mon)
		})
	}
	if err := syscall.Kill(mon, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a to be exited", 20*time.Second, func() bool {
		return strings.HasPrefix(psLine(t, s, "a"), "a Exited (137)")
	})
	// b: the detached per-container process itself dies: nobody records
	// anything, but ps must not believe it runs.
	pid := int(state("b")["pid"].(float64))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b to be exited", 20*time.Second, func() bool {
		return strings.HasPrefix(psLine(t, s, "b"), "b Exited")
	})
	init := inspect(t, s, "b").State.Pid
	if init != 0 {
		t.Errorf("inspect of a dead container still has a pid: %d", init)
	}
	s.run("start", "a").ok(t)
	if got := psLine(t, s, "a"); !strings.HasPrefix(got, "a Up") {
		t.Errorf("start after kill -9: %q", got)
	}
	s.run("exec", "a", "touch", "/kept").ok(t)

	// A reboot: every process gone, the run directory (a tmpfs) empty.
	pid = int(state("a")["pid"].(float64))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a's processes to go", 10*time.Second, func() bool {
		return syscall.Kill(pid, 0) != nil || procState(pid) == "Z"
	})
	if err := removeTree(filepath.Join(s.runtimeDir, "unroot"), s.user); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		if got := psLine(t, s, name); got != name+" Exited (unknown)" {
			t.Errorf("ps -a after a reboot: want %s Exited (unknown), got %q", name, got)
		}
	}
	s.run("start", "a").ok(t)
	s.run("exec", "a", "test", "-e", "/kept").ok(t)
	s.run("rm", "-f", "a", "b").ok(t)
	if n := s.containerCount(t); n != 0 {
		t.Errorf("rm left %d containers in the store", n)
	}
}

// exec runs processes in a running container through its init: exit
// codes, -e -w -u, stdin, -d, a terminal with -it.
func TestLifecycleExec(t *testing.T) {
	t.Parallel()
	s := lifecycleSandbox(t)
	s.run("run", "-d", "--tls-verify=false", "--name", "box", "-e", "FROM_RUN=1", "-w", "/srv", busybox(), "sh", "-c", "echo hello > /srv/greeting; exec sleep 1000").ok(t)
	s.run("exec", "box", "sh", "-c", "exit 5").wantCode(t, 5)
	s.run("exec", "box", "nonexistent-cmd").wantCode(t, 127)
	eventually(t, "the container's file", 10*time.Second, func() bool {
		return s.run("exec", "box", "cat", "/srv/greeting").out() == "hello"
	})
	// The container's environment and working directory by default.
	s.run("exec", "box", "sh", "-c", `echo "$FROM_RUN $PWD"`).wantOut(t, "1 /srv")
	s.run("exec", "-e", "FOO=bar", "-w", "/tmp", "-u", "nobody", "box", "sh", "-c", `echo "$FOO $PWD $(id -u) $FROM_RUN"`).wantOut(t, "bar /tmp 65534 1")
	// The process is in the container: its PID namespace, its init as parent.
	s.run("exec", "box", "sh", "-c", `echo $PPID; cut -c1-11 /proc/1/comm`).wantOut(t, "1\nunroot-init")
	s.runWith(runOpts{stdin: strings.NewReader("piped\n")}, "exec", "-i", "box", "cat").wantOut(t, "piped")
	// Without -i, stdin is empty.
	s.runWith(runOpts{stdin: strings.NewReader("piped\n")}, "exec", "box", "cat").wantOut(t, "")
	s.run("exec", "-d", "box", "sh", "-c", "sleep 0.3; touch /tmp/detached-done").ok(t)
	eventually(t, "the detached exec", 10*time.Second, func() bool {
		return s.run("exec", "box", "test", "-e", "/tmp/detached-done").code == 0
	})
	// The same capabilities, no_new_privs and cgroup as the main process.
	main := s.run("exec", "box", "sh", "-c", "grep -E '^(Cap|NoNewPrivs)' /proc/1/status; echo; cat /proc/self/cgroup").ok(t)
	_ = main
	want := s.run("exec", "box", "sh", "-c", "pid=$(pidof sleep); grep -E '^(Cap|NoNewPrivs)' /proc/$pid/status; echo; cat /proc/$pid/cgroup").ok(t).out()
	got := s.run("exec", "box", "sh", "-c", "grep -E '^(Cap|NoNewPrivs)' /proc/self/status; echo; cat /proc/self/cgroup").ok(t).out()
	if got != want {
		t.Errorf("an exec'd process differs from the container's:\nexec:\n%s\nmain:\n%s", got, want)
	}
	if !strings.Contains(got, "NoNewPrivs:\t1") {
		t.Errorf("exec without no_new_privs:\n%s", got)
	}

	p := s.startPTY("exec", "-it", "box", "sh")
	p.expect("# ", 30*time.Second)
	p.send("tty; echo in-$((2+3))\r")
	p.expect("/dev/pts/", 10*time.Second)
	p.expect("in-5", 10*time.Second)
	p.send("exit 3\r")
	p.wait(30*time.Second).wantCode(t, 3)

	s.run("stop", "-t", "1", "box").ok(t)
	s.run("exec", "box", "true").wantCode(t, 125).wantStderr(t, "not running")
}

// CVE-2019-5736 class: from an exec'd process, no unroot binary on the host
// can be opened through /proc (the container's init and the monitor are
// not dumpable), and nothing of the host's filesystem is reachable.
func TestLifecycleExecSecurity(t *testing.T) {
	t.Parallel()
	s := lifecycleSandbox(t)
	s.run("run", "-d", "--tls-verify=false", "--name", "sec", busybox(), "sleep", "1000").ok(t)
	script := `
found=0
for d in /proc/[0-9]*; do
	[ -r $d/comm ] || continue
	comm=$(cat $d/comm 2>/dev/null)
	case "$comm" in unroot*) found=1;; *) continue;; esac
	if head -c 4 $d/exe >/dev/null 2>&1; then echo "READABLE $d/exe ($comm)"; fi
	if (echo x >> $d/exe) 2>/dev/null; then echo "WRITABLE $d/exe ($comm)"; fi
	if ls $d/root/ >/dev/null 2>&1; then echo "ROOT $d/root ($comm)"; fi
	# Root of the container may list the init's descriptor numbers, not
	# follow or open them.
	for f in $d/fd/* $d/map_files/*; do
		[ -e "$f" ] || [ -L "$f" ] || continue
		if readlink $f >/dev/null 2>&1; then echo "FD-LINK $f ($comm)"; fi
		if (: < $f) 2>/dev/null; then echo "FD-OPEN $f ($comm)"; fi
	done
	if ls $d/cwd/ >/dev/null 2>&1; then echo "CWD $d/cwd ($comm)"; fi
done
[ $found = 1 ] || echo "NO-INIT-FOUND"
for f in "$@"; do [ -e "$f" ] && echo "HOST-PATH $f"; done
exit 0
`
	hostPaths := []string{suite.bin, s.home, suite.state, s.runtimeDir}
	for _, user := range []string{"0", "nobody"} {
		r := s.run(append([]string{"exec", "-u", user, "sec", "sh", "-c", script, "sh"}, hostPaths...)...).ok(t)
		if r.out() != "" {
			t.Errorf("exec -u %s: the host is reachable from the container:\n%s", user, r)
		}
	}
	// The exec socket is the user's alone.
	st, err := os.Stat(filepath.Join(s.runtimeDir, "unroot", "containers", inspect(t, s, "sec").ID, "exec.sock"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o600 {
		t.Errorf("exec.sock: mode %v, want a socket with 0600", st.Mode())
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Uid != suite.user.uid {
		t.Errorf("exec.sock belongs to uid %d, not the user's %d", sys.Uid, suite.user.uid)
	}
}

// procState is the state letter of /proc/PID/stat ("" if gone).
func procState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+3 > len(s) {
		return ""
	}
	return s[i+2 : i+3]
}

// logs -f follows a running container to its end; --since filters; the
// stop signal is --stop-signal's.
func TestLifecycleLogsFollowAndStopSignal(t *testing.T) {
	t.Parallel()
	s := lifecycleSandbox(t)
	s.run("run", "-d", "--tls-verify=false", "--name", "ticker", "--stop-signal", "USR1", busybox(), "sh", "-c",
		`trap "echo got USR1; exit 7" USR1; trap "echo got TERM; exit 8" TERM; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done`).ok(t)
	eventually(t, "some ticks", 20*time.Second, func() bool {
		return strings.Contains(s.run("logs", "ticker").stdout, "tick 3")
	})
	done := make(chan result, 1)
	go func() { done <- s.run("logs", "-f", "--tail", "1", "ticker") }()
	time.Sleep(1500 * time.Millisecond)
	s.run("stop", "ticker").ok(t)
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("logs -f did not end with the container")
	}
	r.ok(t)
	lines := strings.Split(r.out(), "\n")
	if len(lines) < 5 || !strings.HasPrefix(lines[0], "tick ") || lines[len(lines)-1] != "got USR1" {
		t.Errorf("logs -f --tail 1: want ticks then got USR1, got:\n%s", r)
	}
	if got := s.run("wait", "ticker").ok(t).out(); got != "7" {
		t.Errorf("--stop-signal USR1: want exit 7, got %q", got)
	}
	if got := s.run("logs", "--since", "1h", "ticker").ok(t).out(); !strings.Contains(got, "tick 1\n") {
		t.Errorf("logs --since 1h misses lines:\n%s", got)
	}
	if got := s.run("logs", "--since", time.Now().Add(time.Hour).Format(time.RFC3339), "ticker").ok(t).out(); got != "" {
		t.Errorf("logs --since the future: %q", got)
	}
	// The log is in the k8s-file format, next to the config.
	id := inspect(t, s, "ticker").ID
	b, err := os.ReadFile(filepath.Join(s.home, ".local", "share", "unroot", "containers", id, "ctr.log"))
	if err != nil {
		t.Fatal(err)
	}
	first := strings.SplitN(string(b), "\n", 2)[0]
	if f := strings.SplitN(first, " ", 4); len(f) != 4 || f[1] != "stdout" || f[2] != "F" || f[3] != "tick 1" {
		t.Errorf("log line %q is not k8s-file", first)
	} else if _, err := time.Parse(time.RFC3339Nano, f[0]); err != nil {
		t.Errorf("log line %q: %v", first, err)
	}
}

// -v bind mounts (rw, ro, named), --tmpfs, --read-only, --env-file.
func TestLifecycleVolumes(t *testing.T) {
	t.Parallel()
	s := lifecycleSandbox(t)
	host := filepath.Join(s.home, "shared")
	if err := os.MkdirAll(filepath.Join(host, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(host, "from-host"), []byte("hi from host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	envFile := filepath.Join(s.home, "env.list")
	if err := os.WriteFile(envFile, []byte("# comment\nFROM_FILE=yes\n\nOVERRIDDEN=file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{s.home, host, filepath.Join(host, "sub"), filepath.Join(host, "from-host"), envFile} {
		if s.user.switchTo {
			_ = os.Chown(p, int(s.user.uid), int(s.user.gid))
		}
	}
	s.runSh(busybox(), `cat /mnt/from-host; echo written > /mnt/sub/from-ctr; echo ro > /ro/x 2>/dev/null && echo RO-WRITABLE; cat /ro/from-host`,
		"-v", host+":/mnt", "-v", host+":/ro:ro").ok(t)
	r := s.runSh(busybox(), `cat /mnt/from-host; echo written > /mnt/sub/from-ctr; echo ro > /ro/x 2>/dev/null && echo RO-WRITABLE; cat /ro/sub/from-ctr`,
		"-v", host+":/mnt", "-v", host+":/ro:ro").ok(t)
	if r.out() != "hi from host\nwritten" {
		t.Errorf("bind mounts:\n%s", r)
	}
	if b, err := os.ReadFile(filepath.Join(host, "sub", "from-ctr")); err != nil || string(b) != "written\n" {
		t.Errorf("the container's write to the volume is not on the host: %q %v", b, err)
	}
	// A named volume outlives its container.
	s.runSh(busybox(), "echo kept > /v/file", "-v", "myvol:/v").ok(t)
	s.runSh(busybox(), "cat /v/file", "-v", "myvol:/v").wantOut(t, "kept")
	// --tmpfs: a fresh tmpfs, noexec by default.
	s.runSh(busybox(), "grep ' /scratch ' /proc/mounts | cut -d' ' -f3,4 | tr , ' '", "--tmpfs", "/scratch:size=1m").ok(t)
	r = s.runSh(busybox(), "grep ' /scratch ' /proc/mounts", "--tmpfs", "/scratch:size=1m")
	if !strings.Contains(r.stdout, "tmpfs") || !strings.Contains(r.stdout, "noexec") {
		t.Errorf("--tmpfs:\n%s", r)
	}
	// --read-only: the root refuses writes, volumes and tmpfs do not.
	s.runSh(busybox(), "touch /rootfile 2>/dev/null && echo ROOT-WRITABLE; touch /t/ok /mnt/ok && echo fine", "--read-only", "--tmpfs", "/t", "-v", host+":/mnt").wantOut(t, "fine")
	// --env-file, then -e over it.
	s.runSh(busybox(), `echo "$FROM_FILE $OVERRIDDEN"`, "--env-file", envFile, "-e", "OVERRIDDEN=flag").wantOut(t, "yes flag")
	// A symlink on the way to a mount point resolves inside the rootfs,
	// never to the host's directories.
	victim := filepath.Join(suite.state, "victim-"+strconv.Itoa(os.Getpid()))
	if err := os.Symlink("/../../../.."+victim, filepath.Join(host, "escape")); err != nil {
		t.Fatal(err)
	}
	s.runSh(busybox(), "test -e "+victim+"/inner/from-host && echo inside", "-v", host+":/mnt", "-v", host+":/mnt/escape/inner").wantOut(t, "inside")
	if _, err := os.Lstat(victim); err == nil {
		t.Errorf("a volume's mount point was created on the host at %s", victim)
	}
	s.run("run", "-v", "relative-missing/path:/x", busybox(), "true").wantCode(t, 125).wantStderr(t, "absolute")
}

// cp both ways, port, top.
func TestLifecycleCpPortTop(t *testing.T) {
	t.Parallel()
	s := lifecycleSandbox(t)
	hp := closedPort(t) // 127.0.0.1:PORT
	s.run("run", "-d", "--tls-verify=false", "--name", "c1", "-p", hp+":80", busybox(), "sh", "-c", "mkdir -p /srv/tree/sub; echo deep > /srv/tree/sub/f; ln -s sub/f /srv/tree/link; exec sleep 1000").ok(t)
	s.run("port", "c1").wantOut(t, "80/tcp -> "+hp)
	s.run("port", "c1", "80").wantOut(t, hp)
	if got := s.run("ps", "--format", "{{.Ports}}").ok(t).out(); got != hp+"->80/tcp" {
		t.Errorf("ps --format {{.Ports}}: %q", got)
	}
	eventually(t, "the tree", 10*time.Second, func() bool { return s.run("exec", "c1", "test", "-L", "/srv/tree/link").code == 0 })

	// Out of the container: into an existing directory, and to a new name.
	out := filepath.Join(s.home, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if s.user.switchTo {
		_ = os.Chown(out, int(s.user.uid), int(s.user.gid))
	}
	s.run("cp", "c1:/srv/tree", out).ok(t)
	if b, err := os.ReadFile(filepath.Join(out, "tree", "sub", "f")); err != nil || string(b) != "deep\n" {
		t.Errorf("cp from the container: %q %v", b, err)
	}
	if l, err := os.Readlink(filepath.Join(out, "tree", "link")); err != nil || l != "sub/f" {
		t.Errorf("cp keeps symlinks: %q %v", l, err)
	}
	s.run("cp", "c1:/srv/tree/sub/f", filepath.Join(out, "renamed")).ok(t)
	if b, err := os.ReadFile(filepath.Join(out, "renamed")); err != nil || string(b) != "deep\n" {
		t.Errorf("cp of a file to a new name: %q %v", b, err)
	}
	// Into the container.
	if err := os.WriteFile(filepath.Join(out, "new.txt"), []byte("from host\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if s.user.switchTo {
		_ = os.Chown(filepath.Join(out, "new.txt"), int(s.user.uid), int(s.user.gid))
	}
	s.run("cp", filepath.Join(out, "new.txt"), "c1:/srv/").ok(t)
	s.run("cp", filepath.Join(out, "tree"), "c1:/srv/copied").ok(t)
	s.run("exec", "c1", "sh", "-c", "cat /srv/new.txt; stat -c %a /srv/new.txt; cat /srv/copied/sub/f").wantOut(t, "from host\n640\ndeep")
	s.run("cp", "c1:/nonexistent", out).wantCode(t, 125)

	r := s.run("top", "c1").ok(t)
	if !strings.Contains(r.stdout, "sleep 1000") || !strings.Contains(r.stdout, "unroot-init") {
		t.Errorf("top:\n%s", r)
	}
}

// exec in a --userns=keep-id container (a nested user namespace).
func TestLifecycleExecKeepID(t *testing.T) {
	t.Parallel()
	u := needSubRange(t)
	s := lifecycleSandbox(t)
	s.run("run", "-d", "--tls-verify=false", "--net=none", "--userns=keep-id", "--name", "kid", busybox(), "sleep", "1000").ok(t)
	s.run("exec", "kid", "id", "-u").wantOut(t, strconv.Itoa(int(u.uid)))
	s.run("exec", "-u", "0", "kid", "id", "-u").wantOut(t, "0")
	st, err := os.Stat(filepath.Join(s.runtimeDir, "unroot", "containers", inspect(t, s, "kid").ID, "exec.sock"))
	if err != nil {
		t.Fatal(err)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); !ok || sys.Uid != u.uid || st.Mode().Perm() != 0o600 {
		t.Errorf("exec.sock: %v owned by %v, want 0600 and uid %d", st.Mode(), st.Sys(), u.uid)
	}
}

// The seed's workflow: ten PostgreSQL servers from a Debian image with
// postgresql, detached and in parallel, each with a published port; data
// kept across stop and start. Needs the optional fixture built by
// tests/fixtures/postgres-image.sh (built when the suite runs as root;
// skipped otherwise unless already cached).
func TestLifecyclePostgresTen(t *testing.T) {
	t.Parallel()
	// Built and cached by the fixture script (as root: `make test` runs
	// as root in CI); as another user it only prints a cached one.
	out, err := fixture("postgres-image.sh")
	if err != nil {
		t.Skipf("no PostgreSQL fixture (build it as root with tests/fixtures/postgres-image.sh): %v", err)
	}
	layout := strings.TrimSpace(lastLine(out))
	ref := suite.reg + "/postgres:15"
	if _, err := fixture("push.sh", layout, "postgres:15", ref); err != nil {
		t.Fatal(err)
	}
	s := lifecycleSandbox(t)
	s.pull(ref)
	const n = 10
	ports := make([]string, n)
	errs := make(chan error, n)
	for i := range n {
		ports[i] = closedPort(t)
		go func() {
			r := s.run("run", "-d", "--name", fmt.Sprintf("pg%d", i), "-p", ports[i]+":5432", ref)
			if r.code != 0 {
				errs <- fmt.Errorf("%s", r)
				return
			}
			errs <- nil
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	ready := func(i int) bool {
		return s.run("exec", fmt.Sprintf("pg%d", i), "pg_isready", "-q", "-h", "/tmp").code == 0
	}
	for i := range n {
		eventually(t, fmt.Sprintf("pg%d to accept connections", i), 3*time.Minute, func() bool { return ready(i) })
		name := fmt.Sprintf("pg%d", i)
		s.run("exec", name, "psql", "-h", "/tmp", "-qc", fmt.Sprintf("create table t (v int); insert into t values (%d)", i)).ok(t)
		// The published port reaches the server: a query from the host.
		host, port, _ := net.SplitHostPort(ports[i])
		out, err := exec.Command("psql", "-h", host, "-p", port, "-U", "postgres", "-tAc", "select v * 10 from t").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != fmt.Sprint(i*10) {
			t.Errorf("%s: psql from the host through %s: %v: %s", name, ports[i], err, out)
		}
	}
	t.Logf("ten idle PostgreSQL containers: %s", pssReport(t, s, n))
	s.run(append([]string{"stop"}, names("pg", n)...)...).ok(t)
	if got := s.run("ps", "-q").ok(t).out(); got != "" {
		t.Errorf("ps after stop: %q", got)
	}
	s.run("start", "pg3").ok(t)
	eventually(t, "pg3 after a restart", 2*time.Minute, func() bool { return ready(3) })
	s.run("exec", "pg3", "psql", "-h", "/tmp", "-tAc", "select v from t").wantOut(t, "3")
}

func names(prefix string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%s%d", prefix, i))
	}
	return out
}

// pssReport sums the PSS (/proc/PID/smaps_rollup) of the unroot processes
// of each running container: the detached host-side process and its
// descendants (and a resident network's slirp4netns), but not the
// container's own processes below its init.
func pssReport(t *testing.T, s *sandbox, n int) string {
	total := 0
	counted := 0
	for _, id := range strings.Fields(s.run("ps", "-q", "--no-trunc").ok(t).stdout) {
		b, err := os.ReadFile(filepath.Join(s.runtimeDir, "unroot", "containers", id, "state.json"))
		if err != nil {
			continue
		}
		var st struct {
			Pid     int `json:"pid"`
			InitPid int `json:"init_pid"`
		}
		if json.Unmarshal(b, &st) != nil {
			continue
		}
		sum := 0
		var walk func(pid int)
		walk = func(pid int) {
			sum += pss(pid)
			if pid == st.InitPid {
				return // the container's processes are not unroot's
			}
			for _, c := range childrenOf(pid) {
				walk(c)
			}
		}
		walk(st.Pid)
		// A resident network's slirp4netns is nobody's child of ours.
		if sp := residentSlirp(st.InitPid); sp > 0 {
			sum += pss(sp)
		}
		total += sum
		counted++
	}
	if counted == 0 {
		return "no containers measured"
	}
	return fmt.Sprintf("%d containers, unroot processes PSS %d kB in all, %d kB per container", counted, total, total/counted)
}

func pss(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "Pss:" {
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	return 0
}

func childrenOf(pid int) []int {
	// From every process's parent: /proc/PID/task/*/children needs
	// CONFIG_PROC_CHILDREN, which not every kernel has.
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err == nil && parentOf(c) == pid {
			out = append(out, c)
		}
	}
	return out
}

// The memory an idle detached container costs in unroot's own processes
// (reported, not asserted: see the report of issue #7).
func TestLifecycleIdleMemory(t *testing.T) {
	t.Parallel()
	s := lifecycleSandbox(t)
	for i := range 3 {
		s.run("run", "-d", "--tls-verify=false", "--name", fmt.Sprintf("idle%d", i), busybox(), "sleep", "1000").ok(t)
	}
	time.Sleep(2 * time.Second)
	t.Logf("idle busybox containers: %s", pssReport(t, s, 3))
	// --net=none: the init alone (OneProcess).
	s.run("rm", "-f", "idle0", "idle1", "idle2").ok(t)
	for i := range 5 {
		s.run("run", "-d", "--tls-verify=false", "--net=none", "--name", fmt.Sprintf("none%d", i), busybox(), "sleep", "1000").ok(t)
	}
	time.Sleep(2 * time.Second)
	t.Logf("idle busybox containers, --net=none: %s", pssReport(t, s, 5))
}
