// Package paths computes unroot's per-user directories. It is separate from
// package image, and light, because the fast run path needs them without
// loading containers/image.
package paths

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Paths are the per-user locations unroot uses.
type Paths struct {
	Data    string // persistent: store, container configs
	Run     string // runtime state, lost on reboot
	Config  string
	Warning string // set when a fallback was taken the user should know of
}

// Default follows the XDG base directories. XDG_RUNTIME_DIR is often
// unset (su -, ssh on HPC nodes, batch jobs), so the run directory falls
// back to a private directory under /tmp.
func Default() Paths {
	home := os.Getenv("HOME")
	var p Paths
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		p.Data = filepath.Join(d, "unroot")
	} else {
		p.Data = filepath.Join(home, ".local", "share", "unroot")
	}
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" {
		p.Config = filepath.Join(d, "unroot")
	} else {
		p.Config = filepath.Join(home, ".config", "unroot")
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" && writableDir(d) {
		p.Run = filepath.Join(d, "unroot")
	} else {
		p.Run = filepath.Join(os.TempDir(), "unroot-"+strconv.Itoa(HostUID()))
	}
	return p
}

// HostUID is the caller's uid on the host, also from inside unroot's user
// namespace (where os.Getuid is 0).
func HostUID() int {
	if v, err := strconv.Atoi(os.Getenv("_CONTAINERS_ROOTLESS_UID")); err == nil {
		return v
	}
	return os.Getuid()
}

func writableDir(d string) bool {
	st, err := os.Stat(d)
	if err != nil || !st.IsDir() {
		return false
	}
	return unix.Access(d, unix.W_OK|unix.X_OK) == nil
}

// EnsureRunDir creates the run directory private to the user, and refuses
// one that someone else created first (a /tmp squatter).
func EnsureRunDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating the run directory %s: %w", dir, err)
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !st.IsDir() || OwnerOf(st) != os.Getuid() && os.Getuid() != 0 {
		return fmt.Errorf("run directory %s is not a directory owned by you: remove it or set XDG_RUNTIME_DIR to a private directory", dir)
	}
	return nil
}

// OwnerOf is the uid owning a file, -1 when unknown.
func OwnerOf(st os.FileInfo) int {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return int(s.Uid)
	}
	return -1
}
