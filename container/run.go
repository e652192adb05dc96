package container

import (
	"context"
	"errors"
	"fmt"

	"os"

	"os/signal"
	"path/filepath"

	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/unroot/unroot/cgroupv2"
	"github.com/unroot/unroot/container/fastrun"
	"github.com/unroot/unroot/slirp"
	"github.com/unroot/unroot/userns"
)

// ErrReported is an error whose message a stage already printed.
var ErrReported = errors.New("error already reported")

// Run is the host half of `unroot run`: it starts the monitor in a new
// user namespace, sets up the network, relays signals and the terminal, and
// returns the container's exit code.
func Run(ctx context.Context, s *Spec) (int, error) {
	return RunWith(ctx, s, &RunIO{})
}

// RunIO is how the host half talks to the container: the user's terminal
// (the zero value: os.Stdin, os.Stdout, os.Stderr) or, for a detached
// container, /dev/null and the pipes of its log.
type RunIO struct {
	Stdin, Stdout, Stderr *os.File
	Detached              bool
	// OnStart is called once the container's init runs.
	OnStart func(StartInfo)
	// OnPorts is called with the published ports once they are bound
	// (host ports chosen by then).
	OnPorts func([]slirp.PortSpec)
	// OOMKilled is set on return when the kernel's OOM killer killed a
	// process of the container.
	OOMKilled bool
	// RestartCount is recorded in the state (RunRecorded); Restart, when
	// set, decides whether the container is restarted after the exit
	// code, and RunRecorded then records it as restarting and sets
	// Restarting instead of recording the end.
	RestartCount int
	Restart      func(code int) bool
	Restarting   bool
	// HandedOff is set on return when the container's init keeps the
	// container alone (Spec.OwnLog): the container still runs.
	HandedOff bool
}

// StartInfo is what the host half learns when the container starts.
type StartInfo struct {
	MonitorPid, InitPid int // as the host sees them
	StopSignal          string
	// Process: the command, environment, directory and user, resolved
	// with the image's config.
	Process *ResolvedProcess
	// OwnLog: the init writes the log and the exit file and will keep the
	// container alone (Spec.OwnLog); it is the container's process from
	// now on. CgroupUnit or CgroupDir is then the cgroup to remove once
	// the container has ended (the systemd scope, or the cgroupfs
	// directory). A second call without OwnLog takes that back.
	OwnLog                bool
	CgroupUnit, CgroupDir string
}

// ResolvedProcess is the container's main process as it was started.
type ResolvedProcess struct {
	Args []string `json:"args"`
	Env  []string `json:"env,omitempty"`
	Cwd  string   `json:"cwd,omitempty"`
	User string   `json:"user,omitempty"`
	// Labels: the image's, with the user's over them.
	Labels map[string]string `json:"labels,omitempty"`
}

// RunWith is Run with the container's standard streams and a hook.
func RunWith(ctx context.Context, s *Spec, rio *RunIO) (int, error) {
	if rio.Stdin == nil {
		rio.Stdin = os.Stdin
	}
	if rio.Stdout == nil {
		rio.Stdout = os.Stdout
	}
	if rio.Stderr == nil {
		rio.Stderr = os.Stderr
	}
	if s.Pull == "always" {
		if err := pullStage(s, rio); err != nil {
			return ExitSetup, err
		}
	}
	code, err := runOnce(ctx, s, rio)
	if errors.Is(err, errNeedPull) {
		if err := pullStage(s, rio); err != nil {
			return ExitSetup, err
		}
		code, err = runOnce(ctx, s, rio)
	}
	return code, err
}

// pullStage pulls s.Image as root in a user namespace of its own that
// shares the host's network.
func pullStage(s *Spec, rio *RunIO) error {
	child, err := userns.Start(userns.Options{
		Stage:      StagePull,
		Cloneflags: unix.CLONE_NEWNS,
		Mapping:    s.Mapping,
		// Progress goes to the user, or for a detached container to the
		// log of its unroot process, not to the container's.
		Stdin: nil, Stdout: os.Stderr, Stderr: os.Stderr,
	})
	if err != nil {
		return err
	}
	_ = child.Ctl.Send(Message{Spec: s})
	err = child.Cmd.Wait()
	child.Ctl.Close()
	if err != nil {
		return ErrReported
	}
	return nil
}

