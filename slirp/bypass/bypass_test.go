package bypass

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseSockaddr(t *testing.T) {
	v4 := make([]byte, unix.SizeofSockaddrInet4)
	binary.NativeEndian.PutUint16(v4, unix.AF_INET)
	binary.BigEndian.PutUint16(v4[2:], 5201)
	copy(v4[4:], []byte{10, 0, 2, 2})
	v6 := make([]byte, unix.SizeofSockaddrInet6)
	binary.NativeEndian.PutUint16(v6, unix.AF_INET6)
	binary.BigEndian.PutUint16(v6[2:], 80)
	a16 := netip.MustParseAddr("::ffff:10.0.2.2").As16()
	copy(v6[8:], a16[:])
	v6real := append([]byte(nil), v6...)
	a16 = netip.MustParseAddr("fd00::2").As16()
	copy(v6real[8:], a16[:])
	unixSa := make([]byte, 110)
	binary.NativeEndian.PutUint16(unixSa, unix.AF_UNIX)
	hl := netip.MustParseAddr("10.0.2.2")
	for _, c := range []struct {
		name string
		sa   []byte
		port uint16
		ok   bool
	}{
		{"v4", v4, 5201, true},
		{"v4 short", v4[:8], 0, false},
		{"v4-mapped v6", v6, 80, true},
		{"other v6", v6real, 0, false},
		{"unix", unixSa, 0, false},
		{"empty", nil, 0, false},
	} {
		port, ok := target(c.sa, hl)
		if port != c.port || ok != c.ok {
			t.Errorf("%s: target = %d, %v; want %d, %v", c.name, port, ok, c.port, c.ok)
		}
	}
	other := append([]byte(nil), v4...)
	copy(other[4:], []byte{10, 0, 2, 3})
	if _, ok := target(other, hl); ok {
		t.Error("10.0.2.3 taken for the host loopback")
	}
	zeroPort := append([]byte(nil), v4...)
	binary.BigEndian.PutUint16(zeroPort[2:], 0)
	if _, ok := target(zeroPort, hl); ok {
		t.Error("port 0 bypassed")
	}
	if _, ok := target(v4, netip.Addr{}); ok {
		t.Error("bypassed without a host loopback address")
	}
}

func TestFdinfoCloexec(t *testing.T) {
	if !fdinfoCloexec([]byte("pos:\t0\nflags:\t02000002\nmnt_id:\t15\n")) {
		t.Error("02000002: want close-on-exec")
	}
	if fdinfoCloexec([]byte("pos:\t0\nflags:\t02\n")) {
		t.Error("02: want no close-on-exec")
	}
}

func TestEpollWatches(t *testing.T) {
	info := []byte("pos:\t0\nflags:\t02\nmnt_id:\t15\ntfd:        5 events:       19 data:                5  pos:0 ino:2a sdev:8\ntfd:       12 events:       1d data:                c  pos:0 ino:2b sdev:8\n")
	for fd, want := range map[int]bool{5: true, 12: true, 1: false, 19: false, 0: false} {
		if got := epollWatches(info, fd); got != want {
			t.Errorf("epollWatches(fd %d) = %v, want %v", fd, got, want)
		}
	}
}

func TestKernelAtLeast(t *testing.T) {
	for rel, want := range map[string]bool{
		"6.1.0-18-amd64": true, "5.9.0": true, "5.10.209": true, "5.8.18-100.fc31": false,
		"4.19.0-26-amd64": false, "6.18.44-fc-v1272": true, "": false, "x": false,
	} {
		if got := kernelAtLeast(rel, 5, 9); got != want {
			t.Errorf("kernelAtLeast(%q, 5, 9) = %v, want %v", rel, got, want)
		}
	}
}

func TestProgram(t *testing.T) {
	p := program(unix.AUDIT_ARCH_X86_64)
	if len(p) != 6 || p[4].K != unix.SECCOMP_RET_USER_NOTIF || p[5].K != unix.SECCOMP_RET_ALLOW {
		t.Fatalf("unexpected program %+v", p)
	}
	// Both "not this ABI" and "not connect" must land on ALLOW.
	if 1+1+int(p[1].Jf) != 5 || 3+1+int(p[3].Jf) != 5 {
		t.Errorf("jumps do not reach ALLOW: %+v", p)
	}
}

// The child: a filtered process that connects to the fake host-loopback
// address (TEST-NET-1, unroutable) and reports what it got.
const envChild = "UNROOT_BYPASS_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(envChild) != "" {
		os.Exit(child())
	}
	os.Exit(m.Run())
}

const fakeHost = "192.0.2.1"

