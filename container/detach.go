package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/unroot/unroot/container/ctrlog"
	"github.com/unroot/unroot/container/enginebin"
	"github.com/unroot/unroot/slirp"
)

// Environment of the detached per-container process: the container's id
// and the data directory its config is under.
const (
	EnvDetached     = "_UNROOT_DETACHED"
	envDetachedData = "_UNROOT_DETACHED_DATA"
	detachStatusFD  = 3
)

// MaxLogSize is the size at which the log is rotated (one old file kept).
var MaxLogSize = ctrlog.MaxSize

// RunRecorded runs a recorded container in this process (the host half),
// keeping its state file up to date.
func RunRecorded(ctx context.Context, d Dirs, c *Config, rio *RunIO) (int, error) {
	id := c.ID
	update := func(f func(st *State)) {
		unlock, err := d.Lock(id)
		if err != nil {
			return
		}
		defer unlock()
		st := d.LoadState(id)
		if st.Unknown {
			st = &State{}
		}
		f(st)
		_ = d.SaveState(id, st)
	}
	self, start := os.Getpid(), ProcStart(os.Getpid())
	stopped := false
	update(func(st *State) {
		if rio.RestartCount > 0 && st.ManuallyStopped {
			// Stopped by the user while waiting to restart: checked here,
			// under the lock, so that a stop cannot slip in between.
			stopped = true
			st.Status, st.Pid, st.PidStart = StatusExited, 0, 0
			return
		}
		*st = State{Status: StatusRunning, Pid: self, PidStart: start, StartedAt: time.Now(), RestartCount: rio.RestartCount}
	})
	if stopped {
		return ExitSetup, ErrStopped
	}
	userStart := rio.OnStart
	rio.OnStart = func(si StartInfo) {
		update(func(st *State) {
			st.MonitorPid, st.InitPid, st.StopSignal = si.MonitorPid, si.InitPid, si.StopSignal
			st.StartedAt = time.Now()
			st.Pid, st.PidStart = self, start
			st.ExitFile, st.CgroupUnit, st.CgroupDir = false, "", ""
			if si.OwnLog {
				// The init is the process that lives exactly as long as
				// the container: it records the end in the exit file
				// (LoadState reads it).
				st.Pid, st.PidStart = 0, 0
				if start := ProcStart(si.InitPid); start != 0 {
					st.Pid, st.PidStart = si.InitPid, start
				}
				st.ExitFile, st.CgroupUnit, st.CgroupDir = true, si.CgroupUnit, si.CgroupDir
			}
		})
		if si.Process != nil && (c.Process == nil || !slices.Equal(c.Process.Args, si.Process.Args)) {
			// Recorded once: ps and inspect show the command as run.
			if unlock, err := d.Lock(id); err == nil {
				if cur, err := d.LoadConfig(id); err == nil {
					cur.Process = si.Process
					_ = d.SaveConfig(cur)
				}
				unlock()
			}
		}
		if userStart != nil {
			userStart(si)
		}
	}
	userPorts := rio.OnPorts
	rio.OnPorts = func(p []slirp.PortSpec) {
		update(func(st *State) { st.Ports = p })
		if userPorts != nil {
			userPorts(p)
		}
	}
	code, err := RunWith(ctx, c.Spec, rio)
	if rio.HandedOff {
		// The init keeps the container alone (recorded at its start).
		update(func(st *State) {
			if st.ExitFile {
				st.MonitorPid = 0
			}
		})
		return code, err
	}
	// A lean monitor left these behind.
	_ = os.Remove(filepath.Join(d.StateDir(id), "exec.sock"))
	_ = os.RemoveAll(filepath.Join(d.StateDir(id), "etc"))
	update(func(st *State) {
		st.Status = StatusExited
		st.Ports = nil
		st.Pid, st.PidStart, st.MonitorPid, st.InitPid = 0, 0, 0, 0
		st.FinishedAt = time.Now()
		st.ExitCode = code
		st.OOMKilled = rio.OOMKilled
		if err != nil {
			st.Error = err.Error()
		}
		if err == nil && rio.Restart != nil && !st.ManuallyStopped && rio.Restart(code) {
			// The detached process lives on to start it again.
			st.Status, st.Pid, st.PidStart = StatusRestarting, self, start
			rio.Restarting = true
		}
	})
	if c.Spec.Remove {
		// run -d --rm: the monitor removed the storage container.
		_ = d.Remove(id)
	}
	return code, err
}

