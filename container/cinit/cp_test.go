package cinit

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// A hostile archive (from a container, for `unroot cp` out of it) cannot
// write outside the destination: not with "..", nor through a symlink.
func TestExtractTarConfined(t *testing.T) {
	base := t.TempDir()
	dest := filepath.Join(base, "dest")
	outside := filepath.Join(base, "outside")
	if err := os.Mkdir(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, body string) {
		h.Size = int64(len(body))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write([]byte(body))
	}
	add(&tar.Header{Name: "top/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(&tar.Header{Name: "top/../../outside", Typeflag: tar.TypeReg, Mode: 0o644}, "dotdot")
	add(&tar.Header{Name: "top/link", Typeflag: tar.TypeSymlink, Linkname: outside}, "")
	add(&tar.Header{Name: "top/link/through", Typeflag: tar.TypeReg, Mode: 0o644}, "symlink")
	add(&tar.Header{Name: "top/ok", Typeflag: tar.TypeReg, Mode: 0o640}, "fine")
	tw.Close()
	if err := ExtractTar(&buf, dest, "renamed"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(outside); err == nil {
		t.Fatalf("wrote outside the destination: %s", outside)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "renamed", "ok")); err != nil || string(b) != "fine" {
		t.Errorf("renamed/ok: %q %v", b, err)
	}
}

func TestTarRoundTrip(t *testing.T) {
	src := filepath.Join(t.TempDir(), "tree")
	_ = os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	_ = os.WriteFile(filepath.Join(src, "sub", "f"), []byte("x"), 0o600)
	_ = os.Symlink("sub/f", filepath.Join(src, "l"))
	var buf bytes.Buffer
	if err := WriteTar(&buf, src, "tree"); err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	if err := ExtractTar(&buf, dest, ""); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dest, "tree", "sub", "f"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("file: %v %v", st, err)
	}
	if l, _ := os.Readlink(filepath.Join(dest, "tree", "l")); l != "sub/f" {
		t.Errorf("symlink: %q", l)
	}
}

func TestTmpfsOptions(t *testing.T) {
	f, d := TmpfsOptions("size=1m,exec,ro,mode=1777")
	if f&unix.MS_NOEXEC != 0 || f&unix.MS_RDONLY == 0 || f&unix.MS_NOSUID == 0 || d != "size=1m,mode=1777" {
		t.Errorf("TmpfsOptions: %#x %q", f, d)
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"A=1", "B=2"}, []string{"B=3", "C=4"})
	if len(got) != 3 || got[1] != "B=3" || got[2] != "C=4" {
		t.Errorf("mergeEnv: %q", got)
	}
}
