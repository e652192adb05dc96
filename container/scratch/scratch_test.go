package scratch

import (
	"os"
	"path/filepath"
	"testing"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestSweepKeepsLiveContainersAndRmiSeesThem(t *testing.T) {
	tmp := t.TempDir()
	lower := t.TempDir()
	lock, err := Register(tmp, filepath.Join(tmp, "live"), "img1", []string{lower})
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	// A directory left by a monitor killed with SIGKILL: its lock is free.
	dead := filepath.Join(tmp, "dead")
	must(t, os.MkdirAll(filepath.Join(dead, "upper"), 0o700))
	must(t, os.WriteFile(filepath.Join(dead, "image"), []byte("img1"), 0o600))

	release, err := Guard(tmp, true)
	must(t, err)
	if !ImageInUse(tmp, "img1") || ImageInUse(tmp, "img2") {
		t.Error("ImageInUse: want img1 in use (the live container), img2 not")
	}
	// The guard is held (as rmi holds it): the sweep waits for a later run.
	Sweep(tmp)
	if _, err := os.Stat(dead); err != nil {
		t.Errorf("swept while the guard was held: %v", err)
	}
	release()
	Sweep(tmp)
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("the dead container's directory is still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(tmp, "live")); err != nil {
		t.Errorf("the live container's directory was swept: %v", err)
	}
	// A record whose layers went away cannot register.
	if _, err := Register(tmp, filepath.Join(tmp, "late"), "x", []string{filepath.Join(lower, "gone")}); err == nil {
		t.Error("Register with a missing layer must fail")
	}
}
