package userns

import (
	"math"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// CloseInherited marks every descriptor above stderr that unroot's caller
// left open close-on-exec, so that none reaches a container: a CI
// runner's or an IDE's pipes, a shell's descriptors. A detached container
// would hold them for its lifetime, and whoever waits for EOF on such a
// pipe (a CI step collecting output) would hang until the container ends.
// Podman's conmon closes them too (unless --preserve-fds). Call it first
// thing when a user runs unroot, not in the stages it starts itself,
// which inherit their descriptors on purpose.
func CloseInherited() {
	if unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC) == nil {
		return
	}
	// Linux < 5.11.
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			unix.CloseOnExec(fd)
		}
	}
}
