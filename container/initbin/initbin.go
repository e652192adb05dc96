// Package initbin provides the executable the container's init runs from:
// the small unroot-init binary embedded at build time (make build), cached
// once per user under the run directory, or else unroot itself.
package initbin

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
)

// Path returns the program to exec for the container's init. runDir is the
// user's private run directory; self is unroot's own path, the fallback
// when no init binary is embedded (a plain `go build`).
func Path(runDir, self string) string {
	if len(embedded) == 0 {
		return self
	}
	sum := embeddedSum
	dir := filepath.Join(runDir, "bin")
	p := filepath.Join(dir, "unroot-init-"+sum[:16])
	if st, err := os.Stat(p); err == nil && st.Size() == int64(len(embedded)) {
		return p
	}
	if err := install(dir, p); err != nil {
		return self
	}
	return p
}

// install writes the embedded binary to p atomically, verifying its
// checksum, so that a concurrent or interrupted run never execs half a file.
func install(dir, p string) error {
	got := sha256.Sum256(embedded)
	if hex.EncodeToString(got[:]) != embeddedSum {
		return fmt.Errorf("embedded unroot-init is corrupt")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".unroot-init-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.ReadFrom(bytes.NewReader(embedded)); err != nil {
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
