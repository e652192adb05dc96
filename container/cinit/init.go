package cinit

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/moby/sys/user"
	"golang.org/x/sys/unix"

	"github.com/unroot/unroot/internal/trace"
	"github.com/unroot/unroot/slirp/bypass"
	"github.com/unroot/unroot/userns"
)

// Process is the resolved process of a container (the init stage's input).
type Process struct {
	Args     []string          `json:"args"`
	Env      []string          `json:"env"`
	Cwd      string            `json:"cwd"`
	User     string            `json:"user"`
	Hostname string            `json:"hostname"`
	Tty      bool              `json:"tty"`
	Caps     []string          `json:"caps"`
	Net      string            `json:"net"`
	Rootfs   string            `json:"rootfs"`
	EtcFiles map[string]string `json:"etc_files"` // container path -> host file to bind
	// EtcWrite: container path -> content, written into the rootfs instead
	// (the throw-away layer of a direct init's container).
	EtcWrite map[string]string `json:"etc_write,omitempty"`
	// SingleID: only one id is mapped; devpts must not ask for gid 5.
	SingleID bool `json:"single_id"`
	// Cgroup: the monitor moved us into the container's own cgroup; make it
	// the root of our cgroup namespace and mount it at /sys/fs/cgroup.
	Cgroup      bool `json:"cgroup,omitempty"`
	OOMScoreAdj *int `json:"oom_score_adj,omitempty"`
	// ExecSocket is where `unroot exec` finds us (a host path, bound
	// before pivot_root); "" for none.
	ExecSocket string `json:"exec_socket,omitempty"`
	// ExecSocketOwner is the uid:gid, in our user namespace, that is the
	// host user (0:0, or the caller's ids with --userns=keep-id).
	ExecSocketUID int `json:"exec_socket_uid,omitempty"`
	ExecSocketGID int `json:"exec_socket_gid,omitempty"`
	// Mounts are the -v and --tmpfs volumes; ReadOnly: --read-only.
	Mounts   []Mount `json:"mounts,omitempty"`
	ReadOnly bool    `json:"read_only,omitempty"`
	// NetBypass: load the seccomp filter of the host-loopback bypass
	// (package slirp/bypass) and pass its listener up on initBypassFD.
	NetBypass bool `json:"net_bypass,omitempty"`
	// Scratch (StageDirect only): the writable layer to make and mount
	// (at Rootfs).
	Scratch *Scratch `json:"scratch,omitempty"`
	// Link (StageDirect only): the interface of a user-mode network to
	// configure once its helper has made it (the parent says when).
	Link *Link `json:"link,omitempty"`
	// OwnLog: this init is the container's only unroot process once the
	// container runs: it writes the log (rotated at LogMax) and the exit
	// file itself (the descriptors of detached.go), and MemEvents says
	// whether it has its cgroup's memory.events for OOMKilled.
	OwnLog    bool  `json:"own_log,omitempty"`
	LogMax    int64 `json:"log_max,omitempty"`
	MemEvents bool  `json:"mem_events,omitempty"`
	// NetExit: the init holds slirp4netns's exit pipe (NetExitFD);
	// Forward: the published ports it forwards (forward.go).
	NetExit bool      `json:"net_exit,omitempty"`
	Forward []Forward `json:"forward,omitempty"`
	// ExecFD (StageFresh only): the exec server's listening socket the
	// setup bound, -1 for none.
	ExecFD int `json:"exec_fd,omitempty"`
	// MemLimit (StageFresh only): the Go memory limit to idle with, set
	// by the setup's init (fresh.go).
	MemLimit int64 `json:"mem_limit,omitempty"`
	// stdio: the process's stdin, stdout and stderr when not ours.
	stdio []*os.File
	// resolved is what the setup's init found for the process (fresh.go),
	// for the fresh init, which then reads no files to start it.
	resolved *resolvedProcess
	// beforeStart, when set, runs once the rootfs is set up and pivoted
	// into, before the process starts (a direct init's network).
	beforeStart func() error
}

// resolvedProcess is a process's user, HOME and program, as found inside
// the container.
type resolvedProcess struct {
	path     string
	uid, gid int
	groups   []int
	home     string
}

// StageInit is the stage name of the container's init process.
const StageInit = "init"

