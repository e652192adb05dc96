package cinit

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// An init that keeps its container alone (Process.OwnLog) idles for as
// long as the container lives, and every thread of the Go runtime it
// holds costs ~50 kB of stacks in every such container. os/signal alone
// keeps two (one blocked receiving signals, one owning the signal mask),
// so this init catches no signal: the host side sends the container's
// signals to its process instead (container.Signal), as Docker does to
// its PID 1, and the init learns of its children's ends from pidfds,
// waiting in poll(2) on its main thread, which it holds anyway (the
// container's processes are forked from it).

// waker is an eventfd the exec server writes when it has queued a job
// for the main thread.
type waker struct{ fd int }

func newWaker() (*waker, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, err
	}
	return &waker{fd: fd}, nil
}

func (w *waker) wake() {
	var b [8]byte
	binary.NativeEndian.PutUint64(b[:], 1)
	_, _ = unix.Write(w.fd, b[:])
}

func (w *waker) drain() {
	var b [8]byte
	_, _ = unix.Read(w.fd, b[:])
}

// orphanReap is how often, at the latest, processes the container left
// to us are reaped: nothing tells us of their end without SIGCHLD.
const orphanReap = 60 * 1000 // ms

// reapQuiet is reap without signals: it waits for the process pid, runs
// the exec jobs the server queues (waking w) and reports their ends, and
// returns the process's status. ok is false, with nothing done, on a
// kernel without pidfds (Linux < 5.3).
func reapQuiet(pid int, jobs <-chan *execJob, w *waker, p *Process) (code int, ok bool) {
	pfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return 0, false
	}
	defer unix.Close(pfd)
	execs := map[int]int{}  // pid -> connection
	pidfds := map[int]int{} // pid -> its pidfd
	defer func() {
		for _, fd := range pidfds {
			unix.Close(fd)
		}
	}()
	for {
		if c, done := reapEnded(pid, execs, func(wpid int) {
			if fd, ok := pidfds[wpid]; ok {
				unix.Close(fd)
				delete(pidfds, wpid)
			}
		}); done {
			return c, true
		}
		fds := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}, {Fd: int32(pfd), Events: unix.POLLIN}}
		for _, fd := range pidfds {
			fds = append(fds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
		}
		if _, err := unix.Poll(fds, orphanReap); err != nil && err != unix.EINTR {
			return ExitSetup, true
		}
		if fds[0].Revents != 0 {
			w.drain()
		}
	jobs:
		for {
			select {
			case job := <-jobs:
				if epid := startExec(p, job); epid > 0 && !job.req.Detach {
					execs[epid] = job.conn
					if fd, err := unix.PidfdOpen(epid, 0); err == nil {
						pidfds[epid] = fd
					}
				}
			default:
				break jobs
			}
		}
	}
}
