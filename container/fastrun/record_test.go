package fastrun

import (
	"os"
	"path/filepath"
	"testing"
)

func TestKeyIgnoresLogLevelOnly(t *testing.T) {
	base := Key(nil, "busybox")
	for _, g := range [][]string{{"--log-level=debug"}, {"--log-level", "info"}} {
		if Key(g, "busybox") != base {
			t.Errorf("Key(%q) differs from Key(nil)", g)
		}
	}
	for _, g := range [][]string{{"--root", "/x"}, {"--overlay=fuse"}} {
		if Key(g, "busybox") == base {
			t.Errorf("Key(%q) must differ from Key(nil)", g)
		}
	}
	if Key(nil, "debian") == base {
		t.Error("two references, one key")
	}
}

func TestRecordStaleWhenAStampedFileChanges(t *testing.T) {
	dir := t.TempDir()
	lower := filepath.Join(dir, "layer")
	stamped := filepath.Join(dir, "images.json")
	must(t, os.Mkdir(lower, 0o755))
	must(t, os.WriteFile(stamped, []byte("[]"), 0o644))
	rec := &Record{ImageID: "abc", GraphRoot: dir, RunDir: dir, Lower: []string{lower},
		Stamps: []Stamp{StampOf(stamped), StampOf(filepath.Join(dir, "absent.conf"))}}
	must(t, Save(dir, "k", rec))
	if _, err := Load(dir, "k"); err != nil {
		t.Fatalf("fresh record: %v", err)
	}
	// A config file that appears, a list that changes, a layer that goes:
	// each makes the record stale.
	must(t, os.WriteFile(filepath.Join(dir, "absent.conf"), nil, 0o644))
	if _, err := Load(dir, "k"); err == nil {
		t.Error("a new config file must make the record stale")
	}
	must(t, os.Remove(filepath.Join(dir, "absent.conf")))
	must(t, os.WriteFile(stamped, []byte("[{}]"), 0o644))
	if _, err := Load(dir, "k"); err == nil {
		t.Error("a changed images.json must make the record stale")
	}
	rec.Stamps = []Stamp{StampOf(stamped)}
	must(t, Save(dir, "k", rec))
	must(t, os.Remove(lower))
	if _, err := Load(dir, "k"); err == nil {
		t.Error("a missing layer must make the record stale")
	}
}

func TestParseRunSubset(t *testing.T) {
	f, fs, err := parseRun([]string{"--rm", "-it", "-e", "A=1", "--net=none", "img", "sh", "-c", "x"})
	if err != nil || !f.rm || !f.tty || !f.interactive || f.net != "none" || fs.Arg(0) != "img" || len(fs.Args()) != 4 {
		t.Fatalf("parseRun: %+v %v %v", f, fs.Args(), err)
	}
	// A flag the fast path does not know is the full unroot's to handle.
	if _, _, err := parseRun([]string{"--rm", "-v", "/a:/b", "img"}); err == nil {
		t.Error("-v must not parse in the fast path")
	}
	if g, rest, ok := globalFlags([]string{"--root", "/r", "run", "--rm", "img"}); !ok || len(g) != 2 || rest[0] != "run" {
		t.Errorf("globalFlags: %q %q %v", g, rest, ok)
	}
	if _, _, ok := globalFlags([]string{"--bogus", "run"}); ok {
		t.Error("an unknown global flag must not parse")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestSweepKeepsLiveContainersAndRmiSeesThem(t *testing.T) {
	tmp := t.TempDir()
	lower := t.TempDir()
	live := &Spec{ID: "live", ImageID: "img1", Lower: []string{lower}}
	lock, err := register(tmp, filepath.Join(tmp, live.ID), live)
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
	if _, err := register(tmp, filepath.Join(tmp, "late"), &Spec{ID: "late", ImageID: "x", Lower: []string{filepath.Join(lower, "gone")}}); err == nil {
		t.Error("register with a missing layer must fail")
	}
}