// Exit codes of the init stage, as Docker uses them.
const (
	ExitSetup       = 125
	ExitCannotRun   = 126
	ExitNotFound    = 127
	initSpecFD      = 3
	initPtySocketFD = 4
	// initStartedFD gets one byte once the process runs (its exec
	// succeeded); the monitor only then reports the container started.
	initStartedFD = 5
	// initBypassFD (with Process.NetBypass) is a socket to the host side:
	// the init sends the seccomp listener of the host-loopback bypass.
	initBypassFD = 6
)

// Main runs as PID 1 of the container: it finishes the rootfs, pivots
// into it, starts the user's process as PID 2 and stays as its init: it
// forwards signals to it, reaps every orphan (no zombies), and exits with
// the process's status (128+N for signal N), like `docker run --init`.
func Main() int {
	// Capabilities and no_new_privs are per thread in Linux; the process is
	// forked from this thread and inherits them.
	runtime.LockOSThread()
	// Only the container's init may hold this: not the process.
	unix.CloseOnExec(initStartedFD)
	unix.CloseOnExec(initBypassFD)
	closeOwnFDs()
	var p Process
	f := os.NewFile(initSpecFD, "spec")
	if err := json.NewDecoder(f).Decode(&p); err != nil {
		return fail(ExitSetup, fmt.Errorf("reading the container spec: %w", err))
	}
	f.Close()
	closeNetFDs(&p)
	// Non-dumpable: the container's processes cannot open /proc/1/exe (the
	// unroot binary on the host) or our file descriptors (CVE-2019-5736).
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	if p.OwnLog {
		// Catches none (quiet.go), unless the kernel has no pidfds.
		return run(&p, nil, nil)
	}
	sigs, caught := CatchSignals(Forwarded...)
	return run(&p, sigs, caught)
}

// CatchSignals starts catching sigs on the returned channel in the
// background, which costs a new thread of the runtime's (about a
// millisecond on a small VM) that other start-up work can overlap; caught
// waits until they are.
func CatchSignals(sigs ...os.Signal) (c chan os.Signal, caught func()) {
	c = make(chan os.Signal, 32)
	done := make(chan struct{})
	go func() { signal.Notify(c, sigs...); close(done) }()
	return c, func() { <-done }
}

// run sets up the container for p and runs it (see Main), forwarding the
// signals on sigs once caught returns; with caught nil, it catches none
// (quiet.go).
func run(p *Process, sigs chan os.Signal, caught func()) int {
	var w *waker
	if caught == nil {
		var err error
		if w, err = newWaker(); err != nil {
			return fail(ExitSetup, err)
		}
		caught = func() {}
	}
	if err := setupRootfs(p); err != nil {
		return fail(ExitSetup, fmt.Errorf("setting up the container's filesystem: %w", err))
	}
	execFD := -1
	if p.ExecSocket != "" {
		fd, err := listenExec(p.ExecSocket, p.ExecSocketUID, p.ExecSocketGID)
		if err != nil {
			return fail(ExitSetup, err)
		}
		execFD = fd
	}
	trace.Mark("init: rootfs set up")
	if err := pivot(p.Rootfs); err != nil {
		return fail(ExitSetup, err)
	}
	if err := maskPaths(); err != nil {
		return fail(ExitSetup, fmt.Errorf("masking kernel paths: %w", err))
	}
	if err := unix.Sethostname([]byte(p.Hostname)); err != nil {
		return fail(ExitSetup, fmt.Errorf("setting the hostname: %w", err))
	}
	trace.Mark("init: pivoted, masked")
	if p.beforeStart != nil {
		if err := p.beforeStart(); err != nil {
			return fail(ExitSetup, err)
		}
	}
	if p.OwnLog && w != nil && !p.NetBypass {
		// Returns only if the exec failed: then this init stays. (The
		// bypass's filter goes to the monitor: no container kept alone
		// has it.)
		execFresh(p, execFD)
	}
	return start(p, sigs, caught, w, execFD)
}

