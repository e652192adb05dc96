package cinit

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/unroot/unroot/container/ctrlog"
)

// reapQuiet returns the process's status from its pidfd, with no signal
// caught, and a queued job wakes it (here: none to run, it goes on
// waiting).
func TestReapQuietWaitsWithoutSignals(t *testing.T) {
	w, err := newWaker()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", "sleep 0.3; exit 5")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	jobs := make(chan *execJob, 1)
	go func() {
		time.Sleep(100 * time.Millisecond)
		w.wake() // a wake-up with nothing queued
	}()
	start := time.Now()
	code, ok := reapQuiet(cmd.Process.Pid, jobs, w, &Process{}, nil, -1)
	if !ok {
		t.Skip("no pidfds on this kernel")
	}
	if code != 5 {
		t.Errorf("code %d, want 5", code)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v: the process's end did not wake the wait", d)
	}
}

// The main thread's copy of a pipe logs what ctrlog.Writer.Copy does:
// complete lines, a full buffer as a partial line, the rest at the end.
func TestLogStreamLines(t *testing.T) {
	dir := t.TempDir()
	cur, err := os.OpenFile(filepath.Join(dir, "log"), os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	old, _ := os.OpenFile(filepath.Join(dir, "log.1"), os.O_CREATE|os.O_RDWR, 0o600)
	w, err := ctrlog.OpenFiles(cur, old, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	s := &logStream{name: "stdout", fd: fds[0], buf: make([]byte, 8)}
	_, _ = unix.Write(fds[1], []byte("ab\ncdefghijkl\nmn"))
	unix.Close(fds[1])
	for i := 0; i < 10 && s.fd >= 0; i++ {
		s.copy(w) // a read per call, as per wake-up
	}
	if s.fd != -1 {
		t.Error("the pipe's end did not close the stream")
	}
	w.Close()
	b, _ := os.ReadFile(filepath.Join(dir, "log"))
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(l, " ", 4)
		got = append(got, f[2]+":"+f[3])
	}
	want := []string{"F:ab", "P:cdefghij", "F:kl", "P:mn"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("log lines %q, want %q", got, want)
	}
}
