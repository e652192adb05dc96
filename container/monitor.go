package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	"go.podman.io/storage"
	"golang.org/x/sys/unix"

	"github.com/unroot/unroot/container/cinit"
	"github.com/unroot/unroot/container/fastrun"
	"github.com/unroot/unroot/container/initbin"
	"github.com/unroot/unroot/idmap"
	"github.com/unroot/unroot/image"
	"github.com/unroot/unroot/slirp"
	"github.com/unroot/unroot/userns"
)

// StageMonitor is the stage name of the per-container monitor.
const StageMonitor = "monitor"

// Message is what the host side and the monitor tell each other.
type Message struct {
	Spec  *Spec              `json:"spec,omitempty"`
	Net   *slirp.ChildConfig `json:"net,omitempty"`
	Event string             `json:"event,omitempty"`
	Pid   int                `json:"pid,omitempty"`
	// StopSignal is the image's, with EventStarted; Process, the resolved
	// main process.
	StopSignal string           `json:"stop_signal,omitempty"`
	Process    *ResolvedProcess `json:"process,omitempty"`
	// OOMKilled comes with EventExited.
	OOMKilled bool `json:"oom_killed,omitempty"`
	// OwnLog, with EventStarted: the init keeps the log and the exit file
	// and is about to be left alone (Spec.OwnLog): the host side records
	// it as the container's process and answers EventRecorded.
	OwnLog bool `json:"own_log,omitempty"`
}

// MonitorMain runs as root in unroot's user namespace. It owns the store
// for the container's lifetime: it creates and mounts the rootfs, starts
// the container's init and waits for it, then unmounts and (with --rm)
// removes the container. Its exit code is the container's.
func MonitorMain() int {
	ctl := userns.Enter()
	var m Message
	if err := ctl.Recv(&m); err != nil || m.Spec == nil {
		return fail(ExitSetup, fmt.Errorf("reading the container spec: %v", err))
	}
	// Non-dumpable: processes in the container cannot open /proc/<us>/exe
	// (the unroot binary) or our file descriptors (CVE-2019-5736 class).
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	code, err := monitor(m.Spec, ctl)
	if errors.Is(err, errNeedPull) {
		return ExitSetup
	}
	if err != nil {
		return fail(code, err)
	}
	return code
}

