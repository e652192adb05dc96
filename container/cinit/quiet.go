package cinit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// An init that keeps its container alone (Process.OwnLog) idles for as
// long as the container lives, and every thread of the Go runtime it
// holds costs ~50 kB of stacks in every such container. os/signal alone
// keeps two (one blocked receiving signals, one owning the signal mask),
// so this init catches no signal: the host side sends the container's
// signals to its process instead (container.Signal), as Docker does to
// its PID 1, and the init learns of its children's ends from pidfds,
// waited for in Go's netpoller (pollSet).

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

// pollSet waits until one of its descriptors is readable, parked in Go's
// netpoller (its epoll descriptor is one of the netpoller's): a goroutine
// blocked in poll(2) would hold a thread and make the runtime start
// another for everything else, ~20 kB more in every idle init.
type pollSet struct {
	fd  int
	f   *os.File
	rc  syscall.RawConn // nil: wait in epoll_wait(2) itself
	ev  [8]unix.EpollEvent
	fds []int32
}

// lazy is a goroutine started when its descriptor first becomes readable:
// what an idle container never does costs its init no stack.
type lazy struct {
	fd    int
	atEnd bool // started when the process has ended, if not before
	start func()
}

// fdOf is f's descriptor, left non-blocking (File.Fd makes it blocking).
func fdOf(f *os.File) int {
	fd := -1
	if rc, err := f.SyscallConn(); err == nil {
		_ = rc.Control(func(u uintptr) { fd = int(u) })
	}
	return fd
}

func newPollSet() (*pollSet, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	s := &pollSet{fd: fd}
	if unix.SetNonblock(fd, true) == nil {
		// os.NewFile adds a non-blocking descriptor to the netpoller.
		s.f = os.NewFile(uintptr(fd), "epoll")
		s.rc, _ = s.f.SyscallConn()
	}
	return s, nil
}

func (s *pollSet) add(fd int) error {
	return unix.EpollCtl(s.fd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)})
}

// wait returns the descriptors that are readable once one is, or none
// after timeout ms.
func (s *pollSet) wait(timeout int) ([]int32, error) {
	var n int
	if s.rc != nil {
		_ = s.f.SetReadDeadline(time.Now().Add(time.Duration(timeout) * time.Millisecond))
		err := s.rc.Read(func(fd uintptr) bool {
			n, _ = unix.EpollWait(int(fd), s.ev[:], 0)
			return n > 0
		})
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, nil
		}
		if err == nil {
			return s.ready(n), nil
		}
		// Not in the netpoller after all: wait here.
		s.rc = nil
	}
	n, err := unix.EpollWait(s.fd, s.ev[:], timeout)
	if err == unix.EINTR {
		return nil, nil
	}
	return s.ready(n), err
}

func (s *pollSet) ready(n int) []int32 {
	s.fds = s.fds[:0]
	for _, e := range s.ev[:max(n, 0)] {
		s.fds = append(s.fds, e.Fd)
	}
	return s.fds
}

func (s *pollSet) close() {
	if s.f != nil {
		s.f.Close()
		return
	}
	unix.Close(s.fd)
}

// orphanReap is how often, at the latest, processes the container left
// to us are reaped: nothing tells us of their end without SIGCHLD.
const orphanReap = 60 * 1000 // ms

// reapQuiet is reap without signals: it waits for the process pid, runs
// the exec jobs the server queues (waking w) and reports their ends, and
// returns the process's status. ok is false, with nothing done, on a
// kernel without pidfds (Linux < 5.3).
//
// The goroutines of later start when their descriptors first become
// readable (those atEnd, if they have not, when the process has ended).
func reapQuiet(pid int, jobs <-chan *execJob, w *waker, p *Process, later []lazy) (code int, ok bool) {
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
	set, err := newPollSet()
	if err != nil {
		return 0, false
	}
	defer set.close()
	if set.add(w.fd) != nil || set.add(pfd) != nil {
		return 0, false
	}
	for _, l := range later {
		if set.add(l.fd) != nil {
			return 0, false
		}
	}
	started := make([]bool, len(later))
	defer func() {
		for i, l := range later {
			if !started[i] && l.atEnd {
				l.start()
			}
		}
	}()
	for {
		if c, done := reapEnded(pid, execs, func(wpid int) {
			if fd, ok := pidfds[wpid]; ok {
				// Closing it takes it out of the set too.
				unix.Close(fd)
				delete(pidfds, wpid)
			}
		}); done {
			return c, true
		}
		ready, err := set.wait(orphanReap)
		if err != nil {
			return ExitSetup, true
		}
		for i, l := range later {
			if !started[i] && slices.Contains(ready, int32(l.fd)) {
				started[i] = true
				_ = unix.EpollCtl(set.fd, unix.EPOLL_CTL_DEL, l.fd, nil)
				l.start()
			}
		}
		w.drain()
	jobs:
		for {
			select {
			case job := <-jobs:
				if epid := startExec(p, job); epid > 0 && !job.req.Detach {
					execs[epid] = job.conn
					if fd, err := unix.PidfdOpen(epid, 0); err == nil {
						pidfds[epid] = fd
						_ = set.add(fd)
					}
				}
			default:
				break jobs
			}
		}
	}
}
