package fastrun

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/unroot/unroot/container/cinit"
	"github.com/unroot/unroot/container/initbin"
	"github.com/unroot/unroot/container/resolve"
	"github.com/unroot/unroot/container/scratch"
	"github.com/unroot/unroot/internal/trace"
	"github.com/unroot/unroot/userns"
)

// StageMonitor is the stage name of the fast path's monitor: root in the
// user namespace, it mounts the rootfs, starts the container's init and
// cleans up after it.
const StageMonitor = "fast-monitor"

// MonitorMain is the fast monitor's main; its exit code is the container's.
func MonitorMain() int {
	trace.Mark("monitor: main")
	ctl := userns.Enter()
	var s Spec
	if err := ctl.Recv(&s); err != nil || s.Proc == nil {
		return cinit.Fail(cinit.ExitSetup, fmt.Errorf("reading the container spec: %v", err))
	}
	ctl.Close()
	trace.Mark("monitor: spec read")
	// Non-dumpable: processes in the container cannot open /proc/<us>/exe
	// (the unroot binary) or our file descriptors (CVE-2019-5736 class).
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	code, err := monitor(&s)
	trace.Mark("monitor: cleaned up")
	if err != nil {
		return cinit.Fail(code, err)
	}
	return code
}

func monitor(s *Spec) (int, error) {
	if s.Net != nil {
		if err := configureNet(s); err != nil {
			return cinit.ExitSetup, err
		}
	} else if s.Proc.Net == "none" {
		if err := cinit.LoopbackUp(); err != nil {
			return cinit.ExitSetup, err
		}
	}
	if s.Proc.Net != "host" {
		cinit.AllowPing(s.GIDs)
	}
	tmp := scratch.Dir(s.GraphRoot)
	dir := filepath.Join(tmp, s.ID)
	defer scratch.Sweep(tmp)
	defer os.RemoveAll(dir)
	lock, err := scratch.Register(tmp, dir, s.ImageID, s.Lower)
	if err != nil {
		return cinit.ExitSetup, err
	}
	defer lock.Close()
	merged, err := scratch.Mount(dir, s.Lower)
	if err != nil {
		return cinit.ExitSetup, err
	}
	defer func() { _ = unix.Unmount(merged, unix.MNT_DETACH) }()
	s.Proc.Rootfs = merged
	trace.Mark("monitor: rootfs mounted")

	runDir := filepath.Join(s.RunDir, "containers", s.ID)
	etc := filepath.Join(runDir, "etc")
	if err := os.MkdirAll(etc, 0o700); err != nil {
		return cinit.ExitSetup, err
	}
	defer os.RemoveAll(runDir)
	if s.Proc.EtcFiles, err = resolve.WriteEtcFiles(etc, s.Proc.Hostname, s.Etc); err != nil {
		return cinit.ExitSetup, err
	}
	var bypassSock *os.File
	if s.Proc.NetBypass && s.BypassExtra >= 0 {
		bypassSock = userns.ExtraFile(s.BypassExtra, "bypass")
	}
	return StartInit(s.Proc, s.RunDir, s.Stdin, s.SignalsFromTTY, bypassSock)
}

// StartInit starts the container's PID 1 in its own namespaces (the
// network namespace is ours), hands it the process and waits for it,
// forwarding signals.
func StartInit(proc *cinit.Process, runDir string, stdin, signalsFromTTY bool, bypassSock *os.File) (int, error) {
	specR, specW, err := os.Pipe()
	if err != nil {
		return cinit.ExitSetup, err
	}
	defer specW.Close()
	self, err := os.Executable()
	if err != nil {
		return cinit.ExitSetup, err
	}
	cmd := exec.Command(initbin.Path(runDir, self))
	cmd.Args[0] = "unroot-init"
	cmd.Env = []string{userns.EnvStage + "=" + cinit.StageInit}
	if trace.On() {
		cmd.Env = append(cmd.Env, trace.Pass())
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if stdin {
		cmd.Stdin = os.Stdin
	}
	// The init writes a byte to fd 5 once the process runs; nobody here
	// waits for it, but the descriptor must be a pipe of ours, not
	// whatever the init opens next.
	startedR, startedW, err := os.Pipe()
	if err != nil {
		specR.Close()
		return cinit.ExitSetup, err
	}
	defer startedR.Close()
	// fd 3: the spec, 4: the terminal's socket (with -t), 5: "started",
	// 6: the network bypass's socket to the host side.
	cmd.ExtraFiles = []*os.File{specR, nil, startedW}
	if proc.Tty {
		cmd.ExtraFiles[1] = userns.ExtraFile(0, "pty-socket")
	}
	if bypassSock != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, bypassSock)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWCGROUP,
		Pdeathsig:  unix.SIGKILL,
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, cinit.Forwarded...)
	defer signal.Stop(sigs)
	err = cmd.Start()
	specR.Close()
	startedW.Close()
	if bypassSock != nil {
		bypassSock.Close() // the init has its own copy
	}
	if err != nil {
		return cinit.ExitSetup, fmt.Errorf("starting the container: %w", err)
	}
	if err := json.NewEncoder(specW).Encode(proc); err != nil {
		_ = cmd.Process.Kill()
	}
	specW.Close()
	done := make(chan struct{})
	go func() {
		for {
			select {
			case sig := <-sigs:
				if signalsFromTTY && IsTTYSignal(sig) {
					continue
				}
				_ = cmd.Process.Signal(sig)
			case <-done:
				return
			}
		}
	}()
	_ = cmd.Wait()
	close(done)
	trace.Mark("monitor: init ended")
	return ExitCode(cmd.ProcessState), nil
}

func newID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
