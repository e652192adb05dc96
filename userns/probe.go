package userns

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.podman.io/storage/pkg/reexec"
	"golang.org/x/sys/unix"

	"github.com/unroot/unroot/idmap"
)

// probeName is argv[0] of the probe process; main's reexec.Init runs it.
const probeName = "unroot-userns-probe"

const envProbeMapped = "_UNROOT_PROBE_MAPPED"

func init() { reexec.Register(probeName, probeChild) }

// Probe creates a throw-away user namespace (with its own mount and PID
// namespaces) the way unroot does, mapped with m, and tries the mounts
// unroot's stages need. It changes nothing outside that namespace.
func Probe(m idmap.Mapping) *ProbeResult {
	res := &ProbeResult{}
	cmd := reexec.Command(probeName)
	r, w, err := os.Pipe()
	if err != nil {
		res.ChildErr = err.Error()
		return res
	}
	defer w.Close()
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = r, &stdout, &stderr
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, envProbeMapped+"=") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID,
		Pdeathsig:  unix.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		r.Close()
		res.StartErr = err.Error()
		var errno unix.Errno
		if errors.As(err, &errno) {
			res.StartErrno = errno
		}
		return res
	}
	r.Close()
	if err := idmap.Write(cmd.Process.Pid, m); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		res.MapErr = err.Error()
		return res
	}
	_, _ = w.Write([]byte{'M'})
	w.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		res.ChildErr = "timed out"
		return res
	}
	if err != nil {
		res.ChildErr = strings.TrimSpace(fmt.Sprintf("%v: %s", err, stderr.String()))
		return res
	}
	if err := json.Unmarshal(stdout.Bytes(), &res.Mounts); err != nil {
		res.ChildErr = fmt.Sprintf("bad probe output %q: %v", stdout.String(), err)
	}
	return res
}

// probeChild is the probe process. Its first life waits for the mapping
// and re-executes itself (only an exec as a mapped uid 0 grants
// capabilities in the namespace); the second tries the mounts.
func probeChild() {
	if os.Getenv(envProbeMapped) == "" {
		var b [1]byte
		if n, _ := os.Stdin.Read(b[:]); n != 1 {
			os.Exit(3)
		}
		err := syscall.Exec("/proc/self/exe", []string{probeName}, append(os.Environ(), envProbeMapped+"=1"))
		fmt.Fprintf(os.Stderr, "re-executing: %v\n", err)
		os.Exit(3)
	}
	res := map[string]int{}
	try := func(name string, err error) bool {
		var errno unix.Errno
		switch {
		case err == nil:
			res[name] = 0
		case errors.As(err, &errno):
			res[name] = int(errno)
		default:
			res[name] = int(unix.EIO)
		}
		return err == nil
	}
	if try(MountPrivate, unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, "")) {
		target := ""
		for _, d := range []string{"/tmp", "/var/tmp", "/mnt", "/dev"} {
			if st, err := os.Stat(d); err == nil && st.IsDir() {
				target = d
				break
			}
		}
		if target != "" && try(MountTmpfs, unix.Mount("unroot-probe", target, "tmpfs", 0, "size=1m,mode=700")) {
			var dirs []string
			for _, d := range []string{"l", "u", "w", "m"} {
				p := filepath.Join(target, d)
				_ = os.Mkdir(p, 0o700)
				dirs = append(dirs, p)
			}
			_ = os.WriteFile(filepath.Join(dirs[0], "f"), nil, 0o600)
			try(MountOverlay, unix.Mount("overlay", dirs[3], "overlay", 0,
				fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", dirs[0], dirs[1], dirs[2])))
		}
		try(MountProc, unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""))
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
	os.Exit(0)
}
