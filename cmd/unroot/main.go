// Command unroot pulls and runs OCI/Docker images without root.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/sirupsen/logrus"
	flag "github.com/spf13/pflag"
	"go.podman.io/storage/pkg/reexec"

	"github.com/unroot/unroot/container"
	"github.com/unroot/unroot/container/cinit"
	"github.com/unroot/unroot/container/fastrun"
	"github.com/unroot/unroot/idmap"
	"github.com/unroot/unroot/image"
	"github.com/unroot/unroot/image/paths"
	"github.com/unroot/unroot/userns"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// exitError carries an exit code through the command functions.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// usageError is a wrong command line; it is reported with a pointer to --help.
type usageError struct {
	verb string
	err  error
}

func (e usageError) Error() string { return e.err.Error() }

type command struct {
	name, args, short string
	run               func(g *globals, args []string) error
}

var commands []command

func init() {
	commands = []command{
		{"run", "[flags] IMAGE [COMMAND [ARG...]]", "Run a command in a new container", cmdRun},
		{"ps", "[flags]", "List containers", cmdPs},
		{"start", "[flags] CONTAINER [CONTAINER...]", "Start one or more stopped containers", cmdStart},
		{"stop", "[flags] CONTAINER [CONTAINER...]", "Stop one or more running containers", cmdStop},
		{"restart", "[flags] CONTAINER [CONTAINER...]", "Restart one or more containers", cmdRestart},
		{"kill", "[flags] CONTAINER [CONTAINER...]", "Kill one or more running containers", cmdKill},
		{"rm", "[flags] CONTAINER [CONTAINER...]", "Remove one or more containers", cmdRm},
		{"wait", "CONTAINER [CONTAINER...]", "Block until containers stop, then print their exit codes", cmdWait},
		{"exec", "[flags] CONTAINER COMMAND [ARG...]", "Run a command in a running container", cmdExec},
		{"cp", "[flags] CONTAINER:SRC_PATH DEST_PATH | SRC_PATH CONTAINER:DEST_PATH", "Copy files between a running container and the host", cmdCp},
		{"port", "CONTAINER [PRIVATE_PORT[/PROTO]]", "List the port mappings of a container", cmdPort},
		{"top", "CONTAINER", "Display the running processes of a container", cmdTop},
		{"logs", "[flags] CONTAINER", "Fetch the logs of a container", cmdLogs},
		{"attach", "[flags] CONTAINER", "Attach to a running detached container's output (and stdin, if it was started with -i)", cmdAttach},
		{"inspect", "[flags] CONTAINER [CONTAINER...]", "Return low-level information on containers", cmdInspect},
		{"volume", "create|ls|rm|inspect|prune [flags]", "Manage named volumes", cmdVolume},
		{"pull", "[flags] IMAGE", "Pull an image from a registry", cmdPull},
		{"images", "[flags]", "List images in local storage", cmdImages},
		{"rmi", "[flags] IMAGE [IMAGE...]", "Remove one or more images", cmdRmi},
		{"load", "[flags]", "Load images from a tar archive (docker save / OCI) or an OCI layout", cmdLoad},
		{"save", "[flags] IMAGE", "Save an image to a tar archive", cmdSave},
		{"login", "[flags] REGISTRY", "Log in to a registry", cmdLogin},
		{"info", "[flags]", "Show how unroot is set up on this machine", cmdInfo},
		{"system", "df|prune|reset|check|share [flags]", "Manage the image store: disk use, clean-up, reset, consistency check", cmdSystem},
		{"check", "[flags]", "Check that this machine and user can run containers, and say how to fix what is missing", cmdCheck},
		{"stats", "[flags] [CONTAINER...]", "Show CPU, memory, pids and I/O use of running containers", cmdStats},
		{"update", "[flags] CONTAINER...", "Change the resource limits of running containers", cmdUpdate},
		{"version", "", "Show the unroot version", cmdVersion},
	}
}

func init() {
	// The monitor forks the container's init from the main thread and may
	// later exec (see cinit.StageWait): the init's parent-death signal is
	// bound to the thread that forked it, which must survive the exec.
	if userns.Stage() == container.StageMonitor {
		runtime.LockOSThread()
	}
}

func main() {
	// containers/storage re-executes this binary to unpack layers in a
	// chroot; those helpers dispatch here.
	if reexec.Init() {
		return
	}
	if l, err := logrus.ParseLevel(os.Getenv("_UNROOT_LOG_LEVEL")); err == nil {
		logrus.SetLevel(l)
	}
	if os.Getenv(container.EnvDetached) != "" && userns.Stage() == "" {
		os.Exit(container.DetachedMain())
	}
	switch userns.Stage() {
	case container.StageInit:
		os.Exit(cinit.Main())
	case cinit.StageWait:
		os.Exit(cinit.WaitMain())
	case cinit.StageFresh:
		os.Exit(cinit.FreshMain())
	case container.StageMonitor:
		os.Exit(container.MonitorMain())
	case container.StagePull:
		os.Exit(container.PullMain())
	}
	userns.CloseInherited()
	os.Exit(realMain(os.Args[1:]))
}

// globals are the flags every verb understands, given before the verb.
type globals struct {
	// args are the global flags as given (they key the fast path's records).
	args   []string
	paths  image.Paths
	store  image.StoreOptions
	root   string
	runDir string
}

