package cinit

import (
	"os"
	"os/exec"
	"slices"
	"sync"
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
	// Three lazy goroutines: one whose pipe gets a byte while the process
	// runs, one whose pipe never does (atEnd), one never needed.
	var pipes [3][2]*os.File
	for i := range pipes {
		r, wr, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		defer wr.Close()
		pipes[i] = [2]*os.File{r, wr}
	}
	var mu sync.Mutex
	var order []string
	mark := func(s string) func() {
		return func() { mu.Lock(); order = append(order, s); mu.Unlock() }
	}
	later := []lazy{
		{fd: fdOf(pipes[0][0]), atEnd: true, start: mark("written")},
		{fd: fdOf(pipes[1][0]), atEnd: true, start: mark("at end")},
		{fd: fdOf(pipes[2][0]), start: mark("never")},
	}
	go func() {
		time.Sleep(150 * time.Millisecond)
		_, _ = pipes[0][1].Write([]byte{1})
	}()
	start := time.Now()
	code, ok := reapQuiet(cmd.Process.Pid, jobs, w, &Process{}, later)
	if !ok {
		t.Skip("no pidfds on this kernel")
	}
	if code != 5 {
		t.Errorf("code %d, want 5", code)
	}
	if !slices.Equal(order, []string{"written", "at end"}) {
		t.Errorf("lazy starts %q, want written, at end", order)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v: the process's end did not wake the wait", d)
	}
}
