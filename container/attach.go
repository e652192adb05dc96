package container

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

const attachSocket = "attach.sock"

// viaDirFD calls f with a name for file in dir that fits in a socket
// address (108 bytes at most, which a run directory's path may not):
// /proc/self/fd/N/FILE, N an O_PATH descriptor of dir.
func viaDirFD(dir, file string, f func(short string) error) error {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return f("/proc/self/fd/" + strconv.Itoa(fd) + "/" + file)
}

// serveAttach gives a run -d -i container its stdin: a pipe whose write
// end this process keeps open for the container's whole life (several
// runs with a restart policy), fed by whoever connects to attach.sock in
// the container's run directory. It returns the read end and a function
// that stops serving.
func serveAttach(d Dirs, id string) (*os.File, func(), error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	dir := d.StateDir(id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	path := filepath.Join(dir, attachSocket)
	_ = os.Remove(path)
	var l *net.UnixListener
	err = viaDirFD(dir, attachSocket, func(short string) error {
		old := unix.Umask(0o177)
		defer unix.Umask(old)
		var err error
		l, err = net.ListenUnix("unix", &net.UnixAddr{Name: short, Net: "unix"})
		return err
	})
	if err != nil {
		r.Close()
		w.Close()
		return nil, nil, fmt.Errorf("the container's attach socket %s: %w", path, err)
	}
	// Its name was only valid while the directory's descriptor was open.
	l.SetUnlinkOnClose(false)
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_, _ = io.Copy(w, conn)
			}()
		}
	}()
	return r, func() {
		l.Close()
		_ = os.Remove(path)
		w.Close()
	}, nil
}

// ErrNoStdin: the container was not started with -i.
var ErrNoStdin = errors.New("the container's stdin is not open")

// AttachStdin connects to a running run -d -i container's stdin: what is
// written to the connection goes to the container's process.
func AttachStdin(d Dirs, id string) (net.Conn, error) {
	var conn net.Conn
	err := viaDirFD(d.StateDir(id), attachSocket, func(short string) error {
		var err error
		conn, err = net.Dial("unix", short)
		return err
	})
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, ErrNoStdin
		}
		return nil, fmt.Errorf("connecting to the container's stdin: %w", err)
	}
	return conn, nil
}
