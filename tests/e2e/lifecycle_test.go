package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// lifecycleSandbox is a sandbox whose containers are all force-removed when
// the test ends: detached containers outlive the commands that made them.
func lifecycleSandbox(t *testing.T) *sandbox {
	s := sandboxFor(t, nil)
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
		Pid        int
		ExitCode   int
		OOMKilled  bool
		StartedAt  string
		FinishedAt string
	}
	Config struct {
		Image string
		Cmd   []string
		Env   []string
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
	s.run("rm", strings.TrimPrefix(name, "/"), "once").ok(t)
	if n := s.containerCount(t); n != 0 {
		t.Errorf("rm left %d containers in the store", n)
	}
}

// kill -9 of the container's processes on the host side: ps -a tells the
// truth, nothing hangs, rm and start work.
func TestLifecycleKilledMonitor(t *testing.T) {
	t.Parallel()
	s := lifecycleSandbox(t)
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
	s.run("rm", "-f", "a", "b").ok(t)
	if n := s.containerCount(t); n != 0 {
		t.Errorf("rm left %d containers in the store", n)
	}
}