// start starts the process of the container set up for p and stays as its
// init (see run).
func start(p *Process, sigs chan os.Signal, caught func(), w *waker, execFD int) int {
	if err := startForwards(p); err != nil {
		return fail(ExitSetup, fmt.Errorf("forwarding the published ports: %w", err))
	}
	var own *ownLog
	if p.OwnLog {
		var err error
		if own, err = startOwnLog(p); err != nil {
			return fail(ExitSetup, fmt.Errorf("opening the container's log: %w", err))
		}
	}
	cmd, code, err := prepareProcess(p)
	if err != nil {
		return fail(code, err)
	}
	caught()
	if err := cmd.Start(); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return fail(ExitNotFound, fmt.Errorf("exec %s: %w", p.Args[0], err))
		}
		return fail(ExitCannotRun, fmt.Errorf("exec %s: %w", p.Args[0], err))
	}
	trace.Mark("init: process started")
	closeStdio(cmd)
	if own != nil {
		own.started(p)
	}
	if started := os.NewFile(initStartedFD, "started"); started != nil {
		_, _ = started.Write([]byte{1})
		started.Close()
	}
	if own != nil {
		own.handoff()
	}
	// Buffered: without signals the main thread is woken (w) to take the
	// jobs, after they are queued.
	jobs := make(chan *execJob, 8)
	var wake func()
	if w != nil {
		wake = w.wake
	}
	var later []lazy
	if own != nil {
		later = own.copiers()
	}
	if execFD >= 0 {
		later = append(later, lazy{fd: execFD, start: func() { go serveExec(execFD, jobs, wake) }})
	}
	quiet := false
	if w != nil {
		code, quiet = reapQuiet(cmd.Process.Pid, jobs, w, p, later)
	}
	if !quiet {
		for _, l := range later {
			l.start()
		}
		if sigs == nil {
			sigs, caught = CatchSignals(Forwarded...)
			caught()
		}
		code = reap(cmd.Process.Pid, sigs, jobs, p)
	}
	if own != nil {
		own.finish(p, code)
	}
	return code
}

// prepareProcess resolves the user, working directory and executable, and
// drops this thread's privileges to the container's, so that the forked
// process starts with exactly them.
func prepareProcess(p *Process) (*exec.Cmd, int, error) {
	if p.OOMScoreAdj != nil {
		if err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(*p.OOMScoreAdj)), 0); err != nil {
			return nil, ExitSetup, fmt.Errorf("--oom-score-adj %d: %w (lowering it below the current value needs privileges unroot does not have)", *p.OOMScoreAdj, err)
		}
	}
	var stdio []*os.File
	if !p.Tty {
		// A session of its own: signals from the user's terminal reach it
		// once, through us.
		stdio = []*os.File{os.Stdin, os.Stdout, os.Stderr}
		if p.stdio != nil {
			stdio = p.stdio
		}
	}
	cmd, master, code, err := buildProcess(p, stdio, p.Tty)
	if err != nil {
		return nil, code, err
	}
	if master != nil {
		sock := os.NewFile(initPtySocketFD, "pty-socket")
		err := userns.SendFD(sock, master)
		master.Close()
		sock.Close()
		if err != nil {
			closeStdio(cmd)
			return nil, ExitSetup, fmt.Errorf("passing the terminal to unroot: %w", err)
		}
	}
	if err := applySecurity(p); err != nil {
		return nil, ExitSetup, err
	}
	if p.NetBypass {
		if err := loadBypass(); err != nil {
			return nil, ExitSetup, err
		}
	}
	return cmd, 0, nil
}

// loadBypass loads the host-loopback bypass filter on this thread (the
// process and every `unroot exec` are forked from it) and sends its
// listener to the host side, which answers the notifications. A kernel
// without seccomp user notification (< 5.9 for all we use) just means no
// bypass: the socket is closed without a descriptor.
func loadBypass() error {
	sock := os.NewFile(initBypassFD, "bypass")
	defer sock.Close()
	fd, err := bypass.InstallFilter()
	if err != nil {
		return nil
	}
	l := os.NewFile(uintptr(fd), "seccomp-listener")
	defer l.Close()
	// Once the filter is loaded every connect(2) waits for the host
	// side: not being able to reach it is fatal.
	if err := userns.SendFD(sock, l); err != nil {
		return fmt.Errorf("passing the network bypass listener to unroot: %w", err)
	}
	return nil
}

