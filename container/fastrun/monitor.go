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
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/unroot/unroot/container/cinit"
	"github.com/unroot/unroot/container/initbin"
	"github.com/unroot/unroot/container/resolve"
	"github.com/unroot/unroot/slirp"
	"github.com/unroot/unroot/userns"
)

// StageMonitor is the stage name of the fast path's monitor: root in the
// user namespace, it mounts the rootfs, starts the container's init and
// cleans up after it.
const StageMonitor = "fast-monitor"

// TmpDir is the directory, in the graph root, of the fast path's
// containers: DIR/ID/{upper,work,merged} and DIR/ID/image, which holds the
// image id and is share-locked while the container lives, so that rmi
// refuses to remove an image in use and anyone may remove a directory
// whose lock is free (a monitor killed with SIGKILL leaves it behind).
func TmpDir(graphRoot string) string { return filepath.Join(graphRoot, "unroot-run") }

// MonitorMain is the fast monitor's main; its exit code is the container's.
func MonitorMain() int {
	ctl := userns.Enter()
	var s Spec
	if err := ctl.Recv(&s); err != nil || s.Proc == nil {
		return cinit.Fail(cinit.ExitSetup, fmt.Errorf("reading the container spec: %v", err))
	}
	ctl.Close()
	// Non-dumpable: processes in the container cannot open /proc/<us>/exe
	// (the unroot binary) or our file descriptors (CVE-2019-5736 class).
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	code, err := monitor(&s)
	if err != nil {
		return cinit.Fail(code, err)
	}
	return code
}

func monitor(s *Spec) (int, error) {
	if s.Net != nil {
		if err := slirp.ConfigureChild(*s.Net); err != nil {
			return cinit.ExitSetup, err
		}
		s.Etc.Hosts, s.Etc.ResolvConf = string(s.Net.Hosts(s.Proc.Hostname)), string(s.Net.ResolvConf())
	} else if s.Proc.Net == "none" {
		if err := LoopbackUp(); err != nil {
			return cinit.ExitSetup, err
		}
	}
	if s.Proc.Net != "host" {
		// A new network namespace starts with ping sockets disabled ("1 0");
		// it is ours, so let every user in the container ping, as in Podman.
		_ = os.WriteFile("/proc/sys/net/ipv4/ping_group_range", []byte(fmt.Sprintf("0 %d", s.GIDs-1)), 0)
	}
	tmp := TmpDir(s.GraphRoot)
	dir := filepath.Join(tmp, s.ID)
	defer Sweep(tmp)
	defer os.RemoveAll(dir)
	lock, err := register(tmp, dir, s)
	if err != nil {
		return cinit.ExitSetup, err
	}
	defer lock.Close()
	merged := filepath.Join(dir, "merged")
	for _, d := range []string{"upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return cinit.ExitSetup, err
		}
	}
	// The options the store's overlay uses in a user namespace (userxattr:
	// whiteouts and opaque dirs as user.overlay.* xattrs), plus volatile:
	// the upper layer is thrown away at the end, so it need not be synced
	// to disk when the mount goes (kernels before 5.10 refuse it).
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s,userxattr",
		strings.Join(s.Lower, ":"), filepath.Join(dir, "upper"), filepath.Join(dir, "work"))
	err = unix.Mount("overlay", merged, "overlay", 0, opts+",volatile")
	if err == unix.EINVAL {
		err = unix.Mount("overlay", merged, "overlay", 0, opts)
	}
	if err != nil {
		return cinit.ExitSetup, fmt.Errorf("mounting the container's filesystem: %w", err)
	}
	defer func() { _ = unix.Unmount(merged, unix.MNT_DETACH) }()
	s.Proc.Rootfs = merged

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
	return ExitCode(cmd.ProcessState), nil
}

// register creates the container's directory and holds its lock (with
// the image id in it) for as long as the returned file is open. rmi cannot
// run in between: the store guard is shared while we check that the image
// is still there, exclusive while rmi checks and deletes.
func register(tmp, dir string, s *Spec) (*os.File, error) {
	release, err := Guard(tmp, false)
	if err != nil {
		return nil, err
	}
	defer release()
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the container's layer: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "image"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_SH); err != nil {
		lock.Close()
		return nil, fmt.Errorf("locking the container's layer: %w", err)
	}
	if _, err := lock.WriteString(s.ImageID); err != nil {
		lock.Close()
		return nil, err
	}
	for _, l := range s.Lower {
		if _, err := os.Stat(l); err != nil {
			lock.Close()
			return nil, fmt.Errorf("the image was removed while the container started: run it again")
		}
	}
	return lock, nil
}

// Guard locks the fast containers' directory tmp against rmi: shared for
// a container registering itself, exclusive for rmi.
func Guard(tmp string, exclusive bool) (release func(), err error) {
	return guard(tmp, exclusive, false)
}

func guard(tmp string, exclusive, try bool) (release func(), err error) {
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", tmp, err)
	}
	f, err := os.OpenFile(filepath.Join(tmp, ".guard"), os.O_CREATE|os.O_RDONLY, 0o600)
	if err != nil {
		return nil, err
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	if try {
		how |= unix.LOCK_NB
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", tmp, err)
	}
	return func() { f.Close() }, nil
}

// ImageInUse reports whether a fast container runs from imageID. Call it
// with the exclusive Guard held.
func ImageInUse(tmp, imageID string) bool {
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if id, busy := InUse(filepath.Join(tmp, e.Name())); busy && id == imageID {
			return true
		}
	}
	return false
}

// Sweep removes the directories of fast containers whose monitor is gone
// (their lock is free). It holds the guard exclusively, so that no
// container is half-way through registering (its directory made, its lock
// not yet taken); when the guard is busy it leaves the sweep to a later run.
func Sweep(tmp string) {
	release, err := guard(tmp, true, true)
	if err != nil {
		return
	}
	defer release()
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(tmp, e.Name())
		if _, busy := InUse(dir); !busy {
			_ = unix.Unmount(filepath.Join(dir, "merged"), unix.MNT_DETACH)
			_ = os.RemoveAll(dir)
		}
	}
}

// InUse reports whether the fast container in dir still runs, and from
// which image.
func InUse(dir string) (imageID string, busy bool) {
	f, err := os.Open(filepath.Join(dir, "image"))
	if err != nil {
		return "", false
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
		return "", false
	}
	b, _ := os.ReadFile(f.Name())
	return string(b), true
}

// LoopbackUp brings up lo in a network namespace of our own (--net=none).
func LoopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("reading lo's flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bringing lo up: %w", err)
	}
	return nil
}

func newID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