func runOnce(ctx context.Context, s *Spec, rio *RunIO) (int, error) {
	stdinTTY := !rio.Detached && term.IsTerminal(int(rio.Stdin.Fd()))
	if s.Tty && s.Stdin && !stdinTTY && !rio.Detached {
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
	// Host-loopback bypass: the init passes its seccomp listener up on
	// this socket (the monitor's extra file s.NetBypassExtra()).
	resident := s.OwnLog != nil && s.UserModeNet()
	s.NetBypass = !resident && s.UserModeNet() && !s.DisableHostLoopback && os.Getenv("UNROOT_NET_BYPASS") != "0"
	// A resident network (package slirp's resident.go): slirp4netns's
	// exit pipe and the published ports' listening sockets go down to
	// the init (the monitor's extra files from s.NetResidentExtra()).
	var netExit *os.File
	s.NetResident, s.Forward = resident, nil
	if resident {
		r, w, err := os.Pipe()
		if err != nil {
			return ExitSetup, err
		}
		netExit = r
		defer r.Close()
		extra = append(extra, w)
		defer w.Close()
		if pd, _ := slirp.ChoosePortDriver(slirp.DriverSlirp4netns, s.PortDriver); pd == slirp.PortBuiltin {
			bound, files, err := slirp.ListenPorts(s.Publish)
			if err != nil {
				return ExitSetup, err
			}
			s.Forward = bound
			for _, f := range files {
				extra = append(extra, f)
				defer f.Close()
			}
		}
	}
	var bypassParent *os.File
	if s.NetBypass {
		p, c, err := userns.SocketPair()
		if err != nil {
			return ExitSetup, err
		}
		bypassParent = p
		defer p.Close()
		extra = append(extra, c)
		defer c.Close()
	}
	// In a shared process group the terminal signals the monitor itself.
	s.SignalsFromTTY = !s.Tty && stdinTTY

	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, append(forwarded, unix.SIGWINCH)...)
	defer signal.Stop(sigs)

	if s.Limits.Any() {
		if s.Cgroups == "disabled" {
			return ExitSetup, errors.New("resource limits need cgroups, but --cgroups=disabled was given: drop one or the other")
		}
		if err := cgroupv2.Check(s.Limits); err != nil {
			return ExitSetup, err
		}
	}
	flags := uintptr(unix.CLONE_NEWNS)
	if s.Net != "host" {
		flags |= unix.CLONE_NEWNET
	}
	child, err := userns.Start(userns.Options{
		Stage:      StageMonitor,
		Cloneflags: flags,
		Mapping:    s.Mapping,
		Stdin:      rio.Stdin,
		Stdout:     rio.Stdout,
		Stderr:     rio.Stderr,
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
	cg, err := cgroupv2.Setup(ctx, cgroupv2.Options{ID: s.ID, Limits: s.Limits, Nest: true}, child.Cmd.Process.Pid)
	if err != nil {
		_ = child.Cmd.Process.Kill()
		_ = child.Cmd.Wait()
		return ExitSetup, err
	}
	var handedOff atomic.Bool
	defer func() {
		if !handedOff.Load() {
			_ = cg.Remove()
		}
		_ = cg.Close()
	}()
	s.CgroupPath = cg.Path()
	if err := child.Ctl.Send(Message{Spec: s}); err != nil {
		_ = child.Cmd.Process.Kill()
	}
	var needPull atomic.Bool
	netHost, err := handshake(ctx, s, child, &needPull, netExit)
	if netHost != nil {
		defer func() {
			if handedOff.Load() {
				_ = netHost.Release()
			} else {
				_ = netHost.Close()
			}
		}()
	}
	if err != nil {
		_ = child.Cmd.Process.Kill()
		_ = child.Cmd.Wait()
		return ExitSetup, err
	}
	if netHost != nil && rio.OnPorts != nil && len(s.Publish) > 0 {
		rio.OnPorts(netHost.Ports())
	}
	if bypassParent != nil && netHost != nil {
		stop := fastrun.ServeBypass(bypassParent, netHost.HostLoopback())
		defer stop()
	}
	ctlDone := make(chan struct{})
	go func() {
		// After the handshake the monitor reports the start and the end.
		defer close(ctlDone)
		for {
			var m Message
			if child.Ctl.Recv(&m) != nil {
				return
			}
			switch {
			case m.Event == EventStarted:
				si := StartInfo{MonitorPid: child.Cmd.Process.Pid, InitPid: m.Pid, StopSignal: m.StopSignal, Process: m.Process, OwnLog: m.OwnLog}
				if m.OwnLog {
					if si.CgroupUnit = cg.Unit(); si.CgroupUnit == "" {
						si.CgroupDir = cg.Top()
					}
				}
				if rio.OnStart != nil {
					rio.OnStart(si)
				}
				if m.OwnLog {
					_ = child.Ctl.Send(Message{Event: EventRecorded})
				}
			case m.Event == EventExited:
				rio.OOMKilled = m.OOMKilled
			case m.Event == EventHandoff:
				handedOff.Store(true)
			}
		}
	}()

	// Detached, stdin is /dev/null, or attach's pipe (run -d -i).
	var ptySocket *os.File
	if s.Tty {
		ptySocket = ptyParent
	}
	code, err := fastrun.Relay(child.Cmd, fastrun.Terminal{In: rio.Stdin, Out: rio.Stdout, PtySocket: ptySocket,
		CopyIn: s.Stdin, Raw: stdinTTY, SignalsFromTTY: s.SignalsFromTTY}, sigs)
	// The monitor's last message may still be on its way.
	select {
	case <-ctlDone:
	case <-time.After(2 * time.Second):
	}
	child.Ctl.Close()
	rio.HandedOff = handedOff.Load()
	if needPull.Load() {
		return ExitSetup, errNeedPull
	}
	return code, err
}

// handshake waits for the monitor to find the image, then sets up the
// container's network (which needs the monitor's pid and its mapping).
func handshake(ctx context.Context, s *Spec, child *userns.Child, needPull *atomic.Bool, netExit *os.File) (*slirp.Host, error) {
	var m Message
	if err := child.Ctl.Recv(&m); err != nil {
		return nil, nil // the monitor failed and said why; its exit code tells
	}
	switch m.Event {
	case EventNeedPull:
		needPull.Store(true)
		return nil, nil
	case EventReady:
	default:
		return nil, fmt.Errorf("unexpected message %q from the container monitor", m.Event)
	}
	if !s.UserModeNet() {
		return nil, nil
	}
	// gvisor-tap-vsock reports the container's side going away as an
	// error; for us that is the normal end of a container.
	if logrus.GetLevel() < logrus.DebugLevel {
		logrus.SetLevel(logrus.FatalLevel)
	}
	mode := s.Net
	if mode == "auto" {
		mode = ""
	}
	ports := s.Publish
	if s.Forward != nil {
		ports = nil // bound already, forwarded by the init
	}
	host, cfg, err := slirp.Setup(ctx, slirp.Options{
		Mode:                mode,
		Ports:               ports,
		ExitFD:              netExit,
		Bound:               s.Forward,
		PortDriver:          s.PortDriver,
		MTU:                 s.MTU,
		DisableHostLoopback: s.DisableHostLoopback,
		StateDir:            filepath.Join(s.RunDir, "containers", s.ID),
		DNS:                 s.DNS,
	}, child.Cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	if err := child.Ctl.Send(Message{Net: &cfg}); err != nil {
		return host, fmt.Errorf("sending the network setup: %w", err)
	}
	return host, nil
}

func resize(master *os.File) { fastrun.Resize(master) }
