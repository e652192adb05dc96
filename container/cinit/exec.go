package cinit

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// ExecRequest is what `unroot exec` asks the container's init for. The
// process's stdin, stdout and stderr come with it (SCM_RIGHTS), unless Tty.
type ExecRequest struct {
	Args   []string `json:"args"`
	Env    []string `json:"env,omitempty"` // KEY=VALUE overrides of the container's
	Cwd    string   `json:"cwd,omitempty"`
	User   string   `json:"user,omitempty"`
	Tty    bool     `json:"tty,omitempty"`
	Detach bool     `json:"detach,omitempty"`
	// Copy is "from" or "to" the container for `unroot cp`: Path in the
	// container, one pipe passed; for "to", Args[0] is the source's name.
	Copy string `json:"copy,omitempty"`
	Path string `json:"path,omitempty"`
}

// ExecReply is what the init answers: first Pid (with the terminal's
// master for Tty) or Error and Code, then Exit when the process ends.
// Signal messages go the other way.
type ExecReply struct {
	Pid    int    `json:"pid,omitempty"`
	Error  string `json:"error,omitempty"`
	Code   int    `json:"code,omitempty"`
	Exit   *int   `json:"exit,omitempty"`
	Signal int    `json:"signal,omitempty"`
}

// execJob is a request handed to the init's locked thread, which alone
// holds the container's capabilities and no_new_privs and so is the only
// one that may fork the container's processes.
type execJob struct {
	conn  int
	req   ExecRequest
	stdio []*os.File
	// done receives the pid (0 when it could not start).
	done chan int
}

// listenExec creates the exec socket: before pivot_root, at a host path
// (given through an O_PATH descriptor of its directory: unix socket paths
// are limited to 108 bytes). Only the listening descriptor is kept.
func listenExec(path string, uid, gid int) (int, error) {
	dir, err := unix.Open(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(dir)
	short := "/proc/self/fd/" + strconv.Itoa(dir) + "/" + filepath.Base(path)
	_ = unix.Unlink(short)
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	old := unix.Umask(0o177)
	err = unix.Bind(fd, &unix.SockaddrUnix{Name: short})
	unix.Umask(old)
	if err == nil {
		err = unix.Fchmodat(dir, filepath.Base(path), 0o600, 0)
	}
	if err == nil && (uid != 0 || gid != 0) {
		// The host user is not our root (--userns=keep-id): make the
		// socket theirs.
		err = unix.Fchownat(dir, filepath.Base(path), uid, gid, unix.AT_SYMLINK_NOFOLLOW)
	}
	if err == nil {
		err = unix.Listen(fd, 16)
	}
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("exec socket %s: %w", path, err)
	}
	return fd, nil
}

// serveExec accepts exec connections and hands the requests to jobs.
func serveExec(lfd int, jobs chan<- *execJob, wake func()) {
	// Waiting in the runtime's poller, not in accept(2): an idle
	// container's init then keeps no thread blocked for this.
	var rc syscall.RawConn
	if unix.SetNonblock(lfd, true) == nil {
		rc, _ = os.NewFile(uintptr(lfd), "exec.sock").SyscallConn()
	}
	for {
		var cfd int
		var err error
		if rc != nil {
			if rerr := rc.Read(func(fd uintptr) bool {
				cfd, _, err = unix.Accept4(int(fd), unix.SOCK_CLOEXEC)
				return err != unix.EAGAIN
			}); rerr != nil {
				return
			}
		} else {
			cfd, _, err = unix.Accept4(lfd, unix.SOCK_CLOEXEC)
		}
		if err != nil {
			if err == unix.EINTR || err == unix.ECONNABORTED {
				continue
			}
			return
		}
		go handleExec(cfd, jobs, wake)
	}
}

func sendReply(fd int, r ExecReply, files ...*os.File) error {
	b, _ := json.Marshal(r)
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	return unix.Sendmsg(fd, b, oob, nil, 0)
}