// buildProcess resolves p's user, working directory and program inside
// the container (the main process and exec'd ones alike) unless that was
// done (p.resolved), and returns the command to start, with stdio, or a
// new terminal whose master it returns.
func buildProcess(p *Process, stdio []*os.File, tty bool) (*exec.Cmd, *os.File, int, error) {
	r := p.resolved
	if r == nil {
		var code int
		var err error
		if r, code, err = resolveProcess(p); err != nil {
			return nil, nil, code, err
		}
	}
	// One allocation for both (see fresh.go on size classes).
	c := &struct {
		cmd  exec.Cmd
		cred syscall.Credential
	}{
		cmd:  exec.Cmd{Path: r.path, Args: p.Args, Env: withHome(p.Env, r.home), Dir: p.Cwd},
		cred: syscall.Credential{Uid: uint32(r.uid), Gid: uint32(r.gid), NoSetGroups: p.SingleID},
	}
	cmd := &c.cmd
	attr := &syscall.SysProcAttr{
		Credential: &c.cred,
		Setsid:     true,
		// The process must not outlive its init.
		Pdeathsig: unix.SIGKILL,
	}
	for _, g := range r.groups {
		attr.Credential.Groups = append(attr.Credential.Groups, uint32(g))
	}
	var master *os.File
	if tty {
		m, slave, err := allocPTY()
		if err != nil {
			return nil, nil, ExitSetup, fmt.Errorf("allocating a terminal: %w", err)
		}
		master = m
		cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
		attr.Setctty = true
		attr.Ctty = 0
	} else {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio[0], stdio[1], stdio[2]
	}
	cmd.SysProcAttr = attr
	return cmd, master, 0, nil
}

// resolveProcess finds p's user in the container's /etc/passwd and
// /etc/group, makes its working directory and finds its program.
func resolveProcess(p *Process) (*resolvedProcess, int, error) {
	eu, err := resolveUser(p.User, p.SingleID)
	if err != nil {
		return nil, ExitSetup, err
	}
	if err := os.MkdirAll(p.Cwd, 0o755); err != nil {
		return nil, ExitCannotRun, fmt.Errorf("creating working directory %s: %w", p.Cwd, err)
	}
	path, code, err := lookPath(p.Args[0], withHome(p.Env, eu.Home))
	if err != nil {
		return nil, code, err
	}
	return &resolvedProcess{path: path, uid: eu.Uid, gid: eu.Gid, groups: eu.Sgids, home: eu.Home}, 0, nil
}

// withHome is env with HOME set to home unless it sets HOME itself.
func withHome(env []string, home string) []string {
	if HasEnv(env, "HOME") {
		return env
	}
	return append(env[:len(env):len(env)], "HOME="+home)
}

func closeStdio(cmd *exec.Cmd) {
	if f, ok := cmd.Stdin.(*os.File); ok && f != os.Stdin {
		f.Close()
	}
}

// reap waits for the process pid while forwarding signals to it and
// reaping orphans, then returns its exit status. It also starts the
// processes `unroot exec` asks for (this is the thread that may fork them)
// and reports their exit.
func reap(pid int, sigs chan os.Signal, jobs <-chan *execJob, p *Process) int {
	chld := make(chan os.Signal, 1)
	signal.Notify(chld, unix.SIGCHLD)
	execs := map[int]int{} // pid -> connection
	for {
		if code, done := reapEnded(pid, execs, nil); done {
			return code
		}
		select {
		case sig := <-sigs:
			_ = unix.Kill(pid, sig.(unix.Signal))
		case <-chld:
		case job := <-jobs:
			if epid := startExec(p, job); epid > 0 && !job.req.Detach {
				execs[epid] = job.conn
			}
		}
	}
}

// reapEnded reaps every child that ended: it answers the `exec` clients
// of those in execs (pid -> connection) and calls ended for each other
// one; done is true, with its status, once the process pid is among them.
func reapEnded(pid int, execs map[int]int, ended func(pid int)) (code int, done bool) {
	for {
		var ws unix.WaitStatus
		wpid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err != nil || wpid <= 0 {
			return 0, false
		}
		c := ws.ExitStatus()
		if ws.Signaled() {
			c = 128 + int(ws.Signal())
		}
		if wpid == pid {
			return c, true
		}
		if ended != nil {
			ended(wpid)
		}
		if conn, ok := execs[wpid]; ok {
			delete(execs, wpid)
			_ = sendReply(conn, ExecReply{Exit: &c})
			_ = unix.Shutdown(conn, unix.SHUT_RDWR)
		}
	}
}

// HasEnv reports whether env sets k.
func HasEnv(env []string, k string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, k+"=") {
			return true
		}
	}
	return false
}

// Forwarded are the signals passed on to the container's process;
// SIGCHLD, SIGPIPE, SIGURG (the Go scheduler's) and SIGWINCH (handled
// with the terminal) are not.
var Forwarded = []os.Signal{
	unix.SIGHUP, unix.SIGINT, unix.SIGQUIT, unix.SIGTERM, unix.SIGUSR1, unix.SIGUSR2,
	unix.SIGALRM, unix.SIGCONT, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU, unix.SIGPWR,
	unix.SIGVTALRM, unix.SIGPROF, unix.SIGXCPU, unix.SIGXFSZ, unix.SIGSYS, unix.SIGTRAP,
}

