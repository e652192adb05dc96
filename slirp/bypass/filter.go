// Package bypass lets a container's TCP connections to the host's loopback
// (host.containers.internal) skip the user-mode network stack: connect(2)
// in the container is trapped with a seccomp user notification, and the
// supervisor, running on the host side (A) in the host's network
// namespace, creates and connects a socket to the host's 127.0.0.1 and
// installs it in place of the container's socket (SECCOMP_IOCTL_NOTIF_ADDFD
// with SECCOMP_ADDFD_FLAG_SETFD). From then on the data path is the host
// kernel's loopback. Every other connect(2) continues unchanged.
//
// Kernel: Linux >= 5.9 (user notification 5.0, CONTINUE 5.5, pidfd_getfd
// 5.6, ADDFD 5.9). InstallFilter fails cleanly on older kernels and the
// container runs without the bypass.
//
// See docs/design.md ("Host-loopback bypass") for what it changes for the
// container's programs.
package bypass

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// auditArch is the AUDIT_ARCH_* value of this binary's native syscall ABI
// (0 where the bypass is not supported).
func auditArch() uint32 {
	switch runtime.GOARCH {
	case "amd64":
		return unix.AUDIT_ARCH_X86_64
	case "arm64":
		return unix.AUDIT_ARCH_AARCH64
	}
	return 0
}

// program is the seccomp filter: notify on connect(2) of the native ABI,
// allow everything else (other ABIs, e.g. i386 binaries, are not trapped:
// their connections keep the user-mode path).
func program(arch uint32) []unix.SockFilter {
	const (
		ldAbs = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		ret   = unix.BPF_RET | unix.BPF_K
	)
	return []unix.SockFilter{
		{Code: ldAbs, K: 4},                            // seccomp_data.arch
		{Code: jeq, Jt: 0, Jf: 3, K: arch},             // other ABI: allow
		{Code: ldAbs, K: 0},                            // seccomp_data.nr
		{Code: jeq, Jt: 0, Jf: 1, K: unix.SYS_CONNECT}, // not connect: allow
		{Code: ret, K: unix.SECCOMP_RET_USER_NOTIF},    // connect: ask the supervisor
		{Code: ret, K: unix.SECCOMP_RET_ALLOW},
	}
}

// InstallFilter loads the filter on the calling thread (which must have
// no_new_privs set, and be locked: only it and the processes it forks
// afterwards are filtered) and returns the notification listener
// (close-on-exec) for the supervisor.
func InstallFilter() (int, error) {
	arch := auditArch()
	if arch == 0 {
		return -1, fmt.Errorf("bypass: not supported on %s", runtime.GOARCH)
	}
	// The filter itself loads from 5.0 on, but without CONTINUE (5.5) and
	// ADDFD (5.9) every connect(2) would wait for an answer that cannot
	// be given: refuse before loading anything.
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil || !kernelAtLeast(unix.ByteSliceToString(uts.Release[:]), 5, 9) {
		return -1, fmt.Errorf("bypass: needs Linux 5.9 or later (this is %s)", unix.ByteSliceToString(uts.Release[:]))
	}
	prog := program(arch)
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	fd, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_NEW_LISTENER, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if errno != 0 {
		return -1, fmt.Errorf("bypass: seccomp user notification: %w", errno)
	}
	return int(fd), nil
}

// kernelAtLeast compares a kernel release ("6.1.0-18-amd64") with
// major.minor.
func kernelAtLeast(release string, major, minor int) bool {
	var ma, mi int
	if n, _ := fmt.Sscanf(release, "%d.%d", &ma, &mi); n < 2 {
		return false
	}
	return ma > major || (ma == major && mi >= minor)
}

// errUnsupported reports a socket the bypass leaves alone.
var errUnsupported = errors.New("not bypassed")
