package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
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
	// The init idles as a fresh exec of itself (cinit's fresh.go), named
	// as before, not after /proc/self/exe.
	if env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", st.Pid)); !strings.Contains(string(env), "_UNROOT_STAGE=init-fresh\x00") {
		t.Errorf("the init is not the fresh stage: %q", env)
	}
	if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", st.Pid)); !strings.HasPrefix(string(comm), "unroot-init") {
		t.Errorf("the fresh init is named %q", comm)
	}
	for _, c := range childrenOf(st.Pid) {
		if unrootExe(c) {
			t.Errorf("an unroot process %d is below the init %d", c, st.Pid)
		}
	}
	// Any thread of the fresh init may fork the container's processes
	// (cinit's threads.go): each has the same capabilities, the
	// container's bounding set and no_new_privs.
	if kids := childrenOf(st.Pid); len(kids) > 0 {
		proc := secState(kids[0])
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", st.Pid))
		var first string
		for _, task := range tasks {
			ts := secState(0, task)
			if first == "" {
				first = ts
			}
			if ts != first || !strings.Contains(ts, "NoNewPrivs:\t1") || boundingOf(ts) != boundingOf(proc) {
				t.Errorf("init thread %s: %q, first thread %q, the process %q", task, ts, first, proc)
			}
		}
		if len(tasks) == 0 {
			t.Errorf("no threads of the init %d", st.Pid)
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

// slirpOf finds the slirp4netns whose exit pipe the init pid holds (its
// fd 12; slirp4netns's --exit-fd is 4).
func slirpOf(t *testing.T, pid int) int {
	t.Helper()
	sp := residentSlirp(pid)
	if sp == 0 {
		t.Fatalf("no slirp4netns holds the exit pipe of the init %d", pid)
	}
	return sp
}

// residentSlirp is slirpOf, 0 if none.
func residentSlirp(pid int) int {
	pipe, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/12", pid))
	if err != nil || !strings.HasPrefix(pipe, "pipe:") {
		return 0
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/comm")
	for _, c := range procs {
		b, _ := os.ReadFile(c)
		if strings.TrimSpace(string(b)) != "slirp4netns" {
			continue
		}
		dir := filepath.Dir(c)
		if l, _ := os.Readlink(dir + "/fd/4"); l == pipe && procState(atoi(filepath.Base(dir))) != "Z" {
			return atoi(filepath.Base(dir))
		}
	}
	return 0
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// A detached container with the default network and a published TCP port
// is kept by its init and slirp4netns alone: the init holds slirp4netns's
// exit pipe and forwards the port from a listening socket made on the
// host. The port works, slirp4netns ends with the container (stop, kill
// -9 of the init), the port is free again, and start brings it all back.
// A UDP port keeps the monitor (the init forwards TCP only).
func TestLifecycleOneProcessNetwork(t *testing.T) {
	t.Parallel()
	s := lifecycleSandbox(t)
	port := freePort(t)
	id := s.run("run", "-d", "--tls-verify=false", "--name", "web", "-p", fmt.Sprintf("127.0.0.1:%d:80", port), busybox(),
		"sh", "-c", `echo web-hello > /tmp/index.html; trap "exit 5" TERM; httpd -p 80 -h /tmp; while true; do sleep 0.2; done`).ok(t).out()
	st := waitInitAlone(t, s, id)
	for p := parentOf(st.Pid); p > 1; p = parentOf(p) {
		if unrootExe(p) {
			t.Errorf("an unroot process %d is still above the init %d", p, st.Pid)
		}
	}
	slirp := slirpOf(t, st.Pid)
	if slirp == 0 {
		t.Fatal("no slirp4netns holds the init's exit pipe")
	}
	get := func() string {
		c := http.Client{Timeout: 3 * time.Second}
		resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/index.html", port))
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.TrimSpace(string(b))
	}
	eventually(t, "the published port to answer", 20*time.Second, func() bool { return get() == "web-hello" })
	if got := s.run("port", "web").ok(t).out(); got != fmt.Sprintf("80/tcp -> 127.0.0.1:%d", port) {
		t.Errorf("port: %q", got)
	}
	// Out of the container: DNS is slirp4netns's or the host's; the
	// gateway answers.
	s.run("exec", "web", "ping", "-c", "1", "-W", "5", "10.0.2.2").ok(t)
	// The listening socket and the exit pipe stay the init's: no process
	// of the container has them.
	mine := map[string]bool{}
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", st.Pid))
	for _, fd := range fds {
		if l, _ := os.Readlink(fd); strings.HasPrefix(l, "socket:") || strings.HasPrefix(l, "pipe:") {
			mine[l] = true
		}
	}
	for todo := childrenOf(st.Pid); len(todo) > 0; todo = todo[1:] {
		todo = append(todo, childrenOf(todo[0])...)
		fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", todo[0]))
		for _, fd := range fds {
			// 1 and 2 are the pipes to the log, which the init reads.
			if n := atoi(filepath.Base(fd)); n <= 2 {
				continue
			}
			if l, _ := os.Readlink(fd); mine[l] {
				t.Errorf("the init's %s leaks into the container's process %d (%s)", l, todo[0], fd)
			}
		}
	}
	gone := func(what string, pid int) {
		eventually(t, what, 20*time.Second, func() bool { ps := procState(pid); return ps == "" || ps == "Z" })
	}
	portFree := func() {
		eventually(t, "the host port to be free", 10*time.Second, func() bool {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err == nil {
				l.Close()
			}
			return err == nil
		})
	}
	s.run("stop", "web").ok(t)
	if got := s.run("wait", "web").ok(t).out(); got != "5" {
		t.Errorf("wait after stop: %q", got)
	}
	gone("slirp4netns to end with the container", slirp)
	portFree()

	s.run("start", "web").ok(t)
	st = waitInitAlone(t, s, id)
	eventually(t, "the port to answer after start", 20*time.Second, func() bool { return get() == "web-hello" })
	slirp = slirpOf(t, st.Pid)
	if err := syscall.Kill(st.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	gone("slirp4netns to end after kill -9 of the init", slirp)
	portFree()
	eventually(t, "web to be exited", 20*time.Second, func() bool {
		return strings.HasPrefix(psLine(t, s, "web"), "web Exited (137)")
	})

	udp := s.run("run", "-d", "--tls-verify=false", "--name", "udp", "-p", fmt.Sprintf("127.0.0.1:%d:53/udp", freePort(t)), busybox(), "sleep", "60").ok(t).out()
	if st := readRunState(t, s, udp); st.ExitFile || st.MonitorPid == 0 {
		t.Errorf("a UDP port: want the monitor kept, got %+v", st)
	}
	// slirp4netns's own forwarding (port_handler=native) needs nothing
	// after the set-up either, UDP included.
	port = freePort(t)
	native := s.run("run", "-d", "--tls-verify=false", "--name", "native", "--net=slirp4netns:port_handler=native",
		"-p", fmt.Sprintf("127.0.0.1:%d:80", port), "-p", fmt.Sprintf("127.0.0.1:%d:53/udp", freePort(t)), busybox(),
		"sh", "-c", `echo web-hello > /tmp/index.html; exec httpd -f -p 80 -h /tmp`).ok(t).out()
	waitInitAlone(t, s, native)
	eventually(t, "the natively published port to answer", 20*time.Second, func() bool { return get() == "web-hello" })
	s.run("rm", "-f", "web", "udp", "native").ok(t)
	portFree()
}

// Descriptors unroot's caller leaves open (a CI runner's pipe) do not reach
// a detached container: whoever waits for EOF on them gets it when unroot
// exits, not when the container ends.
func TestRunDetachedDropsCallersFDs(t *testing.T) {
	t.Parallel()
	s := lifecycleSandbox(t)
	for _, net := range []string{"none", "auto"} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		// At fd 40: unroot's own stages use the low ones.
		extra := append(make([]*os.File, 37), w)
		s.runWith(runOpts{extra: extra}, "run", "-d", "--tls-verify=false", "--net="+net, "--name", "fds-"+net, busybox(), "sleep", "60").ok(t)
		w.Close()
		_ = r.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := r.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("--net=%s: the caller's pipe is still open after unroot exited: %d %v", net, n, err)
		}
		r.Close()
	}
	s.run("rm", "-f", "fds-none", "fds-auto").ok(t)
}

// secState is the capability and no_new_privs lines of a process's (or,
// with dir, a thread's) status.
func secState(pid int, dir ...string) string {
	path := fmt.Sprintf("/proc/%d/status", pid)
	if len(dir) > 0 {
		path = dir[0] + "/status"
	}
	b, _ := os.ReadFile(path)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "Cap") || strings.HasPrefix(l, "NoNewPrivs") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func boundingOf(state string) string {
	for _, l := range strings.Split(state, "\n") {
		if strings.HasPrefix(l, "CapBnd") {
			return l
		}
	}
	return ""
}
