package cinit

import (
	"os"
	"os/signal"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/unroot/unroot/userns"
)

// StageWait is the stage of a detached container's monitor once the
// container runs: the monitor re-executes itself as this small program,
// which only waits for the container's init (its child) and forwards
// signals to it, instead of keeping unroot's whole binary in memory for
// the container's lifetime.
const StageWait = "monitor-wait"

// EnvWaitPid holds the pid the waiter waits for.
const EnvWaitPid = "_UNROOT_WAIT_PID"

// Run is the unroot-init binary's entry point: the container's init, or
// a monitor's waiter.
func Run() int {
	switch os.Getenv(userns.EnvStage) {
	case StageWait:
		return WaitMain()
	case StageDirect:
		return DirectMain()
	case StageFresh:
		return FreshMain()
	}
	return Main()
}

// WaitMain waits for the pid in EnvWaitPid, forwarding signals to it, and
// exits with its status (128+N for signal N).
func WaitMain() int {
	// An exec makes a process dumpable again.
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	pid, err := strconv.Atoi(os.Getenv(EnvWaitPid))
	if err != nil || pid <= 0 {
		return fail(ExitSetup, os.ErrInvalid)
	}
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs, Forwarded...)
	go func() {
		for sig := range sigs {
			_ = unix.Kill(pid, sig.(unix.Signal))
		}
	}()
	for {
		var ws unix.WaitStatus
		wpid, err := unix.Wait4(pid, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || wpid != pid {
			return ExitSetup
		}
		reportExit(OOMKilledIn(os.Getenv(EnvWaitCgroup)))
		if ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		if ws.Exited() {
			return ws.ExitStatus()
		}
	}
}

// EnvWaitCgroup holds the container's cgroup for the waiter (may be unset).
const EnvWaitCgroup = "_UNROOT_WAIT_CGROUP"

// OOMKilledIn reports whether the kernel's OOM killer killed a process of
// the cgroup dir (memory.events oom_kill). It must be read while the
// cgroup exists: systemd removes a scope once its last process, the
// monitor, is gone.
func OOMKilledIn(dir string) bool {
	if dir == "" {
		return false
	}
	b, err := os.ReadFile(dir + "/memory.events")
	if err != nil {
		return false
	}
	return oomKill(b)
}

// oomKill reads memory.events: whether oom_kill is not 0.
func oomKill(b []byte) bool {
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok && k == "oom_kill" && v != "0" {
			return true
		}
	}
	return false
}

// reportExit tells the host side, over the control socket (fd 3, kept
// across the monitor's exec into this waiter), how the container ended.
func reportExit(oom bool) {
	f := os.NewFile(3, "ctl")
	if oom {
		_, _ = f.Write([]byte(`{"event":"exited","oom_killed":true}` + "\n"))
	} else {
		_, _ = f.Write([]byte(`{"event":"exited"}` + "\n"))
	}
}
