package bypass

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Kernel ABI (include/uapi/linux/seccomp.h).
type seccompData struct {
	Nr   int32
	Arch uint32
	IP   uint64
	Args [6]uint64
}

type notif struct {
	ID    uint64
	Pid   uint32
	Flags uint32
	Data  seccompData
}

type notifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

type notifAddfd struct {
	ID         uint64
	Flags      uint32
	Srcfd      uint32
	Newfd      uint32
	NewfdFlags uint32
}

// Supervisor answers the container's connect(2) notifications.
type Supervisor struct {
	fd           int
	hostLoopback netip.Addr
	stopR, stopW *os.File
	loopDone     chan struct{}
	handlers     sync.WaitGroup
	// Bypassed counts the connections moved to the host's loopback.
	mu       sync.Mutex
	bypassed int
	logf     func(format string, args ...any)
}

// Serve starts answering notifications from listener (InstallFilter's
// descriptor, passed up from the container; Serve owns it). Connections
// to hostLoopback (the address under which the container reaches the
// host's 127.0.0.1) are made on the host; all others continue unchanged.
// logf, if set, receives one line per failure (for --debug).
func Serve(listener *os.File, hostLoopback string, logf func(format string, args ...any)) (*Supervisor, error) {
	hl, err := netip.ParseAddr(hostLoopback)
	if err != nil {
		listener.Close()
		return nil, fmt.Errorf("bypass: host loopback address %q: %w", hostLoopback, err)
	}
	fd, err := unix.Dup(int(listener.Fd()))
	listener.Close()
	if err != nil {
		return nil, err
	}
	unix.CloseOnExec(fd)
	r, w, err := os.Pipe()
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	s := &Supervisor{fd: fd, hostLoopback: hl.Unmap(), stopR: r, stopW: w, logf: logf, loopDone: make(chan struct{})}
	go s.loop()
	return s, nil
}

// Bypassed returns how many connections went to the host's loopback
// directly.
func (s *Supervisor) Bypassed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bypassed
}

// Close stops the supervisor. The container must be gone: a connect(2)
// it makes afterwards fails with ENOSYS. A handler still in a blocking
// connect(2) on the host (a listener with a full backlog) is not waited
// for beyond a second; the listener is then left open to it.
func (s *Supervisor) Close() {
	s.stopW.Close()
	<-s.loopDone
	s.stopR.Close()
	done := make(chan struct{})
	go func() { s.handlers.Wait(); close(done) }()
	select {
	case <-done:
		unix.Close(s.fd)
	case <-time.After(time.Second):
	}
}

func (s *Supervisor) loop() {
	defer close(s.loopDone)
	fds := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLIN}, {Fd: int32(s.stopR.Fd()), Events: unix.POLLIN}}
	for {
		fds[0].Revents, fds[1].Revents = 0, 0
		if _, err := unix.Poll(fds, -1); err != nil {
			if err == unix.EINTR {
				continue
			}
			s.logf("bypass: poll: %v", err)
			return
		}
		if fds[1].Revents != 0 {
			return
		}
		if fds[0].Revents&unix.POLLIN == 0 {
			if fds[0].Revents&(unix.POLLHUP|unix.POLLERR) != 0 {
				return // no filtered process left
			}
			continue
		}
		var n notif
		if err := ioctl(s.fd, unix.SECCOMP_IOCTL_NOTIF_RECV, unsafe.Pointer(&n)); err != nil {
			if err == unix.EINTR || err == unix.ENOENT {
				continue // interrupted, or the caller went away
			}
			s.logf("bypass: receiving a notification: %v", err)
			return
		}
		s.handlers.Add(1)
		go func() {
			defer s.handlers.Done()
			s.handle(&n)
		}()
	}
}

func ioctl(fd int, req uint, arg unsafe.Pointer) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(arg))
	if errno != 0 {
		return errno
	}
	return nil
}

// handle answers one notification: CONTINUE unless it is a TCP connect to
// the host loopback that could be made on the host.
func (s *Supervisor) handle(n *notif) {
	resp := notifResp{ID: n.ID, Flags: unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE}
	if n.Data.Nr == unix.SYS_CONNECT {
		if errno, ok := s.connect(n); ok {
			resp.Flags = 0
			resp.Error = -int32(errno)
		}
	}
	if err := ioctl(s.fd, unix.SECCOMP_IOCTL_NOTIF_SEND, unsafe.Pointer(&resp)); err != nil && err != unix.ENOENT {
		s.logf("bypass: answering pid %d: %v", n.Pid, err)
	}
}