// Fail prints err the way every unroot stage does and returns code.
func Fail(code int, err error) int { return fail(code, err) }

func fail(code int, err error) int {
	fmt.Fprintf(os.Stderr, "unroot: %v\n", err)
	return code
}

// applySecurity drops this thread's privileges to the container's:
// bounding set, capabilities, no_new_privs. The forked process inherits
// them; its ids are switched by the fork (a non-root user thereby loses all
// capabilities, as in Docker). Seccomp, when it comes, is loaded here last.
func applySecurity(p *Process) error {
	if err := dropBounding(p.Caps); err != nil {
		return err
	}
	// SETUID/SETGID are needed by the fork to switch ids; the process
	// itself gets exactly p.Caps (the fork's setuid to 0 keeps the
	// permitted set, to another user clears it).
	keep := append([]string{"SETUID", "SETGID"}, p.Caps...)
	if err := restrictCaps(keep, p.Caps); err != nil {
		return err
	}
	if err := prctlThreads(unix.PR_SET_NO_NEW_PRIVS, 1); err != nil {
		return fmt.Errorf("setting no_new_privs: %w", err)
	}
	return nil
}

func mappingHint(single bool) string {
	if single {
		return " (only your own id is mapped: without a subordinate id range in /etc/subuid and /etc/subgid the container can run only as root)"
	}
	return " (the id is outside your subordinate id range)"
}

func dropBounding(caps []string) error {
	var keep [64]bool
	for _, c := range caps {
		if n := capNumber(c); n >= 0 {
			keep[n] = true
		}
	}
	last := min(userns.LastCap(), len(keep)-1)
	for c := 0; c <= last; c++ {
		if !keep[c] {
			if err := prctlThreads(unix.PR_CAPBSET_DROP, uintptr(c)); err != nil && err != unix.EINVAL {
				return fmt.Errorf("dropping capability %d: %w", c, err)
			}
		}
	}
	return nil
}

// resolveUser reads the container's /etc/passwd and /etc/group, as Docker
// does for -u and the image's User.
func resolveUser(spec string, single bool) (*user.ExecUser, error) {
	def := &user.ExecUser{Uid: 0, Gid: 0, Home: "/"}
	eu, err := user.GetExecUserPath(spec, def, "/etc/passwd", "/etc/group")
	if err != nil {
		return nil, fmt.Errorf("unable to find user %s: %w", spec, err)
	}
	if eu.Home == "" {
		eu.Home = "/"
	}
	if single && (eu.Uid != 0 || eu.Gid != 0) {
		return nil, fmt.Errorf("user %q (uid %d, gid %d) is not mapped: only your own id is available, as root; ask an admin for a subordinate id range (/etc/subuid, /etc/subgid) or run with -u 0", spec, eu.Uid, eu.Gid)
	}
	return eu, nil
}

// lookPath finds the program in the container's PATH, with Docker's exit
// codes for "not found" (127) and "not executable" (126).
func lookPath(name string, env []string) (string, int, error) {
	if strings.Contains(name, "/") {
		err := checkExec(name)
		switch {
		case err == nil:
			return name, 0, nil
		case errors.Is(err, os.ErrNotExist):
			return "", ExitNotFound, err
		default:
			return "", ExitCannotRun, err
		}
	}
	pathEnv := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			pathEnv = e[5:]
		}
	}
	var firstErr error
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		err := checkExec(p)
		if err == nil {
			return p, 0, nil
		}
		if !errors.Is(err, os.ErrNotExist) && firstErr == nil {
			firstErr = err
		}
	}
	if firstErr != nil {
		return "", ExitCannotRun, firstErr
	}
	return "", ExitNotFound, fmt.Errorf("exec: %q: executable file not found in $PATH", name)
}

func checkExec(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("exec: %q: %w", p, os.ErrNotExist)
		}
		return err
	}
	if st.IsDir() {
		return fmt.Errorf("exec: %q is a directory", p)
	}
	if st.Mode()&0o111 == 0 {
		return fmt.Errorf("exec: %q: permission denied", p)
	}
	return nil
}

// allocPTY opens a terminal in the container's own devpts.
func allocPTY() (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("unlockpt: %w", err)
	}
	n, err := unix.IoctlGetUint32(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("ptsname: %w", err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	return master, slave, nil
}
