package cinit

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/unroot/unroot/userns"
)

// StageFresh is the init of a container it keeps alone (Process.OwnLog)
// once the container is set up: the setup's init re-executes itself as
// this stage before it starts the process, so that what idles for the
// container's lifetime is a Go runtime that never held the setup's
// objects. That costs ~5 ms of start-up and saves ~400 kB in every idle
// container: the setup leaves ~600 kB of its heap behind, and the
// collection that would give it back touches ~300 kB of the collector's
// metadata for good. It runs without a collector (GOGC=off) until its
// memory grows by gcHeadroom.
const StageFresh = "init-fresh"

// envComm passes the setup's process name on to StageFresh.
const envComm = "_UNROOT_INIT_COMM"

// execFresh re-executes the init as StageFresh with p (and the exec
// server's socket) on the spec descriptor, in a memfd. It returns only if
// that failed, with the descriptors as they were: this init goes on. No
// process of the container runs yet, so none can reach us in the moment
// between the exec and StageFresh making itself non-dumpable again.
func execFresh(p *Process, execFD int) {
	p.ExecFD = execFD
	// What we hold now is more than the fresh init will: its limit.
	p.MemLimit = runtimeMemory() + gcHeadroom
	// Resolved here, the fresh init reads no /etc/passwd to start it; if
	// that fails, the fresh init fails the same way and says so.
	if r, _, err := resolveProcess(p); err == nil {
		p.resolved = r
	}
	b := encodeFresh(p)
	fd, err := unix.MemfdCreate("unroot-spec", unix.MFD_CLOEXEC)
	if err != nil {
		return
	}
	_, err = unix.Write(fd, b)
	if err == nil {
		_, err = unix.Seek(fd, 0, 0)
	}
	if err == nil {
		err = unix.Dup3(fd, initSpecFD, 0)
	}
	// Closed before the loop below: the memfd may have taken the number
	// of a descriptor not passed (memory.events), which the loop would
	// then keep open across the exec.
	unix.Close(fd)
	if err != nil {
		return
	}
	keep := append([]int{initSpecFD, initStartedFD, initLogFD, initLogOldFD, initExitFD, initMemEventsFD, initHandoffFD, execFD}, netFDs(p)...)
	for _, fd := range keep {
		// EBADF for those not passed (memory.events without limits,
		// the exec socket of a container without one).
		_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0)
	}
	var comm [16]byte
	_ = unix.Prctl(unix.PR_GET_NAME, uintptr(unsafe.Pointer(&comm[0])), 0, 0, 0)
	env := []string{userns.EnvStage + "=" + StageFresh, "GOGC=off", "GOMAXPROCS=1", envComm + "=" + unix.ByteSliceToString(comm[:])}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, userns.EnvStage+"=") && !strings.HasPrefix(e, "GOGC=") && !strings.HasPrefix(e, "GOMAXPROCS=") && !strings.HasPrefix(e, envComm+"=") {
			env = append(env, e)
		}
	}
	// Our binary is not in the container's filesystem, but /proc/self/exe
	// still leads to it.
	_ = unix.Exec("/proc/self/exe", []string{os.Args[0]}, env)
	for _, fd := range keep {
		unix.CloseOnExec(fd)
	}
	p.ExecFD, p.MemLimit, p.resolved = 0, 0, nil
}

// FreshMain is StageFresh's main: it starts the container's process and
// stays as its init, as Main does after the setup.
func FreshMain() int {
	// An exec makes a process dumpable again: first of all, undo it.
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	everyThread = true
	// The exec named us "exe", after /proc/self/exe: take the setup's name.
	if name, err := unix.BytePtrFromString(os.Getenv(envComm)); err == nil {
		_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(name)), 0, 0, 0)
	}
	unix.CloseOnExec(initStartedFD)
	closeOwnFDs()
	p, err := readSpec(initSpecFD)
	if err != nil {
		return fail(ExitSetup, fmt.Errorf("reading the container spec: %w", err))
	}
	closeNetFDs(p)
	execFD := p.ExecFD
	if execFD <= 0 {
		execFD = -1
	}
	unix.CloseOnExec(execFD)
	w, err := newWaker()
	if err != nil {
		return fail(ExitSetup, err)
	}
	return start(p, nil, func() {}, w, execFD)
}

// readSpec reads the spec from the memfd fd and closes it.
func readSpec(fd int) (*Process, error) {
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	b := make([]byte, st.Size)
	for n := 0; n < len(b); {
		m, err := unix.Pread(fd, b[n:], int64(n))
		if err != nil {
			return nil, err
		}
		if m == 0 {
			return nil, errors.New("short spec")
		}
		n += m
	}
	return decodeFresh(b)
}
