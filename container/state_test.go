package container

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
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
