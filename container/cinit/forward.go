package cinit

import (
	"errors"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// A container whose user-mode network is resident (package slirp's
// resident.go) has no unroot process on the host: its init holds the
// pipe whose closing ends slirp4netns, and forwards the published TCP
// ports itself, from listening sockets the host side made in the host's
// network namespace. It accepts there and connects to the container's
// address from in here, and the kernel splices the two sockets (io.Copy
// between TCP connections is splice(2)): RootlessKit's builtin port
// driver's way, with no user-mode TCP stack on the path.
const (
	// NetExitFD is the write end of slirp4netns's --exit-fd pipe (the
	// monitor passes it there).
	NetExitFD = 12
	// InitForwardFD is the first of the listening sockets, one per
	// Process.Forward entry, in order.
	InitForwardFD = NetExitFD + 1
)

// Forward is a published port the init forwards: connections accepted on
// its listening socket go to Addr (the container's address and port).
type Forward struct {
	Addr string `json:"addr"`
}

// netFDs are the descriptors of a resident network, none without one.
func netFDs(p *Process) []int {
	if !p.NetExit {
		return nil
	}
	fds := []int{NetExitFD}
	for i := range p.Forward {
		fds = append(fds, InitForwardFD+i)
	}
	return fds
}

// startForwards starts forwarding p's published ports; the listening
// sockets' descriptors are replaced by the runtime's (close-on-exec).
func startForwards(p *Process) error {
	for i, fw := range p.Forward {
		f := os.NewFile(uintptr(InitForwardFD+i), "port")
		l, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return err
		}
		go forward(l, fw.Addr)
	}
	return nil
}

func forward(l net.Listener, addr string) {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors or memory, for a moment.
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go splice(c.(*net.TCPConn), addr)
	}
}

// splice connects c to addr and copies both ways until both are done,
// passing half-closes on.
func splice(c *net.TCPConn, addr string) {
	defer c.Close()
	d, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return
	}
	dc := d.(*net.TCPConn)
	defer dc.Close()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(dc, c)
		_ = dc.CloseWrite()
		close(done)
	}()
	_, _ = io.Copy(c, dc)
	_ = c.CloseWrite()
	<-done
}

// closeNetFDs keeps a resident network's descriptors from the
// container's processes.
func closeNetFDs(p *Process) {
	for _, fd := range netFDs(p) {
		unix.CloseOnExec(fd)
	}
}
