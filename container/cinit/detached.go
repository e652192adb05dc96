package cinit

import (
	"encoding/json"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/unroot/unroot/container/ctrlog"
)

// Descriptors of an init that is its container's only unroot process once
// the container runs (Process.OwnLog): it writes the container's log and
// records the container's end itself. They are opened by the monitor
// before the init pivots into the container; none is a directory (a
// directory descriptor in PID 1 would let a process of the container that
// can ptrace it reach the host's filesystem through /proc/1/fd).
const (
	initLogFD    = 7 // the log, read-write, append
	initLogOldFD = 8 // the rotated log (LOG.1), read-write
	initExitFD   = 9 // the exit file, written once with ExitInfo
	// initMemEventsFD (with Process.MemEvents): the container's cgroup's
	// memory.events, for OOMKilled.
	initMemEventsFD = 10
	// initHandoffFD is a socket to the monitor: once the host side has
	// recorded us as the container's process, the monitor asks us to
	// drop our parent-death signal (the monitor is about to exit), and we
	// answer y or n.
	initHandoffFD = 11
)

// ExitInfo is what the init writes into the exit file when the container
// ends (Process.OwnLog).
type ExitInfo struct {
	ExitCode   int       `json:"exit_code"`
	FinishedAt time.Time `json:"finished_at"`
	OOMKilled  bool      `json:"oom_killed,omitempty"`
}

// ownLog copies the process's stdout and stderr, two pipes, into the log.
type ownLog struct {
	w          *ctrlog.Writer
	wg         sync.WaitGroup
	outW, errW *os.File
	outR, errR *os.File
}

// logBuf bounds a log line (as the detached host process does).
const logBuf = 16 << 10

func closeOwnFDs() {
	for fd := initLogFD; fd <= initHandoffFD; fd++ {
		unix.CloseOnExec(fd)
	}
}

// startOwnLog makes the pipes that will be the process's stdout and
// stderr (p.stdio) and starts copying them into the log.
func startOwnLog(p *Process) (*ownLog, error) {
	w, err := ctrlog.OpenFiles(os.NewFile(initLogFD, "log"), os.NewFile(initLogOldFD, "log.1"), p.LogMax)
	if err != nil {
		return nil, err
	}
	o := &ownLog{w: w}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	o.outW, o.errW = outW, errW
	o.outR, o.errR = outR, errR
	p.stdio = []*os.File{os.Stdin, outW, errW}
	return o, nil
}

// copiers are the goroutines copying the process's stdout and stderr into
// the log, to start when the pipe first has something (see lazy).
func (o *ownLog) copiers() []lazy {
	copier := func(stream string, r *os.File) lazy {
		return lazy{fd: fdOf(r), atEnd: true, start: func() {
			o.wg.Add(1)
			go func() { defer o.wg.Done(); o.w.Copy(stream, r, logBuf) }()
		}}
	}
	return []lazy{copier("stdout", o.outR), copier("stderr", o.errR)}
}

// started: the process runs with its ends of the pipes. Our own stdout
// and stderr (the host side's pipes, which go away now) become /dev/null,
// and the memory of the setup goes back to the system.
//
// From then on the collector runs only if our memory grows by
// gcHeadroom (a memory limit with GOGC off): Go's periodic collection
// (every two minutes, even with nothing to collect) would otherwise
// start a worker thread and touch ~300 kB more of its metadata for good,
// in every idle container. The log's lines reuse one buffer, so a
// container's output alone rarely needs a collection.
func (o *ownLog) started(p *Process) {
	o.outW.Close()
	o.errW.Close()
	if fd, err := unix.Open("/dev/null", unix.O_WRONLY|unix.O_CLOEXEC, 0); err == nil {
		_ = unix.Dup3(fd, 1, 0)
		_ = unix.Dup3(fd, 2, 0)
		unix.Close(fd)
	}
	if p.MemLimit > 0 {
		// A fresh init (fresh.go) has next to no garbage, a collection
		// alone touches ~300 kB of the collector's metadata for good, and
		// even runtime/metrics ~40 kB: the setup's init measured itself,
		// an upper bound of ours.
		debug.SetGCPercent(-1)
		debug.SetMemoryLimit(p.MemLimit)
		return
	}
	debug.FreeOSMemory()
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(runtimeMemory() + gcHeadroom)
}

// gcHeadroom is how much our memory may grow before a collection.
const gcHeadroom = 4 << 20

// runtimeMemory is the memory the runtime holds, as its memory limit
// counts it: what it has mapped, less what it gave back. The setup's init
// asks before it execs the fresh one (fresh.go), so the ~280 kB that
// ReadMemStats leaves touched (it stops the world) go with it; importing
// runtime/metrics instead cost every init a 6 kB object of a size class
// of its own, from that package's init.
func runtimeMemory() int64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.Sys - m.HeapReleased)
}

// handoff waits for the monitor's request and drops our parent-death
// signal. It is set on the thread the monitor forked, our main thread:
// the setup's init is locked to it (cmd/unroot-init), the fresh one drops
// it on every thread (threads.go).
func (o *ownLog) handoff() {
	// Waited for in the netpoller, not in read(2): see pollSet.
	_ = unix.SetNonblock(initHandoffFD, true)
	f := os.NewFile(initHandoffFD, "handoff")
	defer f.Close()
	var b [1]byte
	if n, _ := f.Read(b[:]); n != 1 {
		return // the monitor is gone, and we with it
	}
	answer := []byte{'n'}
	// The signal is the main thread's, the one the monitor forked.
	if (everyThread || unix.Gettid() == unix.Getpid()) && prctlThreads(unix.PR_SET_PDEATHSIG, 0) == nil {
		answer[0] = 'y'
	}
	_, _ = f.Write(answer)
}

// finish: the process exited with code. The rest of the container goes
// (as it would with us), the log gets what they wrote last, and the exit
// file the end.
func (o *ownLog) finish(p *Process, code int) {
	_ = unix.Kill(-1, unix.SIGKILL)
	done := make(chan struct{})
	go func() { o.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	info := ExitInfo{ExitCode: code, FinishedAt: time.Now()}
	if p.MemEvents {
		f := os.NewFile(initMemEventsFD, "memory.events")
		b := make([]byte, 512)
		n, _ := f.ReadAt(b, 0)
		info.OOMKilled = oomKill(b[:n])
		f.Close()
	}
	b, _ := json.Marshal(info)
	ef := os.NewFile(initExitFD, "exit")
	_, _ = ef.WriteAt(append(b, '\n'), 0)
	ef.Close()
	o.w.Close()
}
