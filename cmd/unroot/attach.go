package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/unroot/unroot/container"
	"github.com/unroot/unroot/container/cinit"
)

// cmdAttach follows a detached container's output from now on (its log:
// the detached process owns the container's stdout and stderr) and, for a
// container started with -i, feeds it our stdin. It returns with the
// container's exit code once the container stops.
func cmdAttach(g *globals, args []string) error {
	fs := newFlags("attach")
	noStdin := fs.Bool("no-stdin", false, "do not attach stdin")
	sigProxy := fs.Bool("sig-proxy", true, "proxy received signals (Ctrl-C's SIGINT too) to the container")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"attach", fmt.Errorf("requires exactly 1 argument: CONTAINER")}
	}
	d := dirs(g)
	c, err := d.Find(fs.Arg(0))
	if err != nil {
		return err
	}
	if !d.LoadState(c.ID).Active() {
		return fmt.Errorf("container %s is not running: start it first (unroot start -a %s runs it attached)", c.Name, c.Name)
	}
	path := d.LogPath(c.ID)
	var offset int64
	if st, err := os.Stat(path); err == nil {
		offset = st.Size()
	}
	if c.Spec.Stdin && !*noStdin {
		conn, err := container.AttachStdin(d, c.ID)
		if err != nil && !errors.Is(err, container.ErrNoStdin) {
			return err
		}
		if conn != nil {
			// Our end of input is not the container's: others may attach
			// later (Docker's StdinOnce is false for run -d -i).
			go func() { _, _ = io.Copy(conn, os.Stdin); conn.Close() }()
		}
	}
	if *sigProxy {
		sigs := make(chan os.Signal, 16)
		signal.Notify(sigs, cinit.Forwarded...)
		defer signal.Stop(sigs)
		go func() {
			for sig := range sigs {
				_ = container.Signal(d.LoadState(c.ID), sig.(syscall.Signal))
			}
		}()
	}
	emit, flush := logPrinter(false)
	if err := followLog(d, c, path, offset, emit, flush); err != nil {
		return err
	}
	if st, done := d.WaitExit(c.ID, 10*time.Second); done && st.ExitCode != 0 {
		return exitError{st.ExitCode}
	}
	return nil
}
