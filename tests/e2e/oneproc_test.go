package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// unrootExe says whether pid runs one of unroot's binaries (the front,
// the engines, the init).
func unrootExe(pid int) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return err == nil && strings.HasPrefix(filepath.Base(exe), "unroot")
}

func parentOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 2 {
		return 0
	}
	p, _ := strconv.Atoi(f[1])
	return p
}

type runState struct {
	Pid        int  `json:"pid"`
	MonitorPid int  `json:"monitor_pid"`
	InitPid    int  `json:"init_pid"`
	ExitFile   bool `json:"exit_file"`
}

func readRunState(t *testing.T, s *sandbox, id string) runState {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.runtimeDir, "unroot", "containers", id, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st runState
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("state.json: %v\n%s", err, b)
	}
	return st
}

// waitInitAlone waits until the container's state names its init as its
// process, the host side and the monitor gone, and returns the state.
func waitInitAlone(t *testing.T, s *sandbox, id string) runState {
	t.Helper()
	var st runState
	eventually(t, "the init alone", 20*time.Second, func() bool {
		st = readRunState(t, s, id)
		return st.MonitorPid == 0 && st.Pid != 0 && st.Pid == st.InitPid
	})
	return st
}

// A detached --net=none container is kept by its init alone once it runs:
// the detached host process and the monitor exit, the init writes and
// rotates the log and records the exit code; ps, logs, logs -f, wait,
// stop, kill -9 of the init, start and rm -f tell and do the truth.
func TestLifecycleOneProcess(t *testing.T) {
	t.Parallel()
	s := lifecycleSandbox(t)
	// 300000 lines of "y" are ~14 MB of log: one rotation at 10 MB.
	id := s.run("run", "-d", "--tls-verify=false", "--net=none", "--name", "one", busybox(), "sh", "-c",
		`echo hello; echo oops >&2; yes | head -n 300000; echo marker-end; trap "echo got TERM; exit 7" TERM; while true; do sleep 0.2; done`).ok(t).out()
	first := readRunState(t, s, id)
	st := waitInitAlone(t, s, id)
	if !st.ExitFile {
		t.Errorf("state.json: exit_file not set: %+v", st)
	}
	for _, pid := range []int{first.Pid, first.MonitorPid} {
		if pid != 0 && pid != st.Pid {
			eventually(t, fmt.Sprintf("process %d to go", pid), 10*time.Second, func() bool {
				ps := procState(pid)
				return ps == "" || ps == "Z" || !unrootExe(pid)
			})
		}
	}
	// One unroot process: the init; above it none of ours, below it the
	// container's own.
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", st.Pid)); !strings.HasPrefix(filepath.Base(exe), "unroot-init") {
		t.Errorf("the container's process %d runs %s, want unroot-init", st.Pid, exe)
	}
	for p := parentOf(st.Pid); p > 1; p = parentOf(p) {
		if unrootExe(p) {
			t.Errorf("an unroot process %d is still above the init %d", p, st.Pid)
		}
	}
	for _, c := range childrenOf(st.Pid) {
		if unrootExe(c) {
			t.Errorf("an unroot process %d is below the init %d", c, st.Pid)
		}
	}
	if got := psLine(t, s, "one"); !strings.HasPrefix(got, "one Up") {
		t.Errorf("ps: %q", got)
	}
	s.run("exec", "one", "echo", "from-exec").ok(t).wantOut(t, "from-exec")
	// The init's log and exit files stay its own: no process of the
	// container has them (close-on-exec), and PID 1's are out of reach
	// (not dumpable).
	fr := s.run("exec", "one", "sh", "-c", "for p in /proc/[0-9]*; do ls -l $p/fd/; done; readlink /proc/1/fd/7")
	if strings.Contains(fr.stdout, "ctr.log") || strings.Contains(fr.stdout, "exit.json") || !strings.Contains(fr.stdout, "pipe:") || fr.code == 0 {
		t.Errorf("the init's descriptors leak into the container:\n%s", fr)
	}
	// top and cp reach the container through its init too.
	if r := s.run("top", "one").ok(t); !strings.Contains(r.stdout, "sleep") {
		t.Errorf("top:\n%s", r)
	}
	out := filepath.Join(s.home, "copied-hostname")
	s.run("cp", "one:/etc/hostname", out).ok(t)
	if b, err := os.ReadFile(out); err != nil || len(b) == 0 {
		t.Errorf("cp from the container: %v %q", err, b)
	}

	// The log, written and rotated by the init.
	eventually(t, "the whole output in the log", 30*time.Second, func() bool {
		return strings.Contains(s.run("logs", "--tail", "1", "one").stdout, "marker-end")
	})
	logPath := filepath.Join(s.home, ".local", "share", "unroot", "containers", id, "ctr.log")
	for _, p := range []string{logPath, logPath + ".1"} {
		fi, err := os.Stat(p)
		if err != nil || fi.Size() == 0 || fi.Size() > 10<<20 {
			t.Errorf("%s: %v, size %d (want a rotation at 10 MB)", p, err, fi.Size())
		}
	}
	lr := s.run("logs", "--tail", "2", "one").ok(t)
	if lr.out() != "y\nmarker-end" {
		t.Errorf("logs --tail 2: %q", lr.out())
	}
	if r := s.run("logs", "one").ok(t); strings.Count(r.stdout, "y\n") < 200000 || !strings.HasPrefix(r.stdout, "hello\n") {
		t.Errorf("logs: %d lines", strings.Count(r.stdout, "\n"))
	}

	// logs -f follows to the end; stop's TERM ends the process with 7.
	done := make(chan result, 1)
	go func() { done <- s.run("logs", "-f", "--tail", "1", "one") }()
	time.Sleep(1500 * time.Millisecond)
	s.run("stop", "-t", "20", "one").ok(t)
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("logs -f did not end with the container")
	}
	if r.ok(t).out() != "marker-end\ngot TERM" {
		t.Errorf("logs -f --tail 1: %q", r.out())
	}
	if got := s.run("wait", "one").ok(t).out(); got != "7" {
		t.Errorf("wait: want 7, got %q", got)
	}
	if got := psLine(t, s, "one"); !strings.HasPrefix(got, "one Exited (7)") {
		t.Errorf("ps -a after stop: %q", got)
	}
	if in := inspect(t, s, "one"); in.State.Running || in.State.ExitCode != 7 || in.State.Pid != 0 || in.State.FinishedAt == "" {
		t.Errorf("inspect after stop: %+v", in.State)
	}
	runDir := filepath.Join(s.runtimeDir, "unroot", "containers", id)
	for _, f := range []string{"exec.sock", "etc", "exit.json"} {
		if _, err := os.Lstat(filepath.Join(runDir, f)); err == nil {
			t.Errorf("%s left behind after the container ended", f)
		}
	}

	// wait for a container that exits by itself.
	// --net=host is kept by its init alone too.
	shortID := s.run("run", "-d", "--tls-verify=false", "--net=host", "--name", "short", busybox(), "sh", "-c", "sleep 1; echo bye; exit 3").ok(t).out()
	if st := readRunState(t, s, shortID); !st.ExitFile {
		t.Errorf("--net=host: not one process: %+v", st)
	}
	if got := s.run("wait", "short").ok(t).out(); got != "3" {
		t.Errorf("wait: want 3, got %q", got)
	}
	if got := s.run("logs", "short").ok(t).out(); got != "bye" {
		t.Errorf("logs of the short one: %q", got)
	}

	// start again, then kill -9 of the init: exited (137), and it starts.
	s.run("start", "one").ok(t)
	st = waitInitAlone(t, s, id)
	if got := psLine(t, s, "one"); !strings.HasPrefix(got, "one Up") {
		t.Errorf("ps after start: %q", got)
	}
	if err := syscall.Kill(st.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "one to be exited", 20*time.Second, func() bool {
		return strings.HasPrefix(psLine(t, s, "one"), "one Exited (137)")
	})
	if got := s.run("wait", "one").ok(t).out(); got != "137" {
		t.Errorf("wait after kill -9: %q", got)
	}
	s.run("start", "one").ok(t)
	waitInitAlone(t, s, id)
	s.run("exec", "one", "true").ok(t)
	s.run("rm", "-f", "one", "short").ok(t)
	if got := s.run("ps", "-aq").ok(t).out(); got != "" {
		t.Errorf("ps -a after rm: %q", got)
	}
	if n := s.containerCount(t); n != 0 {
		t.Errorf("rm left %d containers in the store", n)
	}
}
