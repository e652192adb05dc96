package fastrun

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	flag "github.com/spf13/pflag"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/unroot/unroot/container/cinit"
	"github.com/unroot/unroot/container/initbin"
	"github.com/unroot/unroot/container/resolve"
	"github.com/unroot/unroot/container/scratch"
	"github.com/unroot/unroot/idmap"
	"github.com/unroot/unroot/image/paths"
	"github.com/unroot/unroot/internal/trace"
	"github.com/unroot/unroot/userns"
)

// Spec is what the fast monitor needs, sent over the control socket.
type Spec struct {
	ID        string         `json:"id"`
	ImageID   string         `json:"image_id"`
	GraphRoot string         `json:"graph_root"`
	RunDir    string         `json:"run_dir"`
	Lower     []string       `json:"lower"`
	Proc      *cinit.Process `json:"proc"`
	Etc       resolve.Etc    `json:"etc"`
	// Net: the user-mode network's container side (nil for none and host).
	Net   *childConfig `json:"net,omitempty"`
	Stdin bool         `json:"stdin"`
	// GIDs is the number of mapped group ids (the ping range).
	GIDs           uint64 `json:"gids"`
	SignalsFromTTY bool   `json:"signals_from_tty"`
	// BypassExtra is the monitor's extra file that carries the init's
	// seccomp listener up to us (Proc.NetBypass), -1 for none.
	BypassExtra int `json:"bypass_extra"`
}

// flags are the `run` flags the fast path understands; any other is
// left to the full unroot (which also owns every error message).
type flags struct {
	rm, detach, interactive, tty, readOnly, quiet bool
	env, addHost, tmpfs                           []string
	dns, capAdd, capDrop, publish                 []string
	workdir, entrypoint, user, hostname           string
	net, pull                                     string
	mtu                                           int
	noHostLoopback                                bool
	// quoted: a comma-separated value with a quote, which pflag reads as
	// CSV: left to the full unroot.
	quoted bool
}

// listValue is a repeatable flag, as pflag's StringArray, or with split
// its StringSlice (values split at commas). pflag's own write their
// default text with a CSV writer: 4 kB of buffer for each flag on every
// run, in the binary whose start-up is the benchmark.
type listValue struct {
	to     *[]string
	split  bool
	quoted *bool
}

func (l *listValue) String() string { return "" }

func (l *listValue) Type() string {
	if l.split {
		return "stringSlice"
	}
	return "stringArray"
}

func (l *listValue) Set(v string) error {
	switch {
	case !l.split:
		*l.to = append(*l.to, v)
	case v == "":
	default:
		if strings.ContainsRune(v, '"') {
			*l.quoted = true
		}
		*l.to = append(*l.to, strings.Split(v, ",")...)
	}
	return nil
}

func parseRun(args []string) (*flags, *flag.FlagSet, error) {
	var f flags
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.SetInterspersed(false)
	fs.BoolVar(&f.rm, "rm", false, "")
	fs.BoolVarP(&f.detach, "detach", "d", false, "")
	fs.BoolVarP(&f.interactive, "interactive", "i", false, "")
	fs.BoolVarP(&f.tty, "tty", "t", false, "")
	fs.BoolVar(&f.readOnly, "read-only", false, "")
	fs.BoolVarP(&f.quiet, "quiet", "q", false, "")
	list := func(to *[]string, name, short string, split bool) {
		fs.VarP(&listValue{to: to, split: split, quoted: &f.quoted}, name, short, "")
	}
	list(&f.env, "env", "e", false)
	list(&f.addHost, "add-host", "", false)
	list(&f.tmpfs, "tmpfs", "", false)
	list(&f.dns, "dns", "", true)
	list(&f.capAdd, "cap-add", "", true)
	list(&f.capDrop, "cap-drop", "", true)
	fs.StringVarP(&f.workdir, "workdir", "w", "", "")
	fs.StringVar(&f.entrypoint, "entrypoint", "", "")
	fs.StringVarP(&f.user, "user", "u", "", "")
	fs.StringVarP(&f.hostname, "hostname", "h", "", "")
	fs.StringVar(&f.net, "net", "auto", "")
	fs.StringVar(&f.net, "network", "auto", "")
	fs.StringVar(&f.pull, "pull", "missing", "")
	list(&f.publish, "publish", "p", false)
	fs.IntVar(&f.mtu, "mtu", 0, "")
	fs.BoolVar(&f.noHostLoopback, "disable-host-loopback", false, "")
	// unroot's own init is always PID 1: --init changes nothing.
	fs.Bool("init", false, "")
	// Registry flags matter only for a pull, which the fast path never does.
	fs.Bool("tls-verify", true, "")
	fs.String("cert-dir", "", "")
	fs.String("creds", "", "")
	fs.String("authfile", "", "")
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	return &f, fs, nil
}