func realMain(args []string) int {
	g := &globals{}
	fs := flag.NewFlagSet("unroot", flag.ContinueOnError)
	fs.SetInterspersed(false)
	fs.StringVar(&g.root, "root", "", "storage root directory (default $XDG_DATA_HOME/unroot/storage)")
	fs.StringVar(&g.runDir, "runroot", "", "run-time state directory (default $XDG_RUNTIME_DIR/unroot)")
	overlay := fs.String("overlay", "", "how image layers are stacked: auto (native kernel overlay, else fuse-overlayfs, else vfs), native, fuse or vfs")
	imageStores := fs.StringArray("image-store", nil, "also use the images of this read-only store (DIR, populated with unroot --root DIR pull); repeatable")
	showVersion := fs.BoolP("version", "v", false, "print the version and exit")
	logLevel := fs.String("log-level", "warn", "log messages at or above this level: debug, info, warn, error")
	fs.Usage = func() { usage(fs) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "unroot: %v\nSee 'unroot --help'.\n", err)
		return 125
	}
	lvl, err := logrus.ParseLevel(*logLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "unroot: --log-level: %v\n", err)
		return 125
	}
	logrus.SetLevel(lvl)
	os.Setenv("_UNROOT_LOG_LEVEL", lvl.String())
	if *showVersion {
		fmt.Printf("unroot version %s\n", version)
		return 0
	}
	if fs.NArg() == 0 {
		usage(fs)
		return 125
	}
	g.paths = image.DefaultPaths()
	if g.store, err = image.Configure(&g.paths, image.Settings{Root: g.root, RunRoot: g.runDir, Overlay: *overlay, ImageStores: *imageStores}); err != nil {
		fmt.Fprintf(os.Stderr, "unroot: %v\n", err)
		return 125
	}
	verb, rest := fs.Arg(0), fs.Args()[1:]
	g.args = args[:len(args)-fs.NArg()]
	for _, c := range commands {
		if c.name != verb {
			continue
		}
		err := c.run(g, rest)
		var ee exitError
		var ue usageError
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, container.ErrReported):
			return 125
		case errors.As(err, &ee):
			return ee.code
		case errors.As(err, &ue):
			fmt.Fprintf(os.Stderr, "unroot %s: %v\nSee 'unroot %s --help'.\n", ue.verb, ue.err, ue.verb)
			return 125
		default:
			fmt.Fprintf(os.Stderr, "unroot: %v\n", err)
			return 125
		}
	}
	fmt.Fprintf(os.Stderr, "unroot: unknown command %q\nSee 'unroot --help'.\n", verb)
	return 125
}

func usage(fs *flag.FlagSet) {
	fmt.Fprintf(os.Stderr, "Usage: unroot [global flags] COMMAND [flags] [args]\n\nRun OCI/Docker images without root.\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(os.Stderr, "  %-9s %s\n", c.name, c.short)
	}
	fmt.Fprintf(os.Stderr, "\nGlobal flags:\n%s\nRun 'unroot COMMAND --help' for a command's flags.\n", fs.FlagUsages())
}

// newFlags makes a verb's flag set with Docker-style help.
func newFlags(verb string) *flag.FlagSet {
	fs := flag.NewFlagSet(verb, flag.ContinueOnError)
	fs.Usage = func() {
		for _, c := range commands {
			if c.name == verb {
				fmt.Fprintf(os.Stderr, "Usage: unroot %s %s\n\n%s\n\nFlags:\n%s", verb, c.args, c.short, fs.FlagUsages())
			}
		}
	}
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{verb: fs.Name(), err: err}
	}
	return nil
}

// inUserNS runs the current command again as root in unroot's user
// namespace (where the store lives) and returns its exit status. It
// returns (false, nil) when we already are that re-executed process.
func inUserNS(g *globals) (bool, error) {
	if userns.Stage() == stageStore {
		// The parent has written our mapping once its first message arrives.
		var go_ struct{}
		if err := storeCtl().Recv(&go_); err != nil {
			return true, fmt.Errorf("waiting for the user namespace: %w", err)
		}
		if image.SingleIDNamespace() {
			g.store.SquashOwnership()
		}
		return false, nil
	}
	if err := image.EnsureRunDir(g.paths.Run); err != nil {
		return true, err
	}
	child, err := userns.Start(userns.Options{
		Stage:      stageStore,
		Args:       os.Args[1:],
		Cloneflags: 0x00020000, // CLONE_NEWNS: our mounts stay ours
		Mapping:    mapping(),
		Stdin:      os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
	})
	if err != nil {
		return true, err
	}
	_ = child.Ctl.Send(struct{}{})
	err = child.Cmd.Wait()
	child.Ctl.Close()
	if child.Cmd.ProcessState != nil {
		if code := child.Cmd.ProcessState.ExitCode(); code != 0 {
			return true, exitError{code}
		}
		if code := child.Cmd.ProcessState.ExitCode(); code < 0 {
			return true, exitError{125}
		}
		return true, nil
	}
	return true, err
}

const stageStore = "store"

var ctl *userns.Conn

func storeCtl() *userns.Conn {
	if ctl == nil {
		ctl = userns.Enter()
	}
	return ctl
}

// fastTarget is where the fast path will look for the record of ref.
func (g *globals) fastTarget(ref string) *container.FastTarget {
	return &container.FastTarget{Key: fastrun.Key(g.args, ref), Dir: paths.Default().Run, ConfigDir: g.paths.Config}
}

func mapping() idmap.Mapping { return idmap.Choose(idmap.CurrentCaller()) }

func cmdVersion(g *globals, args []string) error {
	fs := newFlags("version")
	if err := parse(fs, args); err != nil {
		return err
	}
	fmt.Printf("unroot version %s\n", version)
	return nil
}

var bg = context.Background()

func joinArgs(a []string) string { return strings.Join(a, " ") }