// RunAttached runs a recorded container in the foreground: its output
// goes to our stdout and stderr as it comes, and into its log too (Docker
// keeps the logs of foreground containers).
func RunAttached(ctx context.Context, d Dirs, c *Config, rio *RunIO) (int, error) {
	lf, err := openLog(d.LogPath(c.ID))
	if err != nil {
		return ExitSetup, fmt.Errorf("opening the container's log: %w", err)
	}
	defer lf.Close()
	var wg sync.WaitGroup
	var ours []*os.File
	tee := func(stream string, to *os.File) (*os.File, error) {
		if to == nil {
			to = os.Stdout
			if stream == "stderr" {
				to = os.Stderr
			}
		}
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		ours = append(ours, w)
		pr, pw := io.Pipe()
		wg.Add(2)
		go func() {
			defer wg.Done()
			// Unbuffered, so that a prompt shows before its newline.
			_, _ = io.Copy(io.MultiWriter(&bestEffort{w: to}, pw), r)
			r.Close()
			pw.Close()
		}()
		go func() { defer wg.Done(); lf.Copy(stream, pr, logBuf) }()
		return w, nil
	}
	if rio.Stdout, err = tee("stdout", rio.Stdout); err == nil {
		rio.Stderr, err = tee("stderr", rio.Stderr)
	}
	if err != nil {
		for _, f := range ours {
			f.Close()
		}
		return ExitSetup, err
	}
	code, err := RunRecorded(ctx, d, c, rio)
	for _, f := range ours {
		f.Close()
	}
	drainLog(&wg)
	return code, err
}

// drainLog waits for the copies of the container's output into its log,
// but not forever: orphaned container processes may hold the pipes.
func drainLog(wg *sync.WaitGroup) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
}

// bestEffort writes to the user's terminal or pipe until that fails (a
// reader gone), and the log keeps everything after.
type bestEffort struct {
	w      io.Writer
	failed bool
}

func (b *bestEffort) Write(p []byte) (int, error) {
	if !b.failed {
		if _, err := b.w.Write(p); err != nil {
			b.failed = true
		}
	}
	return len(p), nil
}

// OwnLog is where the init of a container it keeps alone writes the log
// (rotated at Max into LogPath.1) and its end (ExitPath, cinit.ExitInfo).
type OwnLog struct {
	LogPath  string `json:"log_path"`
	ExitPath string `json:"exit_path"`
	Max      int64  `json:"max"`
}

// OneProcess says whether a detached container is left to its init alone
// once it runs: its log and its end are written by the init, and the
// host-side process and the monitor exit, so that an idle container costs
// one small process (and slirp4netns, with a user-mode network). That
// takes a network with nothing of ours on the host side (none, host, or
// a resident slirp4netns: package slirp's resident.go), no restart policy
// (the host-side process carries it out), no stdin to keep open (-i:
// attach), no terminal and no --rm (the monitor removes the container).
// UNROOT_ONE_PROCESS=0 turns it off.
func OneProcess(s *Spec) bool {
	if os.Getenv("UNROOT_ONE_PROCESS") == "0" {
		return false
	}
	if s.Net == "none" || s.Net == "host" {
		if len(s.Publish) > 0 {
			return false
		}
	} else if !slirp.Resident(s.Net, s.PortDriver, s.Publish) {
		return false
	}
	return !s.Restart.Any() && !s.Stdin && !s.Tty && !s.Remove
}

// ExitPath is the exit file the init of a one-process container writes.
func (d Dirs) ExitPath(id string) string { return filepath.Join(d.StateDir(id), "exit.json") }

// detachedBinary is the program of a detached container's host process:
// the lite engine (no gvisor stack, ~7 MB less per container) when the
// container's network does not need the stack and the user-facing binary
// installed one, else this unroot.
func detachedBinary(self string, s *Spec) string {
	lite := os.Getenv(enginebin.EnvLite)
	if lite == "" {
		return self
	}
	mode, _, _ := strings.Cut(s.Net, ":")
	switch mode {
	case "none", "host", "pasta", "slirp4netns":
		return lite
	case "gvisor":
		return self
	}
	if drv, _, err := slirp.Choose(""); err == nil && drv != slirp.DriverGvisor {
		return lite
	}
	return self
}

