package image

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigureFlagsOverConfig(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	cfgDir := filepath.Join(home, "cfg")
	os.MkdirAll(cfgDir, 0o700)
	conf := `root = "~/imgs"
runroot = "/tmp/rr"
overlay = "fuse"
image_stores = ["/shared/a"]
`
	if err := os.WriteFile(filepath.Join(cfgDir, "storage.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	p := Paths{Data: filepath.Join(home, "data"), Run: filepath.Join(home, "run"), Config: cfgDir}
	o, err := Configure(&p, Settings{})
	if err != nil {
		t.Fatal(err)
	}
	if o.GraphRoot != filepath.Join(home, "imgs") || p.Run != "/tmp/rr" || o.Overlay != "fuse" || len(o.ImageStores) != 1 || o.ImageStores[0] != "/shared/a" {
		t.Fatalf("config not applied: %+v, run %s", o, p.Run)
	}
	p = Paths{Data: filepath.Join(home, "data"), Run: filepath.Join(home, "run"), Config: cfgDir}
	o, err = Configure(&p, Settings{Root: "/x/root", RunRoot: "/x/run", Overlay: "vfs", ImageStores: []string{"/y"}})
	if err != nil {
		t.Fatal(err)
	}
	if o.GraphRoot != "/x/root" || p.Run != "/x/run" || o.Overlay != "vfs" || o.ImageStores[0] != "/y" {
		t.Fatalf("flags did not win: %+v, run %s", o, p.Run)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for conf, want := range map[string]string{
		`rooot = "/x"`:               "unknown keys rooot",
		`overlay = "overlay2"`:       "use auto, native, fuse or vfs",
		`image_stores = ["rel/dir"]`: "not an absolute path",
		`root = `:                    "storage.conf",
	} {
		os.WriteFile(filepath.Join(dir, "storage.conf"), []byte(conf+"\n"), 0o600)
		if _, err := LoadConfig(dir); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one mentioning %q", conf, err, want)
		}
	}
	if c, err := LoadConfig(t.TempDir()); err != nil || c.File != "" {
		t.Errorf("no config file: %+v, %v", c, err)
	}
}