func child() int {
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Println("nnp:", err)
		return 1
	}
	l, err := InstallFilter()
	if err != nil {
		fmt.Println("filter:", err)
		return 1
	}
	if err := unix.Sendmsg(3, []byte{0}, unix.UnixRights(l), nil, 0); err != nil {
		fmt.Println("send:", err)
		return 1
	}
	unix.Close(l)
	unix.Close(3)
	for _, a := range strings.Split(os.Getenv(envChild), ",") {
		addr, port, _ := strings.Cut(a, ":")
		p, _ := strconv.Atoi(port)
		for _, nonblock := range []bool{false, true} {
			fmt.Printf("%s nonblock=%v: %s\n", a, nonblock, dialRaw(addr, p, nonblock, false))
		}
		fmt.Printf("%s epoll: %s\n", a, dialRaw(addr, p, true, true))
	}
	return 0
}

// dialRaw connects on this (filtered) thread and returns "peer=ADDR
// GREETING" or the error.
func dialRaw(addr string, port int, nonblock, epoll bool) string {
	typ := unix.SOCK_STREAM
	if nonblock {
		typ |= unix.SOCK_NONBLOCK
	}
	fd, err := unix.Socket(unix.AF_INET, typ, 0)
	if err != nil {
		return err.Error()
	}
	defer unix.Close(fd)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if epoll { // registered before connect(2), as nginx does
		ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			return err.Error()
		}
		defer unix.Close(ep)
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLOUT, Fd: int32(fd)}); err != nil {
			return err.Error()
		}
	}
	err = unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: netip.MustParseAddr(addr).As4()})
	if nonblock && err == unix.EINPROGRESS {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		_, _ = unix.Poll(pfd, 3000)
		if e, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); e != 0 {
			err = unix.Errno(e)
		} else {
			err = nil
		}
		_ = unix.SetNonblock(fd, false)
	}
	if err != nil {
		return "error " + err.Error()
	}
	nodelay, _ := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY)
	peer, _ := unix.Getpeername(fd)
	buf := make([]byte, 64)
	n, _ := unix.Read(fd, buf)
	p4, _ := peer.(*unix.SockaddrInet4)
	return fmt.Sprintf("peer=%v nodelay=%d %s", netip.AddrFrom4(p4.Addr), nodelay, strings.TrimSpace(string(buf[:n])))
}

func TestBypass(t *testing.T) {
	if auditArch() == 0 {
		t.Skip("not supported on " + runtime.GOARCH)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, "hello-from-host")
			c.Close()
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	// A port nothing listens on.
	l2, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := l2.Addr().(*net.TCPAddr).Port
	l2.Close()

	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	parent, childEnd := os.NewFile(uintptr(fds[0]), "p"), os.NewFile(uintptr(fds[1]), "c")
	defer parent.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+fmt.Sprintf("%s:%d,%s:%d,127.0.0.1:%d", fakeHost, port, fakeHost, closed, port))
	cmd.ExtraFiles = []*os.File{childEnd}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	childEnd.Close()
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(int(parent.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		cmd.Wait()
		t.Fatalf("receiving the listener: %v\n%s", err, out.String())
	}
	msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
	if len(msgs) != 1 {
		cmd.Wait()
		t.Fatalf("no listener passed\n%s", out.String())
	}
	rights, _ := unix.ParseUnixRights(&msgs[0])
	var logs []string
	sup, err := Serve(os.NewFile(uintptr(rights[0]), "listener"), fakeHost, func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) })
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		err = <-done
	}
	sup.Close()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out.String())
	}
	got := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ": ")
		got[k] = v
	}
	t.Logf("child:\n%s(logs %v)", out.String(), logs)
	for _, nb := range []string{"false", "true"} {
		k := fmt.Sprintf("%s:%d nonblock=%s", fakeHost, port, nb)
		if got[k] != "peer=127.0.0.1 nodelay=1 hello-from-host" {
			t.Errorf("%s: got %q, want the host's greeting through the bypass (peer 127.0.0.1, TCP_NODELAY kept)", k, got[k])
		}
		k = fmt.Sprintf("%s:%d nonblock=%s", fakeHost, closed, nb)
		if got[k] != "error connection refused" {
			t.Errorf("%s: got %q, want connection refused", k, got[k])
		}
		k = fmt.Sprintf("127.0.0.1:%d nonblock=%s", port, nb)
		if got[k] != "peer=127.0.0.1 nodelay=1 hello-from-host" {
			t.Errorf("%s (not bypassed, continues): got %q", k, got[k])
		}
	}
	// Registered with epoll before connect(2): left to the normal path,
	// which here (no network namespace) cannot reach the fake address.
	if k := fmt.Sprintf("%s:%d epoll", fakeHost, port); strings.Contains(got[k], "hello-from-host") {
		t.Errorf("%s: got %q, want the connect(2) left alone", k, got[k])
	}
	// Both greetings, and the non-blocking connect to the closed port
	// (EINPROGRESS on the host: the refusal comes later, on the new socket).
	if n := sup.Bypassed(); n != 3 {
		t.Errorf("Bypassed() = %d, want 3", n)
	}
}
