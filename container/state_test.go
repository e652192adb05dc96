package container

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/unroot/unroot/container/cinit"
	"github.com/unroot/unroot/slirp"
)

func TestStateFindAndLiveness(t *testing.T) {
	d := Dirs{Data: t.TempDir(), Run: t.TempDir()}
	a := &Config{ID: "abc123" + strings.Repeat("0", 58), Name: "alpha", Created: time.Now(), Spec: &Spec{}}
	b := &Config{ID: "abd456" + strings.Repeat("0", 58), Name: "beta", Created: time.Now().Add(time.Second), Spec: &Spec{}}
	for _, c := range []*Config{a, b} {
		if err := d.SaveConfig(c); err != nil {
			t.Fatal(err)
		}
	}
	for ref, want := range map[string]string{"alpha": a.ID, "/beta": b.ID, "abc": a.ID, b.ID: b.ID} {
		c, err := d.Find(ref)
		if err != nil || c.ID != want {
			t.Errorf("Find(%q) = %v, %v; want %s", ref, c, err, want)
		}
	}
	if _, err := d.Find("ab"); err == nil || !strings.Contains(err.Error(), "matches 2") {
		t.Errorf("an ambiguous prefix: %v", err)
	}
	if _, err := d.Find("zzz"); err == nil {
		t.Error("an unknown ref resolved")
	}
	list, _ := d.List()
	if len(list) != 2 || list[0].Name != "beta" {
		t.Errorf("List: newest first, got %v", list)
	}
	if !d.NameInUse("alpha") || d.NameInUse("gamma") {
		t.Error("NameInUse")
	}
	if n := d.GenerateName(); !strings.Contains(n, "_") || d.NameInUse(n) {
		t.Errorf("GenerateName: %q", n)
	}

	// No state (a reboot): exited, unknown.
	if st := d.LoadState(a.ID); st.Status != StatusExited || !st.Unknown {
		t.Errorf("missing state: %+v", st)
	}
	// Our own pid with its start time: running; a wrong start time (a
	// recycled pid): exited.
	me := os.Getpid()
	if err := d.SaveState(a.ID, &State{Status: StatusRunning, Pid: me, PidStart: ProcStart(me)}); err != nil {
		t.Fatal(err)
	}
	if st := d.LoadState(a.ID); st.Status != StatusRunning {
		t.Errorf("live state: %+v", st)
	}
	_ = d.SaveState(a.ID, &State{Status: StatusRunning, Pid: me, PidStart: ProcStart(me) + 1})
	if st := d.LoadState(a.ID); st.Status != StatusExited || !st.Unknown {
		t.Errorf("recycled pid: %+v", st)
	}
	if m, _ := filepath.Glob(filepath.Join(d.StateDir(a.ID), ".tmp-*")); len(m) != 0 {
		t.Errorf("temporary files left: %v", m)
	}
	if err := d.Remove(a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Find("alpha"); err == nil {
		t.Error("found after Remove")
	}
}

func TestLock(t *testing.T) {
	d := Dirs{Data: t.TempDir()}
	unlock, err := d.Lock("x")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{})
	go func() {
		u, err := d.Lock("x")
		if err == nil {
			u()
		}
		close(got)
	}()
	select {
	case <-got:
		t.Fatal("the lock was taken twice")
	case <-time.After(100 * time.Millisecond):
	}
	unlock()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the lock was not released")
	}
}

func TestLogFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctr.log")
	old := MaxLogSize
	MaxLogSize = 200
	defer func() { MaxLogSize = old }()
	lf, err := openLog(path)
	if err != nil {
		t.Fatal(err)
	}
	r, w, _ := os.Pipe()
	done := make(chan struct{})
	go func() { lf.Copy("stdout", r, logBuf); close(done) }()
	_, _ = w.WriteString("one\ntwo\n" + strings.Repeat("x", 50) + "\nlast without newline")
	w.Close()
	<-done
	lf.Write("stderr", []byte("err"), false)
	lf.Close()
	var lines []LogLine
	for _, p := range []string{path + ".1", path} {
		b, _ := os.ReadFile(p)
		for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			ll, ok := ParseLogLine(l)
			if !ok {
				t.Fatalf("unparsable line %q", l)
			}
			lines = append(lines, ll)
		}
	}
	if _, err := os.Stat(path + ".1"); err != nil {
		t.Errorf("no rotation at %d bytes: %v", MaxLogSize, err)
	}
	var texts []string
	for _, l := range lines {
		texts = append(texts, l.Stream+":"+l.Text)
	}
	want := "stdout:one stdout:two stdout:" + strings.Repeat("x", 50) + " stdout:last without newline stderr:err"
	if strings.Join(texts, " ") != want {
		t.Errorf("log lines:\n%s\nwant\n%s", strings.Join(texts, " "), want)
	}
	if !lines[3].Partial || lines[0].Partial {
		t.Errorf("partial flags: %+v", lines)
	}
}