// connect makes the connection on the host and puts the socket in place of
// the container's. ok is false when the connect(2) should continue as it
// is (not for the host loopback, not a plain TCP socket, or anything
// failed); otherwise errno is connect(2)'s result for the caller (0,
// EINPROGRESS for a non-blocking socket, ECONNREFUSED...).
func (s *Supervisor) connect(n *notif) (errno unix.Errno, ok bool) {
	sockfd, addrPtr, addrLen := int(n.Data.Args[0]), n.Data.Args[1], n.Data.Args[2]
	if addrLen < unix.SizeofSockaddrInet4 || addrLen > unix.SizeofSockaddrAny {
		return 0, false
	}
	sa := make([]byte, addrLen)
	if err := readMem(int(n.Pid), addrPtr, sa); err != nil {
		return 0, false
	}
	port, isHost := target(sa, s.hostLoopback)
	if !isHost {
		return 0, false
	}
	orig, err := grabFD(int(n.Pid), sockfd)
	if err != nil {
		s.logf("bypass: pid %d fd %d: %v", n.Pid, sockfd, err)
		return 0, false
	}
	defer unix.Close(orig)
	domain, nonblock, err := plainTCP(orig)
	if err != nil {
		return 0, false
	}
	// An event loop that registered the socket with epoll before
	// connect(2) (nginx does) would keep waiting on the old socket.
	if inEpoll(int(n.Pid), sockfd) {
		return 0, false
	}
	cloexec := fdCloexec(int(n.Pid), sockfd)
	// The memory read and the descriptor belong to the request only if it
	// is still pending (the thread was not killed, its pid not reused).
	id := n.ID
	if ioctl(s.fd, unix.SECCOMP_IOCTL_NOTIF_ID_VALID, unsafe.Pointer(&id)) != nil {
		return 0, false
	}
	typ := unix.SOCK_STREAM | unix.SOCK_CLOEXEC
	if nonblock {
		typ |= unix.SOCK_NONBLOCK
	}
	hs, err := unix.Socket(domain, typ, 0)
	if err != nil {
		return 0, false
	}
	defer unix.Close(hs)
	copyOptions(orig, hs)
	var dst unix.Sockaddr = &unix.SockaddrInet4{Port: int(port), Addr: [4]byte{127, 0, 0, 1}}
	if domain == unix.AF_INET6 {
		dst = &unix.SockaddrInet6{Port: int(port), Addr: netip.AddrFrom4([4]byte{127, 0, 0, 1}).As16()}
	}
	err = unix.Connect(hs, dst)
	var cerr unix.Errno
	switch {
	case err == nil:
	case errors.As(err, &cerr) && (cerr == unix.EINPROGRESS || cerr == unix.ECONNREFUSED || cerr == unix.ETIMEDOUT):
		if cerr != unix.EINPROGRESS {
			// Nothing listens there: the container gets the same
			// answer the user-mode stack would have given, on its
			// own, still unconnected, socket.
			return cerr, true
		}
	default:
		return 0, false
	}
	add := notifAddfd{ID: n.ID, Flags: unix.SECCOMP_ADDFD_FLAG_SETFD, Srcfd: uint32(hs), Newfd: uint32(sockfd)}
	if cloexec {
		add.NewfdFlags = unix.O_CLOEXEC
	}
	if err := ioctl(s.fd, unix.SECCOMP_IOCTL_NOTIF_ADDFD, unsafe.Pointer(&add)); err != nil {
		s.logf("bypass: pid %d fd %d: replacing the socket: %v", n.Pid, sockfd, err)
		return 0, false
	}
	s.mu.Lock()
	s.bypassed++
	s.mu.Unlock()
	return cerr, true
}

// readMem reads the caller's memory (the sockaddr connect(2) was given).
func readMem(pid int, addr uint64, buf []byte) error {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/mem")
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := f.ReadAt(buf, int64(addr))
	if n != len(buf) {
		return fmt.Errorf("short read (%d of %d bytes): %v", n, len(buf), err)
	}
	return nil
}

