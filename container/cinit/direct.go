package cinit

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/unroot/unroot/container/scratch"
	"github.com/unroot/unroot/internal/trace"
	"github.com/unroot/unroot/slirp/ifconf"
	"github.com/unroot/unroot/userns"
)

// StageDirect is the init started by the fast path's front straight into
// all of the container's namespaces: it also does what a monitor does
// for the other inits (the network namespace's loopback, the writable
// layer and its overlay, the clean-up), which saves a process and its
// start-up on every `run --rm`.
const StageDirect = "init-direct"

// Scratch is the writable layer the direct init makes for itself: a
// directory of package scratch over the image's layers.
type Scratch struct {
	Tmp     string   `json:"tmp"` // scratch.Dir of the store
	ID      string   `json:"id"`  // the container's
	ImageID string   `json:"image_id"`
	Lower   []string `json:"lower"` // the image's layers, top first
	GIDs    uint64   `json:"gids"`  // mapped group ids (the ping range)
}

// DirectMain is the direct init's main: as Main, started straight into
// the namespaces, before its mapping is written (userns.EnterEarly).
func DirectMain() int {
	runtime.LockOSThread()
	trace.Mark("init: main")
	// Started early (userns.Options.Early): the spec arrives while the
	// parent still writes our mapping.
	ctl, mapped := userns.EnterEarly()
	// Kept until the end, for the exit code: not the process's.
	unix.CloseOnExec(int(ctl.File().Fd()))
	unix.CloseOnExec(initStartedFD)
	unix.CloseOnExec(initBypassFD)
	var p Process
	if err := ctl.Recv(&p); err != nil || p.Scratch == nil {
		return fail(ExitSetup, fmt.Errorf("reading the container spec: %v", err))
	}
	trace.Mark("init: spec read")
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	// What needs capabilities but no mapped ids is done before the wait.
	cleanup, err := prepareScratch(&p)
	if err != nil {
		if cleanup != nil {
			cleanup()
		}
		return fail(ExitSetup, err)
	}
	if err := mapped(); err != nil {
		cleanup()
		return fail(ExitSetup, err)
	}
	// The parent keeps its end open while it waits for us; closed means
	// it died before our parent-death signal was armed again.
	if userns.ParentGone(ctl) {
		cleanup()
		return ExitSetup
	}
	trace.Mark("init: mapped")
	sigs, caught := CatchSignals(Forwarded...)
	if err := mountScratch(&p); err != nil {
		cleanup()
		return fail(ExitSetup, err)
	}
	trace.Mark("init: rootfs mounted")
	if l := p.Link; l != nil {
		// The parent starts the network's helper (slirp4netns) once we
		// are mapped, and it makes the interface: meanwhile we set the
		// rootfs up.
		p.beforeStart = func() error {
			var m string
			if err := ctl.Recv(&m); err != nil || m != NetworkUp {
				return fmt.Errorf("waiting for the network: %v", err)
			}
			trace.Mark("init: network up")
			return l.configure()
		}
	}
	code := run(&p, sigs, caught)
	trace.Mark("init: process ended")
	// This thread has the container's capabilities now (see applySecurity);
	// the clean-up needs ours, which the runtime's other threads still have.
	done := make(chan struct{})
	go func() { cleanup(); close(done) }()
	<-done
	trace.Mark("init: cleaned up")
	// Nothing of the container is left: the parent may return now rather
	// than wait for our exit, which tears the namespaces down (~3 ms).
	_ = ctl.Send(code)
	return code
}

// Link is the interface of a direct init's user-mode network.
type Link struct {
	Dev     string `json:"dev"`
	MTU     int    `json:"mtu"`
	IP      string `json:"ip"`
	Prefix  int    `json:"prefix"`
	Gateway string `json:"gateway"`
}

// NetworkUp is the parent's message that a direct init's network helper
// has made its interface (Process.Link).
const NetworkUp = "network-up"

func (l *Link) configure() error {
	if err := ifconf.Up(l.Dev, l.MTU); err != nil {
		return err
	}
	return ifconf.Address(l.Dev, l.IP, l.Prefix, l.Gateway)
}

// prepareScratch makes our mounts private, brings the network namespace's
// loopback up, registers the container's layer and makes its directories:
// none of it needs mapped ids. The clean-up it returns ends every process
// left in the container and removes the layer; it works after pivot_root
// through a descriptor of the scratch directory, which the container's
// processes cannot reach: we are not dumpable, and the fast path leaves
// containers with CAP_SYS_PTRACE to the full unroot.
func prepareScratch(p *Process) (func(), error) {
	// Nothing mounted from here on may leak back to the host's namespace.
	if err := mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return nil, err
	}
	if p.Net != "host" {
		if err := LoopbackUp(); err != nil {
			return nil, err
		}
	}
	sc := p.Scratch
	id := sc.ID
	dir := filepath.Join(sc.Tmp, id)
	lock, err := scratch.Register(sc.Tmp, dir, sc.ImageID, sc.Lower)
	if err != nil {
		return nil, err
	}
	tmp, err := os.Open(sc.Tmp)
	if err != nil {
		lock.Close()
		return nil, err
	}
	cleanup := func() {
		// PID 1 taking every process of the namespace with it.
		_ = unix.Kill(-1, unix.SIGKILL)
		for {
			var ws unix.WaitStatus
			if _, err := unix.Wait4(-1, &ws, 0, nil); err == unix.ECHILD {
				break
			} else if err != nil && err != unix.EINTR {
				break
			}
		}
		if unix.Fchdir(int(tmp.Fd())) == nil {
			_ = os.RemoveAll(id)
			scratch.Sweep(".")
		}
		lock.Close()
		tmp.Close()
	}
	return cleanup, scratch.Make(dir)
}

// mountScratch lets the container's groups ping and mounts its rootfs
// (p.Rootfs): an overlay needs the mapping.
func mountScratch(p *Process) (err error) {
	if p.Net != "host" {
		// The range is of group ids of the namespace: only once mapped.
		AllowPing(p.Scratch.GIDs)
	}
	p.Rootfs, err = scratch.MountMade(filepath.Join(p.Scratch.Tmp, p.Scratch.ID), p.Scratch.Lower)
	return err
}