// StartDetached starts the container's host half as a process of its own
// (a new session, no terminal) that outlives this one, and returns once the
// container runs, or with the reason it could not start.
func StartDetached(d Dirs, c *Config) error {
	unlock, err := d.Lock(c.ID)
	if err != nil {
		return err
	}
	d.settle(c.ID)
	if st := d.LoadState(c.ID); st.Active() {
		unlock()
		return fmt.Errorf("container %s is already running", c.Name)
	}
	self, err := os.Executable()
	if err != nil {
		unlock()
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		unlock()
		return err
	}
	defer r.Close()
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		unlock()
		w.Close()
		return err
	}
	defer devnull.Close()
	// The detached process's own complaints, should it have any.
	shimLog, err := os.OpenFile(filepath.Join(d.ConfigDir(c.ID), "unroot.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		shimLog = devnull
	} else {
		defer shimLog.Close()
	}
	cmd := exec.Command(detachedBinary(self, c.Spec))
	cmd.Args[0] = "unroot"
	cmd.Env = append(os.Environ(), EnvDetached+"="+c.ID, envDetachedData+"="+d.Data)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, shimLog, shimLog
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = "/"
	err = cmd.Start()
	w.Close()
	if err != nil {
		unlock()
		return fmt.Errorf("starting the container's process: %w", err)
	}
	// Recorded as running from now on, so that a concurrent start fails.
	_ = d.SaveState(c.ID, &State{Status: StatusRunning, Pid: cmd.Process.Pid, PidStart: ProcStart(cmd.Process.Pid), StartedAt: time.Now()})
	unlock()
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	msg, _ := io.ReadAll(r)
	switch m := strings.TrimSpace(string(msg)); {
	case m == "ok":
		return nil
	case strings.HasPrefix(m, "fail "):
		var code int
		var text string
		if _, err := fmt.Sscanf(m, "fail %d", &code); err == nil {
			_, text, _ = strings.Cut(strings.TrimPrefix(m, "fail "), " ")
			return &StartError{Code: code, Msg: text}
		}
		return errors.New(m)
	case m != "":
		return errors.New(m)
	default:
		return fmt.Errorf("the container's process (pid %d) exited before the container started; see %s", pid, shimLog.Name())
	}
}

// ErrStopped: the user stopped a container while it waited to restart.
var ErrStopped = errors.New("stopped while waiting to restart")

// restartDelay is the first back-off of a restart policy.
const restartDelay = 100 * time.Millisecond

// StartError is a container that could not start, with Docker's exit
// code for it (125, or 126/127 for a command that cannot be run).
type StartError struct {
	Code int
	Msg  string
}

func (e *StartError) Error() string { return e.Msg }

