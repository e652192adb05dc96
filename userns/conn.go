package userns

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Conn is a control connection between the unroot stages: JSON messages,
// one per line, and file descriptors passed alongside.
type Conn struct {
	f   *os.File
	dec *json.Decoder
	br  *bufio.Reader
}

// SocketPair returns two connected unix stream sockets as files.
func SocketPair() (*os.File, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "ctl-parent"), os.NewFile(uintptr(fds[1]), "ctl-child"), nil
}

// NewConn wraps a socket file.
func NewConn(f *os.File) *Conn {
	c := &Conn{f: f}
	c.br = bufio.NewReader(f)
	c.dec = json.NewDecoder(c.br)
	return c
}

// Send writes one message.
func (c *Conn) Send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = c.f.Write(append(b, '\n'))
	return err
}

// Recv reads one message into v.
func (c *Conn) Recv(v any) error { return c.dec.Decode(v) }

// File returns the underlying socket file (e.g. to pass it on).
func (c *Conn) File() *os.File { return c.f }

// Close closes the connection.
func (c *Conn) Close() error { return c.f.Close() }

// SendFD passes an open file to the peer. It must not be interleaved with
// buffered JSON reads on the same socket by the peer; unroot uses a
// dedicated socket for it.
func SendFD(sock *os.File, f *os.File) error {
	rights := unix.UnixRights(int(f.Fd()))
	return unix.Sendmsg(int(sock.Fd()), []byte{0}, rights, nil, 0)
}

// RecvFD receives a file passed with SendFD.
func RecvFD(sock *os.File, name string) (*os.File, error) {
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(int(sock.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) == 0 {
		return nil, fmt.Errorf("no file descriptor received")
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) == 0 {
		return nil, fmt.Errorf("no file descriptor received")
	}
	return os.NewFile(uintptr(fds[0]), name), nil
}
