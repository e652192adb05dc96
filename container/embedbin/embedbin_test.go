package embedbin

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestPathInstallsOnceAndReplacesOldBuilds(t *testing.T) {
	run := t.TempDir()
	data := []byte("#!/bin/sh\nexit 0\n")
	sum := sha256.Sum256(data)
	hexsum := hex.EncodeToString(sum[:])
	old := filepath.Join(run, "bin", "prog-0000000000000000")
	if err := os.MkdirAll(filepath.Dir(old), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(old, []byte("old"), 0o500); err != nil {
		t.Fatal(err)
	}
	p, err := Path(data, hexsum, run, "prog")
	if err != nil || p != filepath.Join(run, "bin", "prog-"+hexsum[:16]) {
		t.Fatalf("Path: %q %v", p, err)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("the copy of an earlier build is still there: %v", err)
	}
	if _, err := Path(data, "ff"+hexsum[2:], run, "other"); err == nil {
		t.Error("a wrong checksum must be refused")
	}
}

// A run directory on a noexec file system (a hardened /tmp) is passed over.
func TestPathAvoidsNoexec(t *testing.T) {
	run := t.TempDir()
	if err := unix.Mount("tmpfs", run, "tmpfs", unix.MS_NOEXEC, "size=1m"); err != nil {
		t.Skipf("cannot mount a noexec tmpfs here: %v", err)
	}
	defer unix.Unmount(run, unix.MNT_DETACH)
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	data := []byte("x")
	sum := sha256.Sum256(data)
	p, err := Path(data, hex.EncodeToString(sum[:]), run, "prog")
	if err != nil || filepath.Dir(p) != filepath.Join(cache, "unroot", "bin") {
		t.Errorf("Path on a noexec run directory: %q %v, want it under %s", p, err, cache)
	}
}