func monitor(s *Spec, ctl *userns.Conn) (int, error) {
	ctx := context.Background()
	var stamps []fastrun.Stamp
	if s.Fast != nil {
		stamps = FastStamps(s.Store, s.Fast.ConfigDir)
	}
	store, err := image.Open(s.Store)
	if err != nil {
		return ExitSetup, err
	}
	defer store.Shutdown(false)

	// Pulls happen in a stage of their own, with the host's network: this
	// process may already be in the container's network namespace.
	img, err := image.Lookup(store, s.Image)
	if errors.Is(err, image.ErrNotFound) && s.Pull != "never" {
		_ = ctl.Send(Message{Event: EventNeedPull})
		return ExitSetup, errNeedPull
	}
	if err != nil {
		if errors.Is(err, image.ErrNotFound) {
			err = fmt.Errorf("%w (and --pull=never): pull it first with unroot pull %s", err, s.Image)
		}
		return ExitSetup, err
	}
	var netCfg *slirp.ChildConfig
	if err := ctl.Send(Message{Event: EventReady}); err != nil {
		return ExitSetup, err
	}
	if s.UserModeNet() {
		var m Message
		if err := ctl.Recv(&m); err != nil || m.Net == nil {
			return ExitSetup, fmt.Errorf("waiting for the network: %v", err)
		}
		if err := slirp.ConfigureChild(*m.Net); err != nil {
			return ExitSetup, err
		}
		netCfg = m.Net
	} else if s.Net == "none" {
		if err := cinit.LoopbackUp(); err != nil {
			return ExitSetup, err
		}
	}
	if s.Net != "host" {
		cinit.AllowPing(idmap.Size(s.Mapping.GIDs))
	}
	cfg, err := image.Config(ctx, store, img)
	if err != nil {
		return ExitSetup, err
	}
	SaveFastRecord(s.Fast, stamps, s.RunDir, s.Store, store, img, cfg)
	proc, err := Resolve(s, cfg)
	if err != nil {
		return ExitSetup, err
	}
	proc.SingleID = len(s.Mapping.UIDs) == 1 && s.Mapping.UIDs[0].Size == 1
	proc.NetBypass = s.NetBypass
	if s.NetResident && netCfg != nil {
		proc.NetExit = true
		for _, p := range s.Forward {
			proc.Forward = append(proc.Forward, cinit.Forward{Addr: net.JoinHostPort(netCfg.IP, strconv.Itoa(p.ContainerPort))})
		}
	}

	var names []string
	if s.Name != "" {
		names = []string{s.Name}
	}
	// `unroot start` runs a recorded container again, on its layer.
	ctr, err := store.Container(s.ID)
	if err != nil {
		ctr, err = store.CreateContainer(s.ID, names, img.ID, "", "", s.KeepID.containerOptions())
	}
	if err != nil {
		if errors.Is(err, storage.ErrDuplicateName) {
			return ExitSetup, fmt.Errorf("the container name %q is already in use: choose another --name or remove that container", s.Name)
		}
		return ExitSetup, fmt.Errorf("creating the container: %w", err)
	}
	removed := false
	remove := func() {
		if !removed {
			removed = true
			_, _ = store.Unmount(ctr.ID, true)
			_ = store.DeleteContainer(ctr.ID)
		}
	}
	if s.Remove {
		defer remove()
		// Docker removes the anonymous volumes of a --rm container too;
		// here, in the namespace, any file the container made can go.
		for _, m := range s.Mounts {
			if m.Anonymous {
				defer os.RemoveAll(filepath.Dir(m.Source))
			}
		}
	}
	rootfs, err := store.Mount(ctr.ID, "")
	if err != nil {
		remove()
		return ExitSetup, fmt.Errorf("mounting the container's filesystem: %w", err)
	}
	if !s.Remove {
		defer func() { _, _ = store.Unmount(ctr.ID, false) }()
	}
	proc.Rootfs = rootfs
	runDir := filepath.Join(s.RunDir, "containers", s.ID)
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return ExitSetup, err
	}
	if s.Remove {
		defer os.RemoveAll(runDir)
	}
	// `unroot exec` talks to the container's init through this socket.
	proc.ExecSocket = filepath.Join(runDir, "exec.sock")
	if s.KeepID != nil {
		proc.ExecSocketUID, proc.ExecSocketGID = int(s.KeepID.UID), int(s.KeepID.GID)
	}
	defer os.Remove(proc.ExecSocket)
	// The generated /etc files are remade at every start; the container's
	// state and sockets live next to them.
	runDir = filepath.Join(runDir, "etc")
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return ExitSetup, err
	}
	defer os.RemoveAll(runDir)
	if proc.EtcFiles, err = writeEtcFiles(runDir, proc, s, netCfg); err != nil {
		return ExitSetup, err
	}
	if err := s.KeepID.addEtcFiles(runDir, rootfs, proc.EtcFiles); err != nil {
		return ExitSetup, err
	}
	stopSignal := ""
	var labels map[string]string
	if cfg != nil {
		stopSignal = cfg.Config.StopSignal
		labels = cfg.Config.Labels
	}
	// The lean waiter cannot keep goroutines the network needs here
	// (gvisor's tap pump, the builtin port forwarder): they would end
	// with its exec.
	lean := s.LeanMonitor && (netCfg == nil || !netCfg.NeedsMonitor())
	// With no network on our side at all, the init can be left alone.
	var own *ownFiles
	self, _ := os.Executable()
	if s.OwnLog != nil && (netCfg == nil || s.NetResident) && initbin.Path(s.RunDir, self) != self {
		// Only the small init binary, whose main goroutine is locked to
		// its main thread (where the parent-death signal is), can drop
		// that signal.
		own = openOwnFiles(s)
	}
	return runInit(s, proc, ctl, stopSignal, MergeLabels(labels, s.Labels), lean, own)
}

// ownFiles are the descriptors of an init that keeps its container alone
// (cinit's detached.go says which is which).
type ownFiles struct {
	log, old, exit, memEvents *os.File
	// hand is our end of the handoff socket, initHand the init's.
	hand, initHand *os.File
}

func (o *ownFiles) close() {
	for _, f := range []*os.File{o.log, o.old, o.exit, o.memEvents, o.hand, o.initHand} {
		if f != nil {
			f.Close()
		}
	}
}