// globalFlags parses the flags before the verb; ok is false for any the
// fast path does not know.
func globalFlags(args []string) (global, rest []string, ok bool) {
	fs := flag.NewFlagSet("unroot", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.SetInterspersed(false)
	for _, n := range []string{"root", "runroot", "overlay", "log-level"} {
		fs.String(n, "", "")
	}
	fs.StringArray("image-store", nil, "")
	if err := fs.Parse(args); err != nil || fs.NArg() == 0 {
		return nil, nil, false
	}
	return args[:len(args)-fs.NArg()], fs.Args(), true
}

// Try runs `unroot ARGS` itself when it is a run the fast path can do, and
// returns its exit code; handled is false when the full unroot must.
func Try(args []string) (code int, handled bool) {
	trace.Mark("front: main")
	global, rest, ok := globalFlags(args)
	if !ok || rest[0] != "run" {
		return 0, false
	}
	f, fs, err := parseRun(rest[1:])
	if err != nil || !f.rm || f.detach || fs.NArg() == 0 || f.pull == "always" || f.quoted {
		return 0, false
	}
	switch f.net {
	case "none", "host":
		if len(f.publish) > 0 {
			return 0, false
		}
	case "", "auto", "bridge", "default", "slirp", "private":
		f.net = "auto" // as the full unroot records it
	case "pasta", "slirp4netns":
	default:
		return 0, false
	}
	for _, h := range f.addHost {
		if name, ip, ok := strings.Cut(h, ":"); !ok || name == "" || ip == "" {
			return 0, false
		}
	}
	var mounts []cinit.Mount
	for _, v := range f.tmpfs {
		dst, opts, _ := strings.Cut(v, ":")
		if !strings.HasPrefix(dst, "/") {
			return 0, false
		}
		mounts = append(mounts, cinit.Mount{Type: "tmpfs", Destination: dst, Options: opts})
	}
	p := paths.Default()
	ref := fs.Arg(0)
	rec, err := Load(p.Run, Key(global, ref))
	if err != nil {
		return 0, false
	}
	trace.Mark("front: record loaded")
	// Choosing a user-mode driver runs the helpers' --help: only once the
	// record says this run is ours.
	var net *netPlan
	if f.net != "none" && f.net != "host" {
		if net, ok = planNet(f); !ok {
			return 0, false
		}
	}
	// -e KEY passes the host's value, as in Docker.
	for i, e := range f.env {
		if !strings.Contains(e, "=") {
			if v, ok := os.LookupEnv(e); ok {
				f.env[i] = e + "=" + v
			}
		}
	}
	req := resolve.Request{
		ID: newID(), Image: ref, Cmd: fs.Args()[1:], Env: f.env, Workdir: f.workdir,
		User: f.user, Hostname: f.hostname, Tty: f.tty, Net: f.net,
		CapAdd: f.capAdd, CapDrop: f.capDrop, Mounts: mounts, ReadOnly: f.readOnly,
	}
	if fs.Changed("entrypoint") {
		req.Entrypoint = &f.entrypoint
	}
	proc, err := resolve.Process(req, rec.Config)
	if err != nil {
		return 0, false
	}
	// This binary is built without cgo (its start-up is several ms
	// shorter), so its user lookup reads /etc/passwd only: a user known
	// through NSS alone (LDAP, sssd) is left to the full unroot, whose
	// lookup asks NSS, so that both pick the same subordinate ids.
	caller := idmap.CurrentCaller()
	if caller.Name == strconv.FormatUint(uint64(caller.UID), 10) {
		return 0, false
	}
	m := idmap.Choose(caller)
	trace.Mark("front: mapping chosen")
	proc.SingleID = len(m.UIDs) == 1 && m.UIDs[0].Size == 1
	s := &Spec{
		ID: req.ID, ImageID: rec.ImageID, GraphRoot: rec.GraphRoot, RunDir: rec.RunDir,
		Lower: rec.Lower, Proc: proc, Stdin: f.interactive, GIDs: idmap.Size(m.GIDs),
		Etc: resolve.Etc{Net: f.net, DNS: f.dns, AddHosts: f.addHost},
	}
	if debug(global) {
		fmt.Fprintf(os.Stderr, "unroot: fast path: image %s, %d layers\n", rec.ImageID[:12], len(rec.Lower))
	}
	code, err = run(s, m, net)
	if err != nil {
		fmt.Fprintf(os.Stderr, "unroot: %v\n", err)
		return cinit.ExitSetup, true
	}
	return code, true
}

// debug: --log-level=debug among the global flags.
func debug(global []string) bool {
	for i, a := range global {
		if a == "--log-level=debug" || a == "--log-level" && i+1 < len(global) && global[i+1] == "debug" {
			return true
		}
	}
	return false
}

// run is the host side: start the monitor in a new user namespace, relay
// signals and the terminal, return the container's exit code.
func run(s *Spec, m idmap.Mapping, net *netPlan) (int, error) {
	stdinTTY := term.IsTerminal(int(os.Stdin.Fd()))
	if s.Proc.Tty && s.Stdin && !stdinTTY {
		return cinit.ExitSetup, errors.New("the input device is not a TTY: drop -t, or run from a terminal")
	}
	if err := paths.EnsureRunDir(s.RunDir); err != nil {
		return cinit.ExitSetup, err
	}
	var extra []*os.File
	var ptyParent *os.File
	if s.Proc.Tty {
		p, c, err := userns.SocketPair()
		if err != nil {
			return cinit.ExitSetup, err
		}
		ptyParent = p
		defer p.Close()
		extra = append(extra, c)
		defer c.Close()
	}
	s.BypassExtra = -1
	var bypassParent *os.File
	if net != nil && net.bypass {
		p, c, err := userns.SocketPair()
		if err != nil {
			return cinit.ExitSetup, err
		}
		bypassParent = p
		defer p.Close()
		s.BypassExtra = len(extra)
		s.Proc.NetBypass = true
		extra = append(extra, c)
		defer c.Close()
	}
	// In a shared process group the terminal signals the monitor itself.
	s.SignalsFromTTY = !s.Proc.Tty && stdinTTY
	// Catching signals starts a thread of the runtime's (~1 ms here): that
	// happens while the mapping helpers run. A signal before it ends us
	// the default way, and the container with us (parent-death signal).
	sigs, caught := cinit.CatchSignals(append(cinit.Forwarded, unix.SIGWINCH)...)
	defer signal.Stop(sigs)

	opts := userns.Options{
		Stage: StageMonitor, Cloneflags: unix.CLONE_NEWNS, Mapping: m,
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		ExtraFiles: extra,
		// With a terminal of its own the container must not also be in
		// the user's foreground process group.
		Setpgid: s.Proc.Tty,
	}
	if s.Proc.Net != "host" {
		opts.Cloneflags |= unix.CLONE_NEWNET
	}
	direct := Direct(s, net)
	// The published ports' listening sockets, for a direct init.
	var forward []*os.File
	defer func() {
		for _, f := range forward {
			f.Close()
		}
	}()
	if direct {
		if net != nil {
			var err error
			if s.Proc.Link, forward, err = net.link(s); err != nil {
				return cinit.ExitSetup, err
			}
		}
		cleanup, err := directOptions(s, &opts, forward)
		defer cleanup()
		if err != nil {
			return cinit.ExitSetup, err
		}
	}
	trace.Mark("front: starting the user namespace")
	child, err := userns.Start(opts)
	trace.Mark("front: mapped")
	if err != nil {
		return cinit.ExitSetup, err
	}
	for _, f := range append(extra, forward...) {
		if f != nil {
			f.Close()
		}
	}
	forward = nil
	if direct {
		// The init had its spec before its mapping (opts.Early); our end
		// of the socket stays open while we wait, which it checks
		// (userns.ParentGone).
		defer child.Ctl.Close()
		if net != nil {
			stop, err := startNet(net, s, child, bypassParent)
			if err != nil {
				return cinit.ExitSetup, err
			}
			defer stop()
			// slirp4netns has made the init's interface.
			if err := child.Ctl.Send(cinit.NetworkUp); err != nil {
				_ = child.Cmd.Process.Kill()
			}
		}
		caught()
		// Once clean, the init sends its code before it exits. Its
		// published ports' sockets close with it, and must be free when
		// we return: then we wait for its exit.
		var exited chan int
		if len(s.Proc.Forward) == 0 {
			exited = make(chan int, 1)
			go func() {
				var code int
				if child.Ctl.Recv(&code) == nil {
					exited <- code
				}
			}()
		}
		return Relay(child.Cmd, Terminal{In: os.Stdin, Out: os.Stdout, PtySocket: ptyParent,
			CopyIn: s.Stdin, Raw: stdinTTY, SignalsFromTTY: s.SignalsFromTTY, Exited: exited}, sigs)
	}
	if net != nil {
		stop, err := startNet(net, s, child, bypassParent)
		if err != nil {
			return cinit.ExitSetup, err
		}
		defer stop()
	}
	if err := child.Ctl.Send(s); err != nil {
		_ = child.Cmd.Process.Kill()
	}
	child.Ctl.Close()
	caught()
	return Relay(child.Cmd, Terminal{In: os.Stdin, Out: os.Stdout, PtySocket: ptyParent,
		CopyIn: s.Stdin, Raw: stdinTTY, SignalsFromTTY: s.SignalsFromTTY}, sigs)
}

// startNet starts the user-mode network for child (mapped and released),
// which it kills if that fails.
func startNet(net *netPlan, s *Spec, child *userns.Child, bypassParent *os.File) (stop func(), err error) {
	stopNet, err := net.start(s, child.Cmd.Process.Pid, bypassParent)
	trace.Mark("front: network started")
	if err != nil {
		_ = child.Cmd.Process.Kill()
		_ = child.Cmd.Wait()
		return nil, err
	}
	return func() {
		trace.Mark("front: container ended")
		stopNet()
		trace.Mark("front: network stopped")
	}, nil
}

// Terminal is the user's side of a container: its terminal, when it has
// one, and where the user's signals come from.
type Terminal struct {
	In, Out *os.File
	// PtySocket is where the container's pty master arrives; nil for a
	// container without a terminal.
	PtySocket *os.File
	CopyIn    bool // copy In to the container's terminal (-i)
	Raw       bool // the user's terminal (os.Stdin) goes raw meanwhile
	// SignalsFromTTY: the terminal signals the monitor itself; INT, QUIT
	// and TSTP must not be forwarded a second time.
	SignalsFromTTY bool
	// Exited, when not nil, may deliver the container's exit code before
	// cmd ends: cmd has nothing of the container left to wait for then.
	Exited <-chan int
}

// Relay waits for the monitor cmd, forwarding the user's signals (sigs)
// to it and copying the terminal t to and from the container's. It
// returns the exit code the way Docker does.
func Relay(cmd *exec.Cmd, t Terminal, sigs chan os.Signal) (int, error) {
	var outDone chan struct{}
	var master *os.File
	var masterMu sync.Mutex
	if t.PtySocket != nil {
		if t.Raw {
			if st, err := term.MakeRaw(int(os.Stdin.Fd())); err == nil {
				defer func() { _ = term.Restore(int(os.Stdin.Fd()), st) }()
			}
		}
		outDone = make(chan struct{})
		go func() {
			defer close(outDone)
			m, err := userns.RecvFD(t.PtySocket, "pty-master")
			if err != nil {
				return
			}
			masterMu.Lock()
			master = m
			masterMu.Unlock()
			Resize(m)
			if t.CopyIn {
				go func() { _, _ = io.Copy(m, t.In) }()
			}
			_, _ = io.Copy(t.Out, m)
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
						Resize(master)
					}
					masterMu.Unlock()
					continue
				}
				if t.SignalsFromTTY && IsTTYSignal(sig) {
					continue
				}
				_ = cmd.Process.Signal(sig)
			case <-waitDone:
				return
			}
		}
	}()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var err error
	early, isEarly := 0, false
	select {
	case err = <-waited:
	case early, isEarly = <-t.Exited:
	}
	close(waitDone)
	if outDone != nil {
		// The container's terminal is gone; drain what it wrote last.
		select {
		case <-outDone:
		case <-time.After(2 * time.Second):
		}
	}
	if isEarly {
		return early, nil
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return cinit.ExitSetup, fmt.Errorf("waiting for the container: %w", err)
	}
	return ExitCode(cmd.ProcessState), nil
}

