// Package embedbin installs a program embedded in unroot (the container's
// init, the full unroot inside the small user-facing binary) as a file it
// can exec: once per user and build, under the run directory.
package embedbin

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/unroot/unroot/image/paths"
)

// Path returns DIR/NAME-SUM16, writing data there first when it is not
// there yet. sum is data's sha256 (hex), computed at build time. DIR is
// RUNDIR/bin unless that file system is mounted noexec (/tmp often is on
// hardened and HPC machines), then the user's cache directory, then
// /var/tmp/unroot-UID/bin.
func Path(data []byte, sum, runDir, name string) (string, error) {
	if len(sum) < 16 {
		return "", fmt.Errorf("embedded %s has no checksum", name)
	}
	dir := execDir(runDir)
	p := filepath.Join(dir, name+"-"+sum[:16])
	if st, err := os.Stat(p); err == nil && st.Size() == int64(len(data)) {
		return p, nil
	}
	if err := install(data, sum, dir, p); err != nil {
		return "", fmt.Errorf("installing %s in %s: %w", name, dir, err)
	}
	// Copies from earlier builds only take room (the run directory is
	// often a tmpfs); a process still running one keeps its inode.
	if old, err := filepath.Glob(filepath.Join(dir, name+"-*")); err == nil {
		for _, o := range old {
			if o != p {
				_ = os.Remove(o)
			}
		}
	}
	return p, nil
}

func execDir(runDir string) string {
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		cache = filepath.Join(os.Getenv("HOME"), ".cache")
	}
	dirs := []string{
		filepath.Join(runDir, "bin"),
		filepath.Join(cache, "unroot", "bin"),
		filepath.Join("/var/tmp", "unroot-"+strconv.Itoa(paths.HostUID()), "bin"),
	}
	for _, d := range dirs {
		if !noexec(d) {
			return d
		}
	}
	return dirs[0]
}

// noexec says whether dir, or its nearest existing parent, is on a file
// system mounted noexec.
func noexec(dir string) bool {
	for d := dir; ; d = filepath.Dir(d) {
		var st unix.Statfs_t
		if err := unix.Statfs(d, &st); err == nil {
			return st.Flags&unix.ST_NOEXEC != 0
		}
		if d == filepath.Dir(d) {
			return false
		}
	}
}

// install writes data to p atomically, verifying its checksum, so that a
// concurrent or interrupted run never execs half a file.
func install(data []byte, sum, dir, p string) error {
	got := sha256.Sum256(data)
	if hex.EncodeToString(got[:]) != sum {
		return fmt.Errorf("the embedded copy is corrupt")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".install-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.ReadFrom(bytes.NewReader(data)); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o500); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), p)
}
