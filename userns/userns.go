// Package userns creates the user namespace unroot works in: the parent
// re-executes the unroot binary into new namespaces, writes the child's id
// mapping from outside, and only then lets the child go on. It follows
// RootlessKit's parent/child split: Start is the parent half, Enter the
// child half.
package userns

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/unroot/unroot/idmap"
	"github.com/unroot/unroot/internal/trace"
)

// EnvStage marks a process that was re-executed by Start; its value is
// the stage name. The child half must check it before doing anything else.
const EnvStage = "_UNROOT_STAGE"

// ctlFD is where the child finds its control socket.
const ctlFD = 3

// Options for Start.
type Options struct {
	Stage      string   // value of EnvStage in the child
	Args       []string // argv[1:] of the child
	Env        []string // environment; nil = inherit
	Cloneflags uintptr  // in addition to CLONE_NEWUSER
	Mapping    idmap.Mapping
	Stdin      *os.File
	Stdout     *os.File
	Stderr     *os.File
	ExtraFiles []*os.File // appear in the child from fd 4 on
	Setpgid    bool
	// Binary is the program the child execs once mapped; "" for the
	// running binary.
	Binary string
	// Early, when set, is sent to the child at once, before the mapping
	// is written, and the child is Binary itself from the start (no first
	// life), holding the namespace's capabilities as ambient ones: its
	// runtime's start and its first steps overlap the mapping helpers.
	// Such a child calls EnterEarly, not Enter.
	Early any
}

// Child is a process started in a new user namespace, mapped and released.
type Child struct {
	Cmd *exec.Cmd
	Ctl *Conn // the parent's end of the control socket
}

// Start re-executes the running binary in a new user namespace (plus
// Cloneflags), writes its mapping and returns with the child waiting for a
// first message on its control socket.
func Start(o Options) (*Child, error) {
	// Fail before anything is created when the machine cannot do it.
	if err := Preflight(o.Mapping); err != nil {
		return nil, err
	}
	self := o.Binary
	if self == "" {
		var err error
		if self, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("finding the unroot binary: %w", err)
		}
	}
	parentEnd, childEnd, err := SocketPair()
	if err != nil {
		return nil, err
	}
	defer childEnd.Close()

	ctl := NewConn(parentEnd)
	early := o.Early != nil && os.Getenv(EnvEarlyStart) != "0"
	var earlyMsg chan []byte
	if early {
		// Encoded while the child is being cloned, on another CPU.
		earlyMsg = make(chan []byte, 1)
		go func() {
			b, err := json.Marshal(o.Early)
			if err != nil {
				b = nil
			}
			earlyMsg <- b
		}()
	}
	cmd, err := startChild(o, self, childEnd, early)
	if err != nil && early {
		// A kernel without ambient capabilities (before 4.3), or a security
		// module that denies them: the first life that waits works there.
		trace.Mark("userns: no early start: " + err.Error())
		early = false
		cmd, err = startChild(o, self, childEnd, false)
	}
	if err != nil {
		parentEnd.Close()
		return nil, Diagnose(err)
	}
	trace.Mark("userns: child started")
	fail := func(err error) (*Child, error) {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		ctl.Close()
		return nil, err
	}
	if early {
		// The helpers first: they take longest.
		mapErr := make(chan error, 1)
		go func() { mapErr <- idmap.Write(cmd.Process.Pid, o.Mapping) }()
		b := <-earlyMsg
		if b == nil {
			<-mapErr
			return fail(errors.New("encoding the child's first message"))
		}
		if _, err := parentEnd.Write(append(b, '\n')); err != nil {
			<-mapErr
			return fail(fmt.Errorf("sending the child its first message: %w", err))
		}
		if err := <-mapErr; err != nil {
			return fail(err)
		}
		err = ctl.Send(released)
	} else {
		if err := idmap.Write(cmd.Process.Pid, o.Mapping); err != nil {
			return fail(err)
		}
		_, err = parentEnd.Write([]byte("M\n"))
		if err == nil && o.Early != nil {
			err = ctl.Send(o.Early)
		}
	}
	if err != nil {
		return fail(fmt.Errorf("releasing the user namespace: %w", err))
	}
	return &Child{Cmd: cmd, Ctl: ctl}, nil
}