// Resize gives the container's terminal the size of the user's.
func Resize(master *os.File) {
	ws, err := unix.IoctlGetWinsize(int(os.Stdin.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return
	}
	_ = unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, ws)
}

// IsTTYSignal: the signals a terminal sends its foreground process group.
func IsTTYSignal(sig os.Signal) bool {
	return sig == unix.SIGINT || sig == unix.SIGQUIT || sig == unix.SIGTSTP
}

// ExitCode is Docker's: the process's code, or 128+N for signal N.
func ExitCode(st *os.ProcessState) int {
	if st == nil {
		return cinit.ExitSetup
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return st.ExitCode()
}

// Direct reports whether the container's init can start straight in all
// its namespaces and mount its own rootfs (cinit.StageDirect), with no
// monitor in between: not with a user-mode network that needs a monitor
// (netPlan.direct), nor with CAP_SYS_PTRACE, which would let the
// container's processes reach the init's descriptor of the store.
func Direct(s *Spec, net *netPlan) bool {
	if net != nil && !net.direct() {
		return false
	}
	for _, c := range s.Proc.Caps {
		if c == "SYS_PTRACE" {
			return false
		}
	}
	return true
}

// directOptions turns the monitor's options o into the direct init's:
// the init binary in every namespace of the container, the /etc files
// it is to write, and the descriptors the init expects (4: the terminal's
// socket, 5: "started", 6: the network bypass's socket, 13...: the
// published ports' listening sockets, forward).
func directOptions(s *Spec, o *userns.Options, forward []*os.File) (cleanup func(), err error) {
	cleanup = func() {}
	s.Proc.EtcWrite = resolve.EtcContents(s.Proc.Hostname, s.Etc)
	s.Proc.Scratch = &cinit.Scratch{Tmp: scratch.Dir(s.GraphRoot), ID: s.ID, ImageID: s.ImageID, Lower: s.Lower, GIDs: s.GIDs}
	s.Proc.Rootfs = ""
	self, err := os.Executable()
	if err != nil {
		return cleanup, err
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return cleanup, err
	}
	cleanup = func() { devnull.Close() }
	// One P: the init needs no parallelism, and each P costs the runtime
	// pages, which are slow to fault in on small VMs.
	o.Stage, o.Binary, o.Env = cinit.StageDirect, initbin.Path(s.RunDir, self), []string{"GOMAXPROCS=1"}
	// Its Go start and first steps overlap the mapping helpers.
	o.Early = s.Proc
	if trace.On() {
		o.Env = append(o.Env, trace.Pass())
	}
	o.Cloneflags |= unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWCGROUP
	if !s.Stdin {
		o.Stdin = devnull
	}
	var pty *os.File
	if len(o.ExtraFiles) > 0 && s.Proc.Tty {
		pty = o.ExtraFiles[0]
	}
	files := []*os.File{pty, devnull, nil}
	if s.BypassExtra >= 0 {
		files[2] = o.ExtraFiles[s.BypassExtra]
	}
	if len(forward) > 0 {
		// Extra file i is fd 4+i; the ones in between are closed.
		for len(files) < cinit.InitForwardFD-4 {
			files = append(files, nil)
		}
		files = append(files, forward...)
	}
	o.ExtraFiles = files
	return cleanup, nil
}
