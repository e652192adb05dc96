package slirp

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The helpers are asked once per binary and boot: a second process (here a
// second PATH spelling, which the in-process memo keys on) reads the
// answer from the run directory; a changed binary is asked again.
func TestProbeCache(t *testing.T) {
	dir := t.TempDir()
	cache := filepath.Join(dir, "run", "netprobe.json")
	old := probeCachePath
	probeCachePath = func() string { return cache }
	defer func() { probeCachePath = old }()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(dir, "ran")
	script := "#!/bin/sh\necho run >> " + marker + "\necho 'pasta 2020_01_01'\n"
	if err := os.WriteFile(filepath.Join(bin, "pasta"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	runs := func() int { b, _ := os.ReadFile(marker); return strings.Count(string(b), "run") }
	check := func(path string) error {
		t.Setenv("PATH", path)
		return checkPasta()
	}
	if err := check(bin); err == nil || !strings.Contains(err.Error(), "too old") {
		t.Fatalf("first probe: %v", err)
	}
	if runs() != 1 {
		t.Fatalf("pasta ran %d times", runs())
	}
	if err := check(bin + "/."); err == nil || !strings.Contains(err.Error(), "too old") {
		t.Fatalf("cached answer: %v", err)
	}
	if runs() != 1 {
		t.Errorf("the cached answer ran pasta again (%d runs)", runs())
	}
	// An upgrade: asked again.
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(filepath.Join(bin, "pasta"), later, later); err != nil {
		t.Fatal(err)
	}
	_ = check(bin + "/./.")
	if runs() != 2 {
		t.Errorf("a changed pasta was not asked again (%d runs)", runs())
	}
}