// EnvEarlyStart=0 starts every child through the first life, as a
// kernel without ambient capabilities does (to compare, or to rule the
// early start out when something looks wrong).
const EnvEarlyStart = "UNROOT_EARLY_START"

// released is the message that tells an early child (Options.Early) its
// mapping is written.
const released = "mapped"

// startChild starts the child in its new namespaces: the first life that
// waits for the mapping, or (early) Binary itself with every capability
// of the namespace ambient, which it keeps across the exec although its
// uid is not mapped yet.
func startChild(o Options, self string, childEnd *os.File, early bool) (*exec.Cmd, error) {
	var cmd *exec.Cmd
	if early {
		cmd = exec.Command(self, o.Args...)
		cmd.Args[0] = "unroot"
		cmd.Env = []string{envEarly + "=1"}
	} else {
		cmd = firstLife(self, o.Args)
	}
	env := o.Env
	if env == nil {
		env = os.Environ()
	}
	// containers/image and containers/storage pick per-user paths (auth,
	// certs.d, sigstore) from these, as they do under Podman.
	cmd.Env = append(append(env, cmd.Env...), EnvStage+"="+o.Stage,
		"_CONTAINERS_USERNS_CONFIGURED=done",
		fmt.Sprintf("_CONTAINERS_ROOTLESS_UID=%d", os.Getuid()),
		fmt.Sprintf("_CONTAINERS_ROOTLESS_GID=%d", os.Getgid()),
		fmt.Sprintf("%s=%d", envParent, os.Getpid()))
	if o.Cloneflags&unix.CLONE_NEWNS != 0 {
		cmd.Env = append(cmd.Env, envOwnMountNS+"=1")
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = o.Stdin, o.Stdout, o.Stderr
	cmd.ExtraFiles = append([]*os.File{childEnd}, o.ExtraFiles...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWUSER | o.Cloneflags,
		Setpgid:    o.Setpgid,
		// The child must not outlive an unroot killed with SIGKILL.
		Pdeathsig: unix.SIGKILL,
	}
	if early {
		for c := 0; c <= LastCap(); c++ {
			cmd.SysProcAttr.AmbientCaps = append(cmd.SysProcAttr.AmbientCaps, uintptr(c))
		}
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}

// firstLife is the command that starts the child, still unmapped. Its
// only job is to wait for the mapping and then exec unroot, which as uid 0
// of the namespace gains its capabilities. /bin/sh does that with its
// read builtin (which reads byte by byte, leaving our later messages on the
// socket) in a millisecond, where unroot itself would spend tens of
// milliseconds in Go package initialisation, only to exec again.
func firstLife(self string, args []string) *exec.Cmd {
	if st, err := os.Stat("/bin/sh"); err == nil && st.Mode()&0o111 != 0 {
		cmd := exec.Command("/bin/sh", append([]string{"-c", `read -r _ <&3 && exec "$0" "$@"`, self}, args...)...)
		cmd.Args[0] = "unroot"
		cmd.Env = []string{envMapped + "=1"}
		return cmd
	}
	cmd := exec.Command(self, args...)
	cmd.Args[0] = "unroot"
	return cmd
}

// envMapped marks the second life of a child, after its mapping.
const envMapped = "_UNROOT_MAPPED"

// envEarly marks a child started early (Options.Early).
const envEarly = "_UNROOT_EARLY"

// Enter is the child half. The first time, it waits for the parent's
// signal that the mapping is written and re-executes the binary: a process
// exec'd before its uid_map existed has no capabilities in its namespace,
// and only a new execve as uid 0 grants them (RootlessKit does the same).
// The PID, and so the parent's view of us, stays the same.
func Enter() *Conn {
	f := os.NewFile(ctlFD, "ctl")
	if os.Getenv(envMapped) == "" {
		var b [1]byte
		if n, err := f.Read(b[:]); n != 1 || err != nil {
			fmt.Fprintln(os.Stderr, "unroot: the parent process went away before mapping the user namespace")
			os.Exit(125)
		}
		self, err := os.Executable()
		if err == nil {
			err = syscall.Exec(self, os.Args, append(os.Environ(), envMapped+"=1"))
		}
		fmt.Fprintf(os.Stderr, "unroot: re-executing in the user namespace: %v\n", err)
		os.Exit(125)
	}
	mapped()
	return NewConn(f)
}

// EnterEarly is the child half of a child started with Options.Early: it
// returns at once, still unmapped, with the connection its first message
// is on, and wait, which returns once the mapping is written. Until then
// the child has every capability in its namespaces, but its uid and gid
// are not mapped: it can mount and configure the network, not create
// files on a file system mounted in the namespace, change ids or mount an
// overlay. (After a fallback to the first life, wait returns at once.)
func EnterEarly() (c *Conn, wait func() error) {
	if os.Getenv(envEarly) == "" {
		return Enter(), func() error { return nil }
	}
	c = NewConn(os.NewFile(ctlFD, "ctl"))
	armParentDeath()
	checkOwnMounts()
	return c, func() error {
		var m string
		if err := c.Recv(&m); err != nil || m != released {
			return errors.New("the parent process went away before mapping the user namespace")
		}
		// The capabilities that carried us here must not reach what we
		// start, from whichever thread; as uid 0 of the namespace now, we
		// hold them anyway. (A runtime with cgo cannot reach every
		// thread: the calling one, which its caller locks.)
		_, _, errno := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0)
		if errno == unix.ENOTSUP {
			_ = unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
		}
		return nil
	}
}

// mapped is what a child does once mapped, before anything else.
func mapped() {
	armParentDeath()
	checkOwnMounts()
}

// armParentDeath arms the parent-death signal again, which the exec that
// gave us capabilities cleared (the kernel does so on any exec that
// raises privileges), then makes sure the parent did not die in between.
func armParentDeath() {
	_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
	// PID 1 of a new PID namespace has no parent it can see: it checks its
	// control socket instead (ParentGone).
	if os.Getpid() != 1 && strconv.Itoa(os.Getppid()) != os.Getenv(envParent) {
		os.Exit(125)
	}
}

// checkOwnMounts refuses early, with the reason, a namespace that grants
// no capabilities (AppArmor on Ubuntu 23.10+): nothing is created yet.
func checkOwnMounts() {
	if os.Getenv(envOwnMountNS) != "" {
		if err := checkMounts(); err != nil {
			fmt.Fprintf(os.Stderr, "unroot: %v\n", err)
			os.Exit(125)
		}
	}
}

// LastCap is the highest capability this kernel knows.
func LastCap() int {
	// Read without os.File: the fresh init allocates as little as it can.
	var b [8]byte
	fd, err := unix.Open("/proc/sys/kernel/cap_last_cap", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return unix.CAP_LAST_CAP
	}
	n, err := unix.Read(fd, b[:])
	unix.Close(fd)
	if err != nil {
		return unix.CAP_LAST_CAP
	}
	v := 0
	for _, ch := range b[:n] {
		if ch < '0' || ch > '9' {
			break
		}
		v = v*10 + int(ch-'0')
	}
	return v
}

// ParentGone reports whether the parent closed its end of the control
// socket c, which it keeps open for as long as it waits for us: for PID 1
// of a new PID namespace, the way to see that the parent died before the
// parent-death signal was armed again.
func ParentGone(c *Conn) bool {
	fds := []unix.PollFd{{Fd: int32(c.File().Fd()), Events: unix.POLLRDHUP}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n == 1 && fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP) != 0
}

// envOwnMountNS tells the child it has a mount namespace of its own.
const envOwnMountNS = "_UNROOT_OWN_MOUNTNS"

// envParent holds the pid of the process that started the child.
const envParent = "_UNROOT_PARENT"

// Stage returns the stage this process was started as, "" for a process
// the user started.
func Stage() string { return os.Getenv(EnvStage) }

// ExtraFile returns the n-th extra file passed with Options.ExtraFiles.
func ExtraFile(n int, name string) *os.File { return os.NewFile(uintptr(ctlFD+1+n), name) }