// grabFD duplicates the caller's descriptor into this process.
func grabFD(pid, fd int) (int, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd_open: %w", err)
	}
	defer unix.Close(pidfd)
	dup, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd_getfd: %w", err)
	}
	return dup, nil
}

// plainTCP checks that fd is an unbound, unconnected TCP socket of the
// inet families, and returns its family and whether it is non-blocking.
func plainTCP(fd int) (domain int, nonblock bool, err error) {
	if typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || typ != unix.SOCK_STREAM {
		return 0, false, errUnsupported
	}
	if proto, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL); err != nil || proto != unix.IPPROTO_TCP {
		return 0, false, errUnsupported
	}
	domain, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil || (domain != unix.AF_INET && domain != unix.AF_INET6) {
		return 0, false, errUnsupported
	}
	if domain == unix.AF_INET6 {
		if v6only, err := unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY); err != nil || v6only != 0 {
			return 0, false, errUnsupported
		}
	}
	// Bound to a local address or port: the program cares which; keep it.
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0, false, errUnsupported
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		if a.Port != 0 || a.Addr != [4]byte{} {
			return 0, false, errUnsupported
		}
	case *unix.SockaddrInet6:
		if a.Port != 0 || a.Addr != [16]byte{} {
			return 0, false, errUnsupported
		}
	}
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return 0, false, errUnsupported
	}
	return domain, fl&unix.O_NONBLOCK != 0, nil
}

// fdCloexec reads the close-on-exec flag of the caller's descriptor.
func fdCloexec(pid, fd int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/fdinfo/" + strconv.Itoa(fd))
	if err != nil {
		return false
	}
	return fdinfoCloexec(b)
}

// fdinfoCloexec parses the "flags:" line (octal) of /proc/PID/fdinfo/FD.
func fdinfoCloexec(b []byte) bool {
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("flags:")); ok {
			fl, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 8, 64)
			return err == nil && fl&unix.O_CLOEXEC != 0
		}
	}
	return false
}

// copyOptions carries over the options a program commonly sets before
// connect(2). Buffer sizes are not copied: the defaults read back would
// pin them and turn off the kernel's autotuning.
func copyOptions(from, to int) {
	for _, o := range []struct{ level, name int }{
		{unix.IPPROTO_TCP, unix.TCP_NODELAY},
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE},
		{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE},
		{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL},
		{unix.IPPROTO_TCP, unix.TCP_KEEPCNT},
		{unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT},
		{unix.SOL_SOCKET, unix.SO_REUSEADDR},
	} {
		if v, err := unix.GetsockoptInt(from, o.level, o.name); err == nil {
			_ = unix.SetsockoptInt(to, o.level, o.name, v)
		}
	}
	if l, err := unix.GetsockoptLinger(from, unix.SOL_SOCKET, unix.SO_LINGER); err == nil && l.Onoff != 0 {
		_ = unix.SetsockoptLinger(to, unix.SOL_SOCKET, unix.SO_LINGER, l)
	}
}

// inEpoll says whether descriptor fd of process pid is in the interest
// list of one of its epoll instances (the "tfd:" lines of their fdinfo).
func inEpoll(pid, fd int) bool {
	dir := "/proc/" + strconv.Itoa(pid)
	ents, err := os.ReadDir(dir + "/fd")
	if err != nil {
		return true // cannot tell: leave it alone
	}
	for _, e := range ents {
		if link, err := os.Readlink(dir + "/fd/" + e.Name()); err != nil || link != "anon_inode:[eventpoll]" {
			continue
		}
		b, err := os.ReadFile(dir + "/fdinfo/" + e.Name())
		if err != nil || epollWatches(b, fd) {
			return true
		}
	}
	return false
}

// epollWatches parses an epoll instance's fdinfo ("tfd:       5 events:
// ..." per watched descriptor) for descriptor fd.
func epollWatches(fdinfo []byte, fd int) bool {
	for _, line := range bytes.Split(fdinfo, []byte("\n")) {
		f := bytes.Fields(line)
		if len(f) >= 2 && string(f[0]) == "tfd:" && string(f[1]) == strconv.Itoa(fd) {
			return true
		}
	}
	return false
}
