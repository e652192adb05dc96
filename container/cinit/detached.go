package cinit

import (
	"bytes"
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

// ownLog copies the process's stdout and stderr, two pipes, into the log:
// from the main thread's wait (quiet.go), where the pipes are two more
// descriptors to poll; a goroutine per pipe would keep the runtime's
// poller thread and their stacks in every idle container.
type ownLog struct {
	w          *ctrlog.Writer
	streams    []*logStream
	outW, errW *os.File
	wg         sync.WaitGroup // the copies of copyInBackground
	background bool
}

// logBuf bounds a log line: longer ones are logged in parts (partial
// lines), as the detached host process does.
const logBuf = 16 << 10

func closeOwnFDs() {
	for fd := initLogFD; fd <= initHandoffFD; fd++ {
		unix.CloseOnExec(fd)
	}
}

// startOwnLog makes the pipes that will be the process's stdout and
// stderr (p.stdio); the main thread copies them into the log.
func startOwnLog(p *Process) (*ownLog, error) {
	w, err := ctrlog.OpenFiles(os.NewFile(initLogFD, "log"), os.NewFile(initLogOldFD, "log.1"), p.LogMax)
	if err != nil {
		return nil, err
	}
	o := &ownLog{w: w}
	var ends []*os.File
	for _, name := range []string{"stdout", "stderr"} {
		var fds [2]int
		if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
			return nil, err
		}
		if err := unix.SetNonblock(fds[0], true); err != nil {
			return nil, err
		}
		o.streams = append(o.streams, &logStream{name: name, fd: fds[0], buf: make([]byte, logBuf)})
		ends = append(ends, os.NewFile(uintptr(fds[1]), name))
	}
	o.outW, o.errW = ends[0], ends[1]
	p.stdio = []*os.File{os.Stdin, o.outW, o.errW}
	return o, nil
}

// copyInBackground copies the pipes from goroutines instead (a kernel
// without pidfds, where the main thread waits for signals).
func (o *ownLog) copyInBackground() {
	o.background = true
	for _, s := range o.streams {
		if s.fd < 0 {
			continue
		}
		_ = unix.SetNonblock(s.fd, false)
		f, name := os.NewFile(uintptr(s.fd), s.name), s.name
		s.fd = -1
		o.wg.Add(1)
		go func() { defer o.wg.Done(); o.w.Copy(name, f, logBuf) }()
	}
}

// pollFDs are the pipes still open, to poll for reading.
func (o *ownLog) pollFDs() []unix.PollFd {
	var fds []unix.PollFd
	for _, s := range o.streams {
		if s.fd >= 0 {
			fds = append(fds, unix.PollFd{Fd: int32(s.fd), Events: unix.POLLIN})
		}
	}
	return fds
}

// polled copies what the pipes among fds have to say.
func (o *ownLog) polled(fds []unix.PollFd) {
	for _, f := range fds {
		if f.Revents == 0 {
			continue
		}
		for _, s := range o.streams {
			if s.fd == int(f.Fd) {
				s.copy(o.w)
			}
		}
	}
}

// drain copies the pipes until every writer is gone, for up to d.
func (o *ownLog) drain(d time.Duration) {
	if o.background {
		done := make(chan struct{})
		go func() { o.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(d):
		}
		return
	}
	end := time.Now().Add(d)
	for {
		fds := o.pollFDs()
		left := time.Until(end)
		if len(fds) == 0 || left <= 0 {
			break
		}
		if _, err := unix.Poll(fds, int(left/time.Millisecond)+1); err != nil && err != unix.EINTR {
			break
		}
		o.polled(fds)
	}
	for _, s := range o.streams {
		if s.fd >= 0 {
			unix.Close(s.fd)
			s.fd = -1
		}
	}
}

// logStream is one of the process's output pipes, read without blocking
// into lines of at most logBuf bytes.
type logStream struct {
	name string
	fd   int // -1 once closed
	buf  []byte
	n    int
}

// copy reads the pipe once and logs the complete lines (and a full
// buffer as a partial line), keeping the rest for the next read; at the
// end of the pipe, what is left is logged as a partial line, as
// ctrlog.Writer.Copy does. Once per wake-up: a stream that never pauses
// must not hold up the other, nor the rest of the main thread's work.
func (s *logStream) copy(w *ctrlog.Writer) {
	m, err := unix.Read(s.fd, s.buf[s.n:])
	if m > 0 {
		s.n += m
		s.lines(w)
		return
	}
	if err == unix.EINTR || err == unix.EAGAIN {
		return
	}
	if s.n > 0 {
		w.Write(s.name, s.buf[:s.n], true)
		s.n = 0
	}
	unix.Close(s.fd)
	s.fd = -1
}

func (s *logStream) lines(w *ctrlog.Writer) {
	start := 0
	for {
		i := bytes.IndexByte(s.buf[start:s.n], '\n')
		if i < 0 {
			break
		}
		w.Write(s.name, s.buf[start:start+i], false)
		start += i + 1
	}
	if start == 0 && s.n == len(s.buf) {
		w.Write(s.name, s.buf, true)
		s.n = 0
		return
	}
	s.n = copy(s.buf, s.buf[start:s.n])
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
func (o *ownLog) started() {
	o.outW.Close()
	o.errW.Close()
	if fd, err := unix.Open("/dev/null", unix.O_WRONLY|unix.O_CLOEXEC, 0); err == nil {
		_ = unix.Dup3(fd, 1, 0)
		_ = unix.Dup3(fd, 2, 0)
		unix.Close(fd)
	}
	debug.FreeOSMemory()
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(runtimeMemory() + gcHeadroom)
}

// gcHeadroom is how much our memory may grow before a collection.
const gcHeadroom = 4 << 20

// runtimeMemory is the memory the runtime holds, as its memory limit
// counts it: what it has mapped, less what it gave back.
func runtimeMemory() int64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.Sys - m.HeapReleased)
}

// handoff waits for the monitor's request and drops our parent-death
// signal. It is set on the thread the monitor forked, our main thread
// (cmd/unroot-init locks the main goroutine to it): we must be on it.
func (o *ownLog) handoff() {
	f := os.NewFile(initHandoffFD, "handoff")
	defer f.Close()
	var b [1]byte
	if n, _ := f.Read(b[:]); n != 1 {
		return // the monitor is gone, and we with it
	}
	answer := []byte{'n'}
	if unix.Gettid() == unix.Getpid() && unix.Prctl(unix.PR_SET_PDEATHSIG, 0, 0, 0, 0) == nil {
		answer[0] = 'y'
	}
	_, _ = f.Write(answer)
}

// finish: the process exited with code. The rest of the container goes
// (as it would with us), the log gets what they wrote last, and the exit
// file the end.
func (o *ownLog) finish(p *Process, code int) {
	_ = unix.Kill(-1, unix.SIGKILL)
	o.drain(2 * time.Second)
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