// handoff asks the init to drop its parent-death signal, so that it
// outlives us, and says whether it did.
func (o *ownFiles) handoff() bool {
	if _, err := o.hand.Write([]byte{1}); err != nil {
		return false
	}
	var b [1]byte
	n, _ := o.hand.Read(b[:])
	return n == 1 && b[0] == 'y'
}

// openOwnFiles opens them, or returns nil (the monitor then waits for the
// init as usual, and the host side keeps the log).
func openOwnFiles(s *Spec) *ownFiles {
	o := &ownFiles{}
	var err error
	if o.log, err = os.OpenFile(s.OwnLog.LogPath, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o600); err != nil {
		return nil
	}
	if o.old, err = os.OpenFile(s.OwnLog.LogPath+".1", os.O_CREATE|os.O_RDWR, 0o600); err != nil {
		o.close()
		return nil
	}
	if o.exit, err = os.OpenFile(s.OwnLog.ExitPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600); err != nil {
		o.close()
		return nil
	}
	if s.CgroupPath != "" {
		o.memEvents, _ = os.Open(filepath.Join(s.CgroupPath, "memory.events"))
	}
	if o.hand, o.initHand, err = userns.SocketPair(); err != nil {
		o.close()
		return nil
	}
	return o
}

// runInit starts the container's PID 1 in its own namespaces and waits
// for it, forwarding signals.
func runInit(s *Spec, proc *Process, ctl *userns.Conn, stopSignal string, labels map[string]string, lean bool, own *ownFiles) (int, error) {
	specR, specW, err := os.Pipe()
	if err != nil {
		return ExitSetup, err
	}
	self, err := os.Executable()
	if err != nil {
		return ExitSetup, err
	}
	// The init runs from the small embedded unroot-init when there is one:
	// it starts in milliseconds where unroot spends tens in package init.
	cmd := exec.Command(initbin.Path(s.RunDir, self))
	cmd.Args[0] = "unroot-init"
	// One P: an init that waits needs no more, and every P costs its per-P
	// caches and a thread: a 64-CPU login node would give each idle
	// container's init ~1 MB more.
	cmd.Env = []string{userns.EnvStage + "=" + StageInit, "GOMAXPROCS=1"}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if s.Stdin {
		cmd.Stdin = os.Stdin
	} else if devnull, err := os.Open(os.DevNull); err == nil {
		cmd.Stdin = devnull
		defer devnull.Close()
	}
	startedR, startedW, err := os.Pipe()
	if err != nil {
		specR.Close()
		specW.Close()
		return ExitSetup, err
	}
	defer startedR.Close()
	// fd 3: the spec, 4: the terminal's socket (with -t), 5: "started",
	// 6: the network bypass's socket to the host side.
	cmd.ExtraFiles = []*os.File{specR, nil, startedW}
	if s.Tty {
		cmd.ExtraFiles[1] = userns.ExtraFile(0, "pty-socket")
	}
	var bypassSock *os.File
	if s.NetBypass {
		bypassSock = userns.ExtraFile(s.NetBypassExtra(), "bypass")
		cmd.ExtraFiles = append(cmd.ExtraFiles, bypassSock)
	}
	if own != nil {
		// fd 7: the log, 8: the rotated log, 9: the exit file, 10: the
		// cgroup's memory.events, 11: the handoff socket (cinit's
		// detached.go).
		defer own.close()
		cmd.ExtraFiles = append(cmd.ExtraFiles[:3], bypassSock, own.log, own.old, own.exit, own.memEvents, own.initHand)
		proc.OwnLog, proc.LogMax, proc.MemEvents = true, s.OwnLog.Max, own.memEvents != nil
	}
	if proc.NetExit {
		// fd 12: slirp4netns's exit pipe, 13...: the published ports'
		// listening sockets (cinit's forward.go).
		for len(cmd.ExtraFiles) < cinit.NetExitFD-3 {
			cmd.ExtraFiles = append(cmd.ExtraFiles, nil)
		}
		for i := 0; i <= len(proc.Forward); i++ {
			f := userns.ExtraFile(s.NetResidentExtra()+i, "net")
			cmd.ExtraFiles = append(cmd.ExtraFiles, f)
			// The init's copies are its own; ours go once it runs.
			defer f.Close()
		}
	}
	// The network namespace is the monitor's own (made by the host side),
	// where the user-mode network is already configured.
	flags := uintptr(unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWCGROUP)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags, Pdeathsig: unix.SIGKILL}
	s.KeepID.nest(cmd.SysProcAttr)
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)
	err = cmd.Start()
	startedW.Close()
	if bypassSock != nil {
		bypassSock.Close() // the init has its own copy
	}
	if err != nil {
		specR.Close()
		specW.Close()
		return ExitSetup, fmt.Errorf("starting the container: %w", err)
	}
	specR.Close()
	if s.CgroupPath != "" {
		// The init waits for its spec: move it into the container's cgroup
		// (the limits) first; we stay outside them.
		if err := os.WriteFile(filepath.Join(s.CgroupPath, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return ExitSetup, fmt.Errorf("moving the container into its cgroup: %w", err)
		}
		proc.Cgroup = true
	}
	if err := json.NewEncoder(specW).Encode(proc); err != nil {
		_ = cmd.Process.Kill()
	}
	specW.Close()
	// The container counts as started once its process runs (a command
	// that cannot be executed is a failure to start, as in Docker).
	var one [1]byte
	if n, _ := startedR.Read(one[:]); n == 1 {
		started := Message{Event: EventStarted, Pid: cmd.Process.Pid, StopSignal: stopSignal, OwnLog: own != nil,
			Process: &ResolvedProcess{Args: proc.Args, Env: proc.Env, Cwd: proc.Cwd, User: proc.User, Labels: labels}}
		_ = ctl.Send(started)
		if own != nil {
			// Once the host side has recorded the init as the container's
			// process, the init drops its parent-death signal and keeps
			// the container alone. Until then a death of the host side
			// takes us and the init along, as always: no container runs
			// unrecorded.
			var ack Message
			if ctl.Recv(&ack) == nil && ack.Event == EventRecorded && own.handoff() {
				// Nothing is undone on the way out (no deferred function
				// runs): our mounts live on in the init's mount
				// namespace, and the run files are removed by whoever
				// sees the container ended.
				_ = ctl.Send(Message{Event: EventHandoff})
				os.Exit(0)
			}
			// We stay: the host side records the end as usual, and the
			// init, reading EOF, goes on.
			own.hand.Close()
			started.OwnLog = false
			_ = ctl.Send(started)
		}
		if lean {
			// Nothing is left to do but wait: become the small waiter
			// (this is the main thread, which forked the init). Our
			// mounts stay with our mount namespace; the host side
			// removes the run files.
			self, _ := os.Executable()
			_ = syscall.Exec(initbin.Path(s.RunDir, self), []string{"unroot-monitor"},
				[]string{userns.EnvStage + "=" + cinit.StageWait, cinit.EnvWaitPid + "=" + strconv.Itoa(cmd.Process.Pid),
					cinit.EnvWaitCgroup + "=" + s.CgroupPath, "GOMAXPROCS=1"})
		}
	}

	done := make(chan struct{})
	go func() {
		for {
			select {
			case sig := <-sigs:
				if s.SignalsFromTTY && isTTYSignal(sig) {
					continue
				}
				_ = cmd.Process.Signal(sig)
			case <-done:
				return
			}
		}
	}()
	err = cmd.Wait()
	close(done)
	// Read while our cgroup still exists (we keep the scope alive).
	_ = ctl.Send(Message{Event: EventExited, OOMKilled: cinit.OOMKilledIn(s.CgroupPath)})
	return exitCode(cmd.ProcessState, err), nil
}

// Events the monitor reports to the host side.
const (
	EventNeedPull = "need-pull" // the image is missing: pull, then start again
	EventReady    = "ready"     // the image is there: set up the network now
	EventStarted  = "started"
	EventExited   = "exited" // the container's init ended; OOMKilled tells why
	// EventRecorded (host side to monitor): the start with OwnLog is
	// recorded. EventHandoff: the init keeps the container alone
	// (Spec.OwnLog); the monitor exits now, and the host side must too,
	// leaving the cgroup.
	EventRecorded = "recorded"
	EventHandoff  = "handoff"
)

var errNeedPull = errors.New("image must be pulled first")

// forwarded are the signals passed on to the container.
var forwarded = cinit.Forwarded

func isTTYSignal(sig os.Signal) bool { return fastrun.IsTTYSignal(sig) }

// exitCode is Docker's: the process's code, or 128+N for signal N.
func exitCode(st *os.ProcessState, _ error) int { return fastrun.ExitCode(st) }