// DetachedMain is the detached per-container process: the host half of
// the container (user namespace, network, cgroup, signals), writing the
// container's output to its log and its end to its state.
func DetachedMain() int {
	status := os.NewFile(detachStatusFD, "status")
	var mu sync.Mutex
	reported := false
	// The first word to the starting command is the one that counts.
	sayOnce := func(msg string) {
		mu.Lock()
		defer mu.Unlock()
		if !reported {
			reported = true
			fmt.Fprintln(status, msg)
			status.Close()
		}
	}

	id := os.Getenv(EnvDetached)
	d := Dirs{Data: os.Getenv(envDetachedData)}
	c, err := d.LoadConfig(id)
	if err != nil {
		sayOnce(fmt.Sprintf("fail %d %s", ExitSetup, err))
		return ExitSetup
	}
	d.Run = c.Spec.RunDir
	c.Spec.LeanMonitor = !c.Spec.Remove && os.Getenv("UNROOT_LEAN_MONITOR") != "0"
	if OneProcess(c.Spec) {
		c.Spec.OwnLog = &OwnLog{LogPath: d.LogPath(id), ExitPath: d.ExitPath(id), Max: MaxLogSize}
	}
	os.Unsetenv(EnvDetached)
	os.Unsetenv(envDetachedData)
	lf, err := openLog(d.LogPath(id))
	if err != nil {
		sayOnce(fmt.Sprintf("opening the container's log: %v", err))
		return ExitSetup
	}
	defer lf.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		sayOnce(err.Error())
		return ExitSetup
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		sayOnce(err.Error())
		return ExitSetup
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); lf.Copy("stdout", outR, logBuf) }()
	go func() { defer wg.Done(); lf.Copy("stderr", errR, logBuf) }()
	devnull, _ := os.Open(os.DevNull)
	stdin := devnull
	if c.Spec.Stdin {
		// run -d -i: the container's stdin stays open on a pipe that
		// `unroot attach` writes into.
		r, stop, err := serveAttach(d, id)
		if err != nil {
			sayOnce(fmt.Sprintf("fail %d %s", ExitSetup, err))
			return ExitSetup
		}
		defer stop()
		stdin = r
	}
	// Between two runs of a restart policy nobody relays signals: a stop
	// by the user (TERM to this process) ends the wait instead.
	sigs := make(chan os.Signal, 4)
	if c.Spec.Restart.Any() {
		signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT)
	}
	var code int
	delay := restartDelay
	for restarts := 0; ; restarts++ {
		var started atomic.Bool
		rio := &RunIO{Stdin: stdin, Stdout: outW, Stderr: errW, Detached: true, RestartCount: restarts,
			OnStart: func(StartInfo) { started.Store(true); sayOnce("ok") }}
		if c.Spec.Restart.Any() {
			// A container that could not start is not restarted (Docker).
			rio.Restart = func(code int) bool { return started.Load() && c.Spec.Restart.ShouldRestart(code, restarts) }
		}
		begun := time.Now()
		code, err = RunRecorded(context.Background(), d, c, rio)
		if errors.Is(err, ErrStopped) {
			return 0
		}
		if !rio.Restarting {
			break
		}
		// Docker's back-off: doubled at each restart, from 100 ms up to a
		// minute, and back to 100 ms after a run of 10 s or more.
		if time.Since(begun) >= 10*time.Second {
			delay = restartDelay
		}
		for len(sigs) > 0 {
			<-sigs // signals the run had
		}
		select {
		case <-time.After(delay):
		case <-sigs:
		}
		delay = min(2*delay, time.Minute)
	}
	outW.Close()
	errW.Close()
	drainLog(&wg)
	if err != nil {
		sayOnce(fmt.Sprintf("fail %d %s", ExitSetup, err))
		lf.Write("stderr", []byte("unroot: "+err.Error()), false)
	} else {
		// e.g. the command is not found (127): what the init said.
		msg := fmt.Sprintf("the container exited with status %d before it was started", code)
		if last := lf.LastErrors(); last != "" {
			msg = strings.TrimPrefix(last, "unroot: ")
		}
		sayOnce(fmt.Sprintf("fail %d %s (unroot logs %s)", code, msg, c.Name))
	}
	return 0
}

func openLog(path string) (*ctrlog.Writer, error) { return ctrlog.Open(path, MaxLogSize) }

// LogLine is one line of a container's log.
type LogLine = ctrlog.Line

// ParseLogLine parses one k8s-file log line.
func ParseLogLine(s string) (LogLine, bool) { return ctrlog.Parse(s) }

// logBuf bounds a log line: longer ones are written in partial pieces.
const logBuf = 16 << 10

// WaitExit waits until the container is no longer running nor waiting to
// be restarted, or the timeout passes (0: forever), and returns its state.
func (d Dirs) WaitExit(id string, timeout time.Duration) (*State, bool) {
	deadline := time.Now().Add(timeout)
	for {
		st := d.LoadState(id)
		if !st.Active() {
			return st, true
		}
		if timeout > 0 && time.Now().After(deadline) {
			return st, false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// SignalByName parses a signal: a number, TERM or SIGTERM.
func SignalByName(s string) (syscall.Signal, error) {
	if s == "" {
		return unix.SIGTERM, nil
	}
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err == nil && fmt.Sprint(n) == s {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("invalid signal %q", s)
		}
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("invalid signal %q", s)
}