// RecvMsg reads one message of a SOCK_SEQPACKET connection and the files
// passed with it.
func RecvMsg(fd int, v any) ([]*os.File, error) {
	buf := make([]byte, 256<<10)
	oob := make([]byte, unix.CmsgSpace(16*4))
	n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, err
	}
	var files []*os.File
	if oobn > 0 {
		msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		for _, m := range msgs {
			fds, err := unix.ParseUnixRights(&m)
			if err != nil {
				continue
			}
			for _, f := range fds {
				files = append(files, os.NewFile(uintptr(f), "fd"))
			}
		}
	}
	if n == 0 {
		return files, errors.New("connection closed")
	}
	return files, json.Unmarshal(buf[:n], v)
}

func handleExec(fd int, jobs chan<- *execJob, wake func()) {
	var req ExecRequest
	files, err := RecvMsg(fd, &req)
	if err == nil && req.Copy != "" {
		serveCopy(fd, req, files)
		unix.Close(fd)
		return
	}
	if err != nil || len(req.Args) == 0 || (!req.Tty && len(files) != 3) {
		for _, f := range files {
			f.Close()
		}
		_ = sendReply(fd, ExecReply{Error: "bad exec request", Code: ExitSetup})
		unix.Close(fd)
		return
	}
	job := &execJob{conn: fd, req: req, stdio: files, done: make(chan int, 1)}
	jobs <- job
	if wake != nil {
		wake()
	}
	pid := <-job.done
	for _, f := range files {
		f.Close()
	}
	// Only this goroutine closes the connection (no descriptor reuse).
	defer unix.Close(fd)
	if pid <= 0 || req.Detach {
		return // the reply was sent
	}
	// Signals from the client, until the process ends (the init then
	// sends the exit status and closes the connection).
	for {
		var m ExecReply
		if _, err := RecvMsg(fd, &m); err != nil {
			return
		}
		if m.Signal > 0 {
			_ = unix.Kill(pid, unix.Signal(m.Signal))
		}
	}
}

// startExec runs on the init's locked thread: it resolves the user,
// working directory and program inside the container like for the main
// process, forks the process, and answers the client.
func startExec(p *Process, job *execJob) (pid int) {
	req := job.req
	ep := *p
	ep.resolved = nil
	ep.Args = req.Args
	ep.Env = mergeEnv(p.Env, req.Env)
	ep.Tty = req.Tty
	ep.OOMScoreAdj = nil
	if req.Cwd != "" {
		ep.Cwd = req.Cwd
	}
	if req.User != "" {
		ep.User = req.User
	}
	var cmd *exec.Cmd
	var code int
	var err error
	var master *os.File
	if req.Tty {
		cmd, master, code, err = buildProcess(&ep, nil, true)
	} else {
		cmd, _, code, err = buildProcess(&ep, job.stdio, false)
	}
	if err == nil {
		if err = cmd.Start(); err != nil {
			code = ExitCannotRun
			if errors.Is(err, unix.ENOENT) {
				code = ExitNotFound
			}
			err = fmt.Errorf("exec %s: %w", req.Args[0], err)
		}
	}
	if master != nil {
		defer master.Close()
	}
	if err != nil {
		if cmd != nil {
			closeStdio(cmd)
		}
		_ = sendReply(job.conn, ExecReply{Error: err.Error(), Code: code})
		job.done <- 0
		return 0
	}
	closeStdio(cmd)
	if master != nil {
		_ = sendReply(job.conn, ExecReply{Pid: cmd.Process.Pid}, master)
	} else {
		_ = sendReply(job.conn, ExecReply{Pid: cmd.Process.Pid})
	}
	job.done <- cmd.Process.Pid
	return cmd.Process.Pid
}

// mergeEnv applies KEY=VALUE overrides to base.
func mergeEnv(base, over []string) []string {
	out := append([]string{}, base...)
	for _, o := range over {
		k, _, _ := splitEnv(o)
		replaced := false
		for i, e := range out {
			if ek, _, _ := splitEnv(e); ek == k {
				out[i], replaced = o, true
				break
			}
		}
		if !replaced {
			out = append(out, o)
		}
	}
	return out
}

func splitEnv(e string) (string, string, bool) {
	for i := 0; i < len(e); i++ {
		if e[i] == '=' {
			return e[:i], e[i+1:], true
		}
	}
	return e, "", false
}
