package fastrun

import (
	"os"
	"path/filepath"
	"strings"
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

// The list flags read as pflag's StringArray and StringSlice do, for the
// values the fast path keeps.
func TestParseRunLists(t *testing.T) {
	f, _, err := parseRun([]string{"--rm", "-e", "A=1,B=2", "--env=C", "--cap-add", "NET_ADMIN,SYS_TIME",
		"--cap-add=CHOWN", "--cap-drop", "", "--dns", "1.1.1.1", "-p", "80:80", "--tmpfs", "/t:size=1m,mode=1777", "img"})
	if err != nil || f.quoted {
		t.Fatal(err, f.quoted)
	}
	for _, c := range []struct {
		got, want []string
	}{
		{f.env, []string{"A=1,B=2", "C"}},
		{f.capAdd, []string{"NET_ADMIN", "SYS_TIME", "CHOWN"}},
		{f.capDrop, nil},
		{f.dns, []string{"1.1.1.1"}},
		{f.publish, []string{"80:80"}},
		{f.tmpfs, []string{"/t:size=1m,mode=1777"}},
	} {
		if strings.Join(c.got, "|") != strings.Join(c.want, "|") || len(c.got) != len(c.want) {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	// pflag reads a slice as CSV: a quote is the full unroot's to read.
	if f, _, _ := parseRun([]string{"--rm", "--cap-add", `"A,B"`, "img"}); !f.quoted {
		t.Error("a quoted slice value must be left to the full unroot")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
