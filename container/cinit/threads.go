package cinit

import (
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Capabilities, the bounding set, no_new_privs and the parent-death
// signal are per thread in Linux. The setup's init locks its main
// goroutine to the main thread, drops them there and forks from there.
// The fresh init (fresh.go) changes them on every thread of the process
// instead (syscall.AllThreadsSyscall), so that it needs no locked thread:
// a locked thread costs the runtime's template thread and a second worker
// (~45 kB in every idle container), and any thread may fork. Each such
// call stops the world and signals every thread (~43 µs here): the ~30 of
// a start add ~1.3 ms to `run -d`, never to `run --rm` (its init is the
// setup's, locked).
var everyThread bool

// threadsSyscall makes a per-thread syscall where it must take effect: on
// every thread, or on the calling (locked) one.
func threadsSyscall(trap, a1, a2, a3 uintptr) error {
	var errno syscall.Errno
	if everyThread {
		_, _, errno = syscall.AllThreadsSyscall(trap, a1, a2, a3)
		if errno == unix.ENOTSUP {
			// A runtime that cannot (cgo): the main thread, locked, as
			// the setup's init does.
			runtime.LockOSThread()
			everyThread = false
		}
	}
	if !everyThread {
		_, _, errno = unix.RawSyscall(trap, a1, a2, a3)
	}
	if errno != 0 {
		return errno
	}
	return nil
}

func prctlThreads(option int, arg uintptr) error {
	return threadsSyscall(unix.SYS_PRCTL, uintptr(option), arg, 0)
}

func capsetThreads(hdr *unix.CapUserHeader, data *unix.CapUserData) error {
	err := threadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(hdr)), uintptr(unsafe.Pointer(data)), 0)
	runtime.KeepAlive(hdr)
	runtime.KeepAlive(data)
	return err
}
