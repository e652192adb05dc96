package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// fastDirs lists the fast path's container directories in the store.
func fastDirs(s *sandbox) []string {
	ents, _ := os.ReadDir(filepath.Join(s.storeDir(), "unroot-run"))
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

// startBG starts `unroot ARGS` in the background, as the sandbox's user.
func startBG(t *testing.T, s *sandbox, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(suite.bin, args...)
	cmd.Dir, cmd.Env, cmd.SysProcAttr = s.home, s.environ(), s.sysProcAttr()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// waitFor polls cond for up to 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// A foreground run --rm of a pulled image takes the fast path (no store, no
// network stack), behaves like the full one, and leaves nothing behind.
func TestRunFastPath(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	s.pull(busybox())
	r := s.run("--log-level=debug", "run", "--rm", "--net=none", busybox(), "sh", "-c", "id -u; echo hi >/x; cat /x; exit 3")
	r.wantCode(t, 3)
	r.wantStderr(t, "fast path")
	if got := strings.Fields(r.stdout); len(got) != 2 || got[0] != "0" || got[1] != "hi" {
		t.Errorf("want uid 0 and the written file:\n%s", r)
	}
	// The default user-mode network with its helper (slirp4netns is
	// installed by the test set-up; the embedded gvisor stack is not in the
	// fast binary, so --net=gvisor goes the full way).
	s.run("--log-level=debug", "run", "--rm", busybox(), "sh", "-c", "ip addr show tap0 | grep -q 10.0.2.100").ok(t).wantStderr(t, "fast path")
	r = s.run("--log-level=debug", "run", "--rm", "--net=gvisor", busybox(), "true").ok(t)
	if strings.Contains(r.stderr, "fast path") {
		t.Errorf("--net=gvisor must take the full path:\n%s", r)
	}
	// --net=host too; a flag the fast path does not know goes the full way
	// (and works).
	s.run("--log-level=debug", "run", "--rm", "--net=host", busybox(), "true").ok(t).wantStderr(t, "fast path")
	r = s.run("--log-level=debug", "run", "--rm", "--net=none", "--name", "named", busybox(), "echo", "full")
	r.ok(t).wantOut(t, "full")
	if strings.Contains(r.stderr, "fast path") {
		t.Errorf("--name must take the full path:\n%s", r)
	}
	if d := fastDirs(s); len(d) != 0 {
		t.Errorf("fast containers left behind: %v", d)
	}
	if n := s.containerCount(t); n != 0 {
		t.Errorf("%d containers left in the store", n)
	}
}

// rmi refuses an image a fast container runs from; a fast container whose
// unroot was killed is cleaned up by the next one.
func TestRunFastPathRmiAndKill(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	s.pull(busybox())
	cmd := startBG(t, s, "run", "--rm", "--net=none", busybox(), "sleep", "30")
	waitFor(t, "the fast container", func() bool { return len(fastDirs(s)) == 1 })
	s.run("rmi", busybox()).wantCode(t, 1).wantStderr(t, "used by a running container")
	// Nor does system prune -a take it away.
	s.run("system", "prune", "-a").ok(t)
	if r := s.run("images", "-q").ok(t); strings.TrimSpace(r.stdout) == "" {
		t.Errorf("system prune -a removed the image a fast container runs from:\n%s", r)
	}
	// SIGKILL of unroot: its monitor and the container die with it (parent
	// death signals), the directory stays until the next fast run.
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	s.runSh(busybox(), "true", "--net=none").ok(t)
	if d := fastDirs(s); len(d) != 0 {
		t.Errorf("fast containers left behind after the next run: %v", d)
	}
	s.run("rmi", busybox()).ok(t)
	// The record of the removed image is stale: the full path pulls again.
	s.runSh(busybox(), "echo again", "--net=none").ok(t).wantOut(t, "again")
}

// A detached container whose network needs no gvisor stack is kept by the
// lite engine (built without it: ~7 MB less per container); one on
// --net=gvisor by the full one.
func TestRunDetachedLiteEngine(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	s.pull(busybox())
	for net, wantLite := range map[string]bool{"none": true, "gvisor": false} {
		// Not the one-process model, where the init alone remains.
		id := s.runWith(runOpts{env: []string{"UNROOT_ONE_PROCESS=0"}}, "run", "-d", "--net="+net, busybox(), "sleep", "60").ok(t).out()
		defer s.run("rm", "-f", id)
		data, err := os.ReadFile(filepath.Join(s.runtimeDir, "unroot", "containers", id, "state.json"))
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			Pid int `json:"pid"`
		}
		if err := json.Unmarshal(data, &st); err != nil || st.Pid == 0 {
			t.Fatalf("state.json: %v\n%s", err, data)
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", st.Pid))
		if err != nil {
			t.Fatal(err)
		}
		if lite := strings.Contains(filepath.Base(exe), "unroot-engine-lite"); lite != wantLite {
			t.Errorf("--net=%s: the detached process runs %s, want lite=%v", net, exe, wantLite)
		}
	}
}

func comm(pid int) string {
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	return strings.TrimSpace(string(b))
}

// On --net=none, and with slirp4netns unless a UDP port is published, the
// fast path's container is unroot and its init, nothing in between: the
// init mounts its own rootfs (and configures its interface, and forwards
// published TCP ports). With CAP_SYS_PTRACE, which would let the container
// reach the init's descriptors, or with a UDP port (RootlessKit's
// forwarder has a half in the monitor), a monitor is in between. Signals
// reach the container either way.
func TestRunFastPathDirectInit(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	s.pull(busybox())
	for _, tc := range []struct {
		extra  []string
		direct bool
	}{
		{[]string{"--net=none"}, true},
		{[]string{"--net=none", "--cap-add", "SYS_PTRACE"}, false},
		{[]string{"--net=slirp4netns"}, true},
		// TCP ports: the init forwards them (cinit.Forward); UDP ones
		// need RootlessKit's forwarder, which has a half in the monitor.
		{[]string{"--net=slirp4netns", "-p", "127.0.0.1::80"}, true},
		{[]string{"--net=slirp4netns", "-p", "127.0.0.1::53/udp"}, false},
	} {
		args := append(append([]string{"run", "--rm"}, tc.extra...), busybox(), "sleep", "30")
		cmd := startBG(t, s, args...)
		var kids []int
		waitFor(t, "the container's sleep", func() bool {
			kids = nil
			for _, k := range childrenOf(cmd.Process.Pid) {
				if comm(k) != "slirp4netns" { // the network's helper, beside
					kids = append(kids, k)
				}
			}
			if len(kids) != 1 {
				return false
			}
			for _, p := range append([]int{kids[0]}, childrenOf(kids[0])...) {
				for _, c := range append([]int{p}, childrenOf(p)...) {
					if comm(c) == "sleep" {
						return true
					}
				}
			}
			return false
		})
		isInit := strings.HasPrefix(comm(kids[0]), "unroot-init")
		if isInit != tc.direct {
			t.Errorf("%v: unroot's child is %q (want the init: %v)", tc.extra, comm(kids[0]), tc.direct)
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 143 {
			t.Errorf("%v: SIGTERM: want exit 143, got %v", tc.extra, err)
		}
		if d := fastDirs(s); len(d) != 0 {
			t.Errorf("%v: fast containers left behind: %v", tc.extra, d)
		}
	}
}

// The direct init starts before its mapping is written, holding the
// namespace's capabilities as ambient ones (userns.Options.Early): none of
// them may reach the container's process, root or not. The first life
// (UNROOT_EARLY_START=0, as on a kernel without ambient capabilities) must
// give the same container, and so must the paths with a monitor.
func TestRunDirectInitEarlyStart(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	s.pull(busybox())
	maps := "1"
	if suite.user.subuid.Count > 0 {
		maps = "2"
	}
	for _, env := range [][]string{nil, {"UNROOT_EARLY_START=0"}} {
		for _, tc := range []struct {
			flags  []string
			capEff string // Docker's default set, plus what is added
		}{
			{[]string{"--net=none"}, "00000000a80425fb"},
			// Not direct: the fast path's monitor starts the init.
			{[]string{"--net=none", "--cap-add", "SYS_PTRACE"}, "00000000a80c25fb"},
			{[]string{"--net=slirp4netns"}, "00000000a80425fb"},
		} {
			run := func(args ...string) result {
				return s.runWith(runOpts{env: env}, append(append([]string{"run", "--rm"}, tc.flags...), args...)...)
			}
			r := run(busybox(), "sh", "-c", "id -u; wc -l < /proc/self/uid_map; grep -E '^Cap(Eff|Amb)' /proc/self/status; exit 7").wantCode(t, 7)
			want := "0\n" + maps + "\nCapEff:\t" + tc.capEff + "\nCapAmb:\t0000000000000000\n"
			if r.stdout != want {
				t.Errorf("%v %v: root in the container:\n%s\nwant:\n%s", env, tc.flags, r.stdout, want)
			}
			r = run("-u", "1000", busybox(), "grep", "-E", "^Cap(Prm|Eff|Amb)", "/proc/self/status").ok(t)
			want = "CapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapAmb:\t0000000000000000\n"
			if r.stdout != want {
				t.Errorf("%v %v: uid 1000 in the container:\n%s\nwant:\n%s", env, tc.flags, r.stdout, want)
			}
			if d := fastDirs(s); len(d) != 0 {
				t.Errorf("%v %v: fast containers left behind: %v", env, tc.flags, d)
			}
		}
	}
}

// A published TCP port of a direct `run --rm` (slirp4netns): the init
// forwards it from a socket bound on the host, and it is free again once
// the container is gone.
func TestRunDirectPublishedPort(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	s.pull(busybox())
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := startBG(t, s, "run", "--rm", "--net=slirp4netns", "-p", addr+":8080", busybox(), "sh", "-c",
		"mkdir /www && echo direct-hello > /www/index.html && exec httpd -f -p 8080 -h /www")
	var got string
	waitFor(t, "the published port to answer", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.0\r\n\r\n")
		b, _ := io.ReadAll(c)
		got = string(b)
		return strings.Contains(got, "direct-hello")
	})
	// Nothing but the init (its binary's name, unroot-init-<sum>) and
	// slirp4netns under unroot.
	var kids []string
	for _, k := range childrenOf(cmd.Process.Pid) {
		if c := comm(k); c != "slirp4netns" {
			kids = append(kids, c)
		}
	}
	if len(kids) != 1 || !strings.HasPrefix(kids[0], "unroot-init") {
		t.Errorf("unroot's children are %q (and slirp4netns): want the init alone", kids)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	var ee *exec.ExitError
	if err := cmd.Wait(); !errors.As(err, &ee) || ee.ExitCode() != 143 {
		t.Errorf("SIGTERM: want exit 143, got %v", err)
	}
	if l, err := net.Listen("tcp", addr); err != nil {
		t.Errorf("the port is still taken after the container: %v", err)
	} else {
		l.Close()
	}
}
