package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/unroot/unroot/userns"
)

// Run is the host half of `unroot run`: it starts the monitor in a new
// user namespace, relays signals and the terminal, and returns the
// container's exit code.
func Run(ctx context.Context, s *Spec) (int, error) {
	stdinTTY := term.IsTerminal(int(os.Stdin.Fd()))
	if s.Tty && s.Stdin && !stdinTTY {
		return ExitSetup, errors.New("the input device is not a TTY: drop -t, or run from a terminal")
	}
	var extra []*os.File
	var ptyParent *os.File
	if s.Tty {
		p, c, err := userns.SocketPair()
		if err != nil {
			return ExitSetup, err
		}
		ptyParent = p
		defer p.Close()
		extra = append(extra, c)
		defer c.Close()
	}
	// In a shared process group the terminal signals the monitor itself.
	s.SignalsFromTTY = !s.Tty && stdinTTY

	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, append(forwarded, unix.SIGWINCH)...)
	defer signal.Stop(sigs)

	child, err := userns.Start(userns.Options{
		Stage:      StageMonitor,
		Cloneflags: unix.CLONE_NEWNS,
		Mapping:    s.Mapping,
		Stdin:      os.Stdin,
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		ExtraFiles: extra,
		// With a terminal of its own the container must not also be in
		// the user's foreground process group.
		Setpgid: s.Tty,
	})
	if err != nil {
		return ExitSetup, err
	}
	for _, f := range extra {
		f.Close()
	}
	if err := child.Ctl.Send(Message{Spec: s}); err != nil {
		_ = child.Cmd.Process.Kill()
	}

	var restore func()
	var outDone chan struct{}
	var master *os.File
	var masterMu sync.Mutex
	if s.Tty {
		if stdinTTY {
			if st, err := term.MakeRaw(int(os.Stdin.Fd())); err == nil {
				restore = func() { _ = term.Restore(int(os.Stdin.Fd()), st) }
				defer restore()
			}
		}
		outDone = make(chan struct{})
		go func() {
			defer close(outDone)
			m, err := userns.RecvFD(ptyParent, "pty-master")
			if err != nil {
				return
			}
			masterMu.Lock()
			master = m
			masterMu.Unlock()
			resize(m)
			if s.Stdin {
				go func() { _, _ = io.Copy(m, os.Stdin) }()
			}
			_, _ = io.Copy(os.Stdout, m)
		}()
	}

	waitDone := make(chan struct{})
	go func() {
		for {
			select {
			case sig := <-sigs:
				if sig == unix.SIGWINCH {
					masterMu.Lock()
					if master != nil {
						resize(master)
					}
					masterMu.Unlock()
					continue
				}
				if s.SignalsFromTTY && isTTYSignal(sig) {
					continue
				}
				_ = child.Cmd.Process.Signal(sig)
			case <-waitDone:
				return
			}
		}
	}()
	err = child.Cmd.Wait()
	close(waitDone)
	child.Ctl.Close()
	if outDone != nil {
		// The container's terminal is gone; drain what it wrote last.
		select {
		case <-outDone:
		case <-time.After(2 * time.Second):
		}
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return ExitSetup, fmt.Errorf("waiting for the container: %w", err)
	}
	return exitCode(child.Cmd.ProcessState, nil), nil
}

func resize(master *os.File) {
	ws, err := unix.IoctlGetWinsize(int(os.Stdin.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return
	}
	_ = unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, ws)
}
