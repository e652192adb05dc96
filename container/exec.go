package container

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/unroot/unroot/container/cinit"
)

// ExecRequest is what `unroot exec` asks of a container.
type ExecRequest = cinit.ExecRequest

// Exec runs a process in a running container: it connects to the exec
// socket of the container's init, which starts the process as a child of
// its own, with the container's ids, capabilities, cgroup and namespaces.
// The process uses our stdin (with interactive), stdout and stderr
// directly, or a terminal of the container's devpts with req.Tty. It
// returns the process's exit code.
func Exec(d Dirs, id string, req ExecRequest, interactive bool) (int, error) {
	fd, err := dialExec(d, id)
	if err != nil {
		return ExitSetup, err
	}
	defer unix.Close(fd)
	var files []*os.File
	if !req.Tty {
		devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			return ExitSetup, err
		}
		defer devnull.Close()
		files = []*os.File{devnull, os.Stdout, os.Stderr}
		if interactive {
			files[0] = os.Stdin
		}
		if req.Detach {
			files = []*os.File{devnull, devnull, devnull}
		}
	}
	b, err := jsonMarshal(req)
	if err != nil {
		return ExitSetup, err
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	if err := unix.Sendmsg(fd, b, oob, nil, 0); err != nil {
		return ExitSetup, fmt.Errorf("sending the exec request: %w", err)
	}
	var rep cinit.ExecReply
	got, err := cinit.RecvMsg(fd, &rep)
	if err != nil {
		return ExitSetup, fmt.Errorf("the container did not answer: %w", err)
	}
	if rep.Error != "" {
		for _, f := range got {
			f.Close()
		}
		fmt.Fprintf(os.Stderr, "unroot: %s\n", rep.Error)
		return rep.Code, ErrReported
	}
	if req.Detach {
		return 0, nil
	}
	var outDone chan struct{}
	if req.Tty {
		if len(got) != 1 {
			return ExitSetup, errors.New("the container sent no terminal")
		}
		master := got[0]
		defer master.Close()
		if term.IsTerminal(int(os.Stdin.Fd())) {
			if st, err := term.MakeRaw(int(os.Stdin.Fd())); err == nil {
				defer func() { _ = term.Restore(int(os.Stdin.Fd()), st) }()
			}
			resize(master)
			winch := make(chan os.Signal, 1)
			signal.Notify(winch, unix.SIGWINCH)
			defer signal.Stop(winch)
			go func() {
				for range winch {
					resize(master)
				}
			}()
		}
		if interactive {
			go func() { _, _ = io.Copy(master, os.Stdin) }()
		}
		outDone = make(chan struct{})
		go func() { defer close(outDone); _, _ = io.Copy(os.Stdout, master) }()
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)
	go func() {
		for sig := range sigs {
			b, _ := jsonMarshal(cinit.ExecReply{Signal: int(sig.(unix.Signal))})
			_ = unix.Sendmsg(fd, b, nil, nil, 0)
		}
	}()
	for {
		var m cinit.ExecReply
		if _, err := cinit.RecvMsg(fd, &m); err != nil {
			return 137, fmt.Errorf("the container stopped before the process ended")
		}
		if m.Exit != nil {
			if outDone != nil {
				select {
				case <-outDone:
				case <-time.After(2 * time.Second):
				}
			}
			return *m.Exit, nil
		}
	}
}

// dialExec connects to the container's exec socket.
func dialExec(d Dirs, id string) (int, error) {
	path := filepath.Join(d.StateDir(id), "exec.sock")
	dir, err := unix.Open(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("the container's run directory: %w", err)
	}
	defer unix.Close(dir)
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: "/proc/self/fd/" + strconv.Itoa(dir) + "/exec.sock"}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("connecting to the container (is it running?): %w", err)
	}
	return fd, nil
}

// CopyFrom copies ctrPath out of a running container to hostPath, the way
// docker cp does. The container's init writes a tar stream, read here
// with every name confined to the destination.
func CopyFrom(d Dirs, id, ctrPath, hostPath string) error {
	name := filepath.Base(filepath.Clean("/" + ctrPath))
	dir, top, err := cinit.CopyPlan(hostPath, name)
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	err = copyRequest(d, id, ExecRequest{Copy: "from", Path: ctrPath}, w, func() error { return cinit.ExtractTar(r, dir, top) })
	return err
}

// CopyTo copies hostPath into a running container at ctrPath.
func CopyTo(d Dirs, id, hostPath, ctrPath string) error {
	if _, err := os.Lstat(hostPath); err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	name := filepath.Base(filepath.Clean(hostPath))
	return copyRequest(d, id, ExecRequest{Copy: "to", Path: ctrPath, Args: []string{name}}, r, func() error {
		err := cinit.WriteTar(w, hostPath, name)
		w.Close()
		return err
	})
}

// copyRequest sends req with the container's end of a pipe, runs ours,
// and waits for the container's verdict.
func copyRequest(d Dirs, id string, req ExecRequest, theirs *os.File, ours func() error) error {
	fd, err := dialExec(d, id)
	if err != nil {
		theirs.Close()
		return err
	}
	defer unix.Close(fd)
	b, _ := jsonMarshal(req)
	err = unix.Sendmsg(fd, b, unix.UnixRights(int(theirs.Fd())), nil, 0)
	theirs.Close()
	if err != nil {
		return err
	}
	ourErr := ours()
	var rep cinit.ExecReply
	_, err = cinit.RecvMsg(fd, &rep)
	if ourErr != nil {
		return ourErr // the container's side then only saw a cut stream
	}
	if err != nil {
		return fmt.Errorf("the container did not answer: %w", err)
	}
	if rep.Error != "" {
		return errors.New(rep.Error)
	}
	return ourErr
}
