package resolve

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestProcessDockerRules(t *testing.T) {
	img := &Image{Config: ImageConfig{
		Entrypoint: []string{"/entry"}, Cmd: []string{"default"},
		Env: []string{"A=1", "PATH=/img"}, WorkingDir: "/w", User: "app",
	}}
	id := strings.Repeat("ab", 32)
	p, err := Process(Request{ID: id, Image: "i", Cmd: []string{"x"}, Env: []string{"A=2", "B=3"}}, img)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Args, []string{"/entry", "x"}) || p.Cwd != "/w" || p.User != "app" || p.Hostname != id[:12] {
		t.Errorf("args/cwd/user/hostname: %+v", p)
	}
	if !slices.Equal(p.Env, []string{"A=2", "PATH=/img", "B=3", "HOSTNAME=" + id[:12]}) {
		t.Errorf("env: %q", p.Env)
	}
	// --entrypoint "" drops the image's entrypoint and its Cmd.
	empty := ""
	if _, err := Process(Request{ID: id, Image: "i", Entrypoint: &empty}, img); err == nil {
		t.Error("no command at all must be an error")
	}
	p, _ = Process(Request{ID: id, Image: "i", Tty: true}, &Image{Config: ImageConfig{Cmd: []string{"sh"}}})
	if p.Cwd != "/" || !slices.Contains(p.Env, "TERM=xterm") || !strings.HasPrefix(p.Env[0], "PATH=") {
		t.Errorf("defaults: %+v", p)
	}
}

func TestWriteEtcFiles(t *testing.T) {
	dir := t.TempDir()
	files, err := WriteEtcFiles(dir, "box", Etc{Net: "none", DNS: []string{"192.0.2.53"}, AddHosts: []string{"db:192.0.2.7"}})
	if err != nil {
		t.Fatal(err)
	}
	read := func(p string) string { b, _ := os.ReadFile(p); return string(b) }
	if files["/etc/hostname"] != filepath.Join(dir, "hostname") || read(files["/etc/hostname"]) != "box\n" {
		t.Errorf("hostname: %v", files)
	}
	if h := read(files["/etc/hosts"]); !strings.Contains(h, "127.0.1.1\tbox\n") || !strings.Contains(h, "192.0.2.7\tdb\n") {
		t.Errorf("hosts:\n%s", h)
	}
	if r := read(files["/etc/resolv.conf"]); r != "nameserver 192.0.2.53\n" {
		t.Errorf("resolv.conf:\n%s", r)
	}
}
