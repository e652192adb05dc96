package cinit

import (
	"os/exec"
	"testing"
	"time"
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
	code, ok := reapQuiet(cmd.Process.Pid, jobs, w, &Process{})
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
