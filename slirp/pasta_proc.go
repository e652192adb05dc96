package slirp

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// pasta daemonises (double fork), so RootlessKit keeps no handle on it and
// its driver has no cleanup. findPasta locates the daemon started for
// childPID (our uid, argv ends with the pid, --config-net) so Close can stop
// it. (pasta also quits by itself once the namespace's process is gone on
// recent passt releases.)
func findPasta(childPID int) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if isPastaFor(pid, childPID) {
			return pid
		}
	}
	return 0
}

func isPastaFor(pid, childPID int) bool {
	var st syscall.Stat_t
	if syscall.Stat(filepath.Join("/proc", strconv.Itoa(pid)), &st) != nil || int(st.Uid) != os.Getuid() {
		return false
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return false
	}
	args := bytes.Split(bytes.TrimRight(b, "\x00"), []byte{0})
	if len(args) < 2 {
		return false
	}
	base := filepath.Base(string(args[0]))
	if base != "pasta" && base != "pasta.avx2" && base != "passt" {
		return false
	}
	if string(args[len(args)-1]) != strconv.Itoa(childPID) {
		return false
	}
	for _, a := range args {
		if string(a) == "--config-net" {
			return true
		}
	}
	return false
}

func killPasta(pid int) {
	// re-check the identity: the pid may have been reused
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil || !bytes.Contains(b, []byte("--config-net")) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 100; i++ {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}
