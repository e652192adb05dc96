package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// An image file owned by an id beyond the user's 65536-id range: the load
// fails naming the file, the id and the fix, and stores nothing.
func TestImageIDBeyondRangeFailsClearly(t *testing.T) {
	t.Parallel()
	if os.Getuid() != 0 {
		t.Skip("building the fixture (a file owned by uid 70000) needs root")
	}
	if suite.user.subuid.Count == 0 || suite.user.subuid.Count > 70000 {
		t.Skipf("needs a subuid range smaller than 70000 ids (have %d)", suite.user.subuid.Count)
	}
	dir := t.TempDir()
	// The test user must reach the layout: open up t.TempDir's two levels.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	layout := filepath.Join(dir, "oci")
	sh := `set -e
cp -a "$1" "$2"
cd "$(dirname "$2")"
umoci unpack --image oci:busybox:latest b >/dev/null
touch b/rootfs/bigfile
chown 70000:70000 b/rootfs/bigfile
umoci repack --image oci:bigid:latest b >/dev/null
umoci gc --layout oci
rm -rf b
chmod -R a+rX "$2" "$(dirname "$2")"`
	if out, err := exec.Command("sh", "-c", sh, "sh", suite.layout, layout).CombinedOutput(); err != nil {
		t.Fatalf("building the fixture: %v\n%s", err, out)
	}
	s := sandboxFor(t, nil)
	s.run("load", "-i", layout).wantCode(t, 125).wantStderr(t, "/bigfile", "uid 70000", "usermod --add-subuids")
	if r := s.run("images").ok(t); strings.Contains(r.stdout, "bigid") {
		t.Errorf("a failed load left the image behind:\n%s", r)
	}
}
