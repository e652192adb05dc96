package container

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/moby/sys/user"
	"golang.org/x/sys/unix"

	"github.com/unroot/unroot/userns"
)

// StageInit is the stage name of the container's init process.
const StageInit = "init"

// Exit codes of the init stage, as Docker uses them.
const (
	ExitSetup       = 125
	ExitCannotRun   = 126
	ExitNotFound    = 127
	initSpecFD      = 3
	initPtySocketFD = 4
)

// InitMain runs as PID 1 of the container: it finishes the rootfs, pivots
// into it and execs the user's process in its place. It returns only on
// failure, with the exit code to use.
func InitMain() int {
	// Credentials, capabilities and no_new_privs are per thread in Linux;
	// everything below must happen on the thread that finally execs.
	runtime.LockOSThread()
	var p Process
	f := os.NewFile(initSpecFD, "spec")
	if err := json.NewDecoder(f).Decode(&p); err != nil {
		return fail(ExitSetup, fmt.Errorf("reading the container spec: %w", err))
	}
	f.Close()
	if err := setupRootfs(&p); err != nil {
		return fail(ExitSetup, fmt.Errorf("setting up the container's filesystem: %w", err))
	}
	if err := pivot(p.Rootfs); err != nil {
		return fail(ExitSetup, err)
	}
	if err := maskPaths(); err != nil {
		return fail(ExitSetup, fmt.Errorf("masking kernel paths: %w", err))
	}
	if err := unix.Sethostname([]byte(p.Hostname)); err != nil {
		return fail(ExitSetup, fmt.Errorf("setting the hostname: %w", err))
	}
	if p.Tty {
		if err := setupTTY(os.NewFile(initPtySocketFD, "pty-socket")); err != nil {
			return fail(ExitSetup, fmt.Errorf("allocating a terminal: %w", err))
		}
	} else if _, err := unix.Setsid(); err != nil {
		// A session of its own: the user's terminal signals unroot, which
		// forwards them once.
		return fail(ExitSetup, fmt.Errorf("setsid: %w", err))
	}
	eu, err := resolveUser(p.User, p.SingleID)
	if err != nil {
		return fail(ExitSetup, err)
	}
	env := p.Env
	if !hasEnv(env, "HOME") {
		env = append(env, "HOME="+eu.Home)
	}
	if err := os.MkdirAll(p.Cwd, 0o755); err != nil {
		return fail(ExitCannotRun, fmt.Errorf("creating working directory %s: %w", p.Cwd, err))
	}
	if err := unix.Chdir(p.Cwd); err != nil {
		return fail(ExitCannotRun, fmt.Errorf("changing to working directory %s: %w", p.Cwd, err))
	}
	path, code, err := lookPath(p.Args[0], env)
	if err != nil {
		return fail(code, err)
	}
	if err := applySecurity(&p, eu); err != nil {
		return fail(ExitSetup, err)
	}
	err = unix.Exec(path, p.Args, env)
	if errors.Is(err, unix.ENOENT) {
		return fail(ExitNotFound, fmt.Errorf("exec %s: %w", p.Args[0], err))
	}
	return fail(ExitCannotRun, fmt.Errorf("exec %s: %w", p.Args[0], err))
}

func fail(code int, err error) int {
	fmt.Fprintf(os.Stderr, "unroot: %v\n", err)
	return code
}

// applySecurity drops privileges on the calling (locked) thread: bounding
// set, groups and ids, then capabilities, then no_new_privs. Seccomp, when
// it comes, is loaded here last, right before exec.
func applySecurity(p *Process, eu *user.ExecUser) error {
	if err := dropBounding(p.Caps); err != nil {
		return err
	}
	if !p.SingleID {
		gids := make([]int, len(eu.Sgids))
		copy(gids, eu.Sgids)
		if err := unix.Setgroups(gids); err != nil {
			return fmt.Errorf("setgroups: %w", err)
		}
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(eu.Gid), uintptr(eu.Gid), uintptr(eu.Gid)); e != 0 {
		return fmt.Errorf("setting group id %d: %w%s", eu.Gid, e, mappingHint(p.SingleID))
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(eu.Uid), uintptr(eu.Uid), uintptr(eu.Uid)); e != 0 {
		return fmt.Errorf("setting user id %d: %w%s", eu.Uid, e, mappingHint(p.SingleID))
	}
	if eu.Uid == 0 {
		if err := restrictCaps(p.Caps); err != nil {
			return err
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
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
	keep := map[int]bool{}
	for _, c := range caps {
		keep[capNumbers[c]] = true
	}
	for c := 0; c <= lastCap(); c++ {
		if !keep[c] {
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && err != unix.EINVAL {
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
		return name, 0, checkExec(name)
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

// setupTTY opens a terminal in the container's own devpts, hands the
// master to the host side over sock and makes the slave this process's
// controlling terminal and stdio.
func setupTTY(sock *os.File) error {
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer master.Close()
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		return fmt.Errorf("unlockpt: %w", err)
	}
	n, err := unix.IoctlGetUint32(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		return fmt.Errorf("ptsname: %w", err)
	}
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return err
	}
	if err := userns.SendFD(sock, master); err != nil {
		return fmt.Errorf("passing the terminal to unroot: %w", err)
	}
	sock.Close()
	if _, err := unix.Setsid(); err != nil {
		return err
	}
	if err := unix.IoctlSetInt(int(slave.Fd()), unix.TIOCSCTTY, 0); err != nil {
		return fmt.Errorf("TIOCSCTTY: %w", err)
	}
	for fd := 0; fd < 3; fd++ {
		if err := unix.Dup3(int(slave.Fd()), fd, 0); err != nil {
			return err
		}
	}
	return slave.Close()
}