func TestSignalByName(t *testing.T) {
	for in, want := range map[string]syscall.Signal{"": syscall.SIGTERM, "9": syscall.SIGKILL, "KILL": syscall.SIGKILL, "sigint": syscall.SIGINT, "SIGUSR1": syscall.SIGUSR1} {
		if got, err := SignalByName(in); err != nil || got != want {
			t.Errorf("SignalByName(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"NOPE", "0", "99"} {
		if _, err := SignalByName(bad); err == nil {
			t.Errorf("SignalByName(%q) accepted", bad)
		}
	}
}

// A container kept by its init alone: the exit file the init wrote is the
// truth once the init is gone, and the first reader that can take the
// lock records it and removes what the container left behind.
func TestStateExitFile(t *testing.T) {
	d := Dirs{Data: t.TempDir(), Run: t.TempDir()}
	id := "e" + strings.Repeat("1", 63)
	if err := d.SaveConfig(&Config{ID: id, Name: "one", Created: time.Now(), Spec: &Spec{}}); err != nil {
		t.Fatal(err)
	}
	// A dead pid: a child that has been reaped.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := cmd.Process.Pid
	me := os.Getpid()
	leftovers := func() {
		t.Helper()
		_ = os.MkdirAll(filepath.Join(d.StateDir(id), "etc"), 0o700)
		_ = os.WriteFile(filepath.Join(d.StateDir(id), "etc", "hosts"), nil, 0o600)
		_ = os.WriteFile(filepath.Join(d.StateDir(id), "exec.sock"), nil, 0o600)
	}
	running := &State{Status: StatusRunning, Pid: me, PidStart: ProcStart(me), InitPid: me, ExitFile: true, StartedAt: time.Now()}

	// The init runs: running, whatever the exit file says.
	if err := d.SaveState(id, running); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(d.ExitPath(id), nil, 0o600)
	if st := d.LoadState(id); st.Status != StatusRunning || st.Pid != me {
		t.Errorf("live init: %+v", st)
	}

	// It ended and wrote its exit code.
	ended := *running
	ended.Pid, ended.PidStart, ended.InitPid = dead, 0, dead
	_ = d.SaveState(id, &ended)
	leftovers()
	fin := time.Now().Add(-time.Minute).Round(time.Second)
	b, _ := json.Marshal(cinit.ExitInfo{ExitCode: 7, FinishedAt: fin, OOMKilled: true})
	_ = os.WriteFile(d.ExitPath(id), b, 0o600)
	// Under the lock (as RunRecorded and StartDetached read it): the
	// truth, but nothing is changed.
	unlock, err := d.Lock(id)
	if err != nil {
		t.Fatal(err)
	}
	st := d.LoadState(id)
	if st.Status != StatusExited || st.ExitCode != 7 || !st.OOMKilled || !st.FinishedAt.Equal(fin) || st.Pid != 0 || st.InitPid != 0 || st.Unknown {
		t.Errorf("ended init, lock held: %+v", st)
	}
	if _, err := os.Stat(d.ExitPath(id)); err != nil {
		t.Errorf("the exit file went while the lock was held: %v", err)
	}
	unlock()
	// Without the lock: recorded, and the leftovers removed.
	st = d.LoadState(id)
	if st.Status != StatusExited || st.ExitCode != 7 || !st.OOMKilled || st.ExitFile {
		t.Errorf("ended init: %+v", st)
	}
	for _, f := range []string{"etc", "exec.sock", "exit.json"} {
		if _, err := os.Lstat(filepath.Join(d.StateDir(id), f)); err == nil {
			t.Errorf("%s left behind", f)
		}
	}
	if raw, ok := d.readState(id); !ok || raw.Status != StatusExited || raw.ExitCode != 7 {
		t.Errorf("state.json after settling: %+v", raw)
	}
	// Idempotent.
	d.settle(id)
	if st := d.LoadState(id); st.Status != StatusExited || st.ExitCode != 7 {
		t.Errorf("settled twice: %+v", st)
	}

	// Killed before it could write anything (SIGKILL): 137.
	_ = d.SaveState(id, &ended)
	_ = os.WriteFile(d.ExitPath(id), nil, 0o600)
	if st := d.LoadState(id); st.Status != StatusExited || st.ExitCode != 137 || st.Unknown {
		t.Errorf("killed init: %+v", st)
	}
	// The end of a container without an exit file stays unknown.
	_ = d.SaveState(id, &State{Status: StatusRunning, Pid: dead})
	if st := d.LoadState(id); st.Status != StatusExited || !st.Unknown {
		t.Errorf("host-side process gone: %+v", st)
	}
	// Remove settles too (and removes everything).
	_ = d.SaveState(id, &ended)
	leftovers()
	if err := d.Remove(id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.StateDir(id)); err == nil {
		t.Error("Remove left the state directory")
	}
}

func TestOneProcessRule(t *testing.T) {
	// A resident network needs slirp4netns (package slirp's resident.go).
	_, err := exec.LookPath("slirp4netns")
	slirp4netns := err == nil
	tcp := []slirp.PortSpec{{Proto: "tcp", ContainerPort: 80}}
	udp := []slirp.PortSpec{{Proto: "udp", ContainerPort: 53}}
	for _, c := range []struct {
		s    Spec
		want bool
	}{
		{Spec{Net: "none"}, true},
		{Spec{Net: "host"}, true},
		{Spec{Net: "none", Publish: tcp}, false},
		{Spec{Net: "auto"}, slirp4netns},
		{Spec{Net: "slirp4netns", Publish: tcp}, slirp4netns},
		{Spec{Net: "slirp4netns", Publish: udp}, false},
		{Spec{Net: "slirp4netns", Publish: udp, PortDriver: "native"}, slirp4netns},
		{Spec{Net: "gvisor"}, false},
		{Spec{Net: "pasta"}, false},
		{Spec{Net: "none", Stdin: true}, false},
		{Spec{Net: "none", Tty: true}, false},
		{Spec{Net: "none", Remove: true}, false},
		{Spec{Net: "none", Restart: RestartPolicy{Name: "no"}}, true},
		{Spec{Net: "none", Restart: RestartPolicy{Name: "always"}}, false},
	} {
		if got := OneProcess(&c.s); got != c.want {
			t.Errorf("OneProcess(%+v) = %v", c.s, got)
		}
	}
	t.Setenv("UNROOT_ONE_PROCESS", "0")
	if OneProcess(&Spec{Net: "none"}) {
		t.Error("UNROOT_ONE_PROCESS=0 does not turn it off")
	}
}

// The container's process is its init's first child; later ones are
// execs.
func TestMainProcessIsTheFirstChild(t *testing.T) {
	var cmds []*exec.Cmd
	for i := 0; i < 3; i++ {
		c := exec.Command("sleep", "10")
		if err := c.Start(); err != nil {
			t.Skip(err)
		}
		cmds = append(cmds, c)
		time.Sleep(20 * time.Millisecond) // distinct start times (clock ticks)
	}
	defer func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}()
	if got := MainProcess(os.Getpid()); got != cmds[0].Process.Pid {
		t.Errorf("MainProcess = %d, want the first child %d", got, cmds[0].Process.Pid)
	}
	if got := MainProcess(cmds[2].Process.Pid); got != 0 {
		t.Errorf("MainProcess of a process without children = %d", got)
	}
}
