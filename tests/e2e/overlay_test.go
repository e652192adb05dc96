package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Issue #4: an overlay strategy that works on every host (native kernel
// overlay, fuse-overlayfs, vfs), shared read-only image stores, and a store
// that survives kills, concurrency and a full disk.

// fsWorkload checks writing, deleting a lower file and renaming a lower
// directory in busybox, and prints the root's fstype first.
const fsWorkload = `awk '$2=="/"{print $3}' /proc/mounts
echo data > /new && cat /new
echo more >> /etc/passwd && tail -n1 /etc/passwd
rm /linuxrc && test ! -e /linuxrc && echo deleted
mkdir -p /home/sub && touch /home/sub/f && mv /home /home2 && test -f /home2/sub/f && test ! -e /home && echo renamed
rm -r /usr && test ! -e /usr && echo rmdir`

func TestOverlayStrategies(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	for _, c := range []struct{ overlay, fstype string }{
		{"native", "overlay"},
		{"fuse", "fuse.fuse-overlayfs"},
		{"vfs", ""}, // the store's own file system
	} {
		root := filepath.Join(s.home, "store-"+c.overlay)
		g := []string{"--root", root, "--overlay", c.overlay}
		s.run(append(g, "pull", "-q", "--tls-verify=false", busybox())...).ok(t)
		r := s.run(append(g, "run", "--rm", "--net=none", busybox(), "sh", "-c", fsWorkload)...).ok(t)
		lines := strings.Split(r.out(), "\n")
		want := []string{"data", "more", "deleted", "renamed", "rmdir"}
		if len(lines) != 6 || strings.Join(lines[1:], " ") != strings.Join(want, " ") {
			t.Errorf("%s: unexpected output:\n%s", c.overlay, r)
			continue
		}
		switch {
		case c.fstype != "" && lines[0] != c.fstype:
			t.Errorf("%s: / is %q, want %q", c.overlay, lines[0], c.fstype)
		case c.fstype == "" && strings.Contains(lines[0], "overlay"):
			t.Errorf("vfs: / is %q, want a plain directory", lines[0])
		}
		// The image's layer is untouched by the container's writes.
		s.run(append(g, "run", "--rm", "--net=none", busybox(), "sh", "-c", "test -e /linuxrc && test -d /usr && ! test -e /new && echo pristine")...).wantOut(t, "pristine")
		info := s.run(append(g, "info")...).ok(t)
		if !strings.Contains(info.stdout, "overlay: "+c.overlay+" (") {
			t.Errorf("info does not report %s:\n%s", c.overlay, info)
		}
		rec := readDecision(t, root)
		if rec.Strategy != c.overlay {
			t.Errorf("recorded strategy %q, want %q", rec.Strategy, c.overlay)
		}
	}
	// A store does not change format under its layers.
	s.run("--root", filepath.Join(s.home, "store-native"), "--overlay", "vfs", "images").
		wantCode(t, 125).wantStderr(t, "was created with native", "--root", "system reset")
	s.run("--root", filepath.Join(s.home, "store-vfs"), "--overlay", "fuse", "images").
		wantCode(t, 125).wantStderr(t, "was created with vfs")
	s.run("--overlay", "overlay2", "images").wantCode(t, 125).wantStderr(t, "use auto, native, fuse or vfs")
}

type decision struct{ Strategy, Reason, Kernel string }

func readDecision(t *testing.T, root string) decision {
	t.Helper()
	var d decision
	b, err := os.ReadFile(filepath.Join(root, "unroot-overlay.json"))
	if err != nil {
		t.Fatalf("no recorded overlay decision: %v", err)
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// auto probes native overlay once, records it, and does not stay on FUSE
// because containers/storage once recorded a fallback (.has-mount-program).
func TestOverlayAutoRecordedAndNotStuckOnFuse(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	s.runSh(busybox(), `awk '$2=="/"{print $3}' /proc/mounts`, "--net=none").wantOut(t, "overlay")
	d := readDecision(t, s.storeDir())
	if d.Strategy != "native" || d.Kernel == "" {
		t.Fatalf("recorded %+v, want native with the kernel version", d)
	}
	s.run("info").ok(t)

	// A store containers/storage pinned to fuse-overlayfs (as after a
	// transient failure of its own probe), without fuse-style layers.
	root := filepath.Join(s.home, "pinned")
	s.run("--root", root, "--overlay", "fuse", "pull", "-q", "--tls-verify=false", busybox()).ok(t)
	if b, _ := os.ReadFile(filepath.Join(root, "overlay", ".has-mount-program")); strings.TrimSpace(string(b)) != "true" {
		t.Fatalf("setup: .has-mount-program is %q", b)
	}
	if err := os.Remove(filepath.Join(root, "unroot-overlay.json")); err != nil {
		t.Fatal(err)
	}
	s.run("--root", root, "run", "--rm", "--net=none", busybox(), "awk", `$2=="/"{print $3}`, "/proc/mounts").wantOut(t, "overlay")
	if d := readDecision(t, root); d.Strategy != "native" || !strings.Contains(d.Reason, "switched") {
		t.Errorf("recorded %+v, want a switch to native", d)
	}
}

// An image store populated (single-id, squashed) and shared by one user is
// used in place by another, through fuse-overlayfs.
func TestOverlaySharedStoreSecondUser(t *testing.T) {
	t.Parallel()
	owner := needNosub(t)
	shared := filepath.Join(suite.state, fmt.Sprintf("shared-%d", time.Now().UnixNano()))
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(shared, int(owner.uid), int(owner.gid)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shared) })
	root := filepath.Join(shared, "images")
	so := sandboxFor(t, owner)
	so.run("--root", root, "pull", "-q", "--tls-verify=false", debian()).ok(t)
	so.run("--root", root, "pull", "-q", "--tls-verify=false", busybox()).ok(t)
	so.run("--root", root, "system", "share").ok(t)

	u := sandboxFor(t, nil)
	own := filepath.Join(u.home, "own")
	g := []string{"--root", own, "--image-store", root}
	imgs := u.run(append(g, "images")...).ok(t)
	if !strings.Contains(imgs.stdout, "bookworm") {
		t.Fatalf("the shared image is not listed:\n%s", imgs)
	}
	r := u.run(append(g, "run", "--rm", "--net=none", "--pull=never", debian(), "sh", "-c",
		`awk '$2=="/"{print $3}' /proc/mounts; stat -c %u /etc/passwd; echo x >> /etc/passwd && tail -n1 /etc/passwd; rm /bin/true && echo deleted; mkdir /opt/new && mv /opt /opt2 && echo renamed`)...).ok(t)
	if want := "fuse.fuse-overlayfs\n0\nx\ndeleted\nrenamed"; r.out() != want {
		t.Errorf("want %q, got:\n%s", want, r)
	}
	u.run(append(g, "run", "--rm", "--net=none", "--pull=never", busybox(), "true")...).ok(t)
	// Used in place: no layer was copied into the user's own store.
	if n := layerCount(t, own, "overlay"); n != 0 {
		t.Errorf("the user's own store holds %d image layers, want 0", n)
	}
	df := u.run(append(g, "system", "df", "-v")...).ok(t)
	if !strings.Contains(df.stdout, "read-only") {
		t.Errorf("system df does not show the read-only images:\n%s", df)
	}
	// A user whose store is on native overlay is told what to do.
	u.pull(busybox())
	u.run("--image-store", root, "images").wantCode(t, 125).wantStderr(t, "belongs to another user", "--root")
	// A store populated with subordinate ids cannot be shared.
	sub := filepath.Join(u.home, "subuid-store")
	u.run("--root", sub, "pull", "-q", "--tls-verify=false", debian()).ok(t)
	u.run("--root", sub, "system", "share").wantCode(t, 125).wantStderr(t, "subordinate-id mapping")
}

func layerCount(t *testing.T, root, driver string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, driver+"-layers", "layers.json"))
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	var l []json.RawMessage
	if err := json.Unmarshal(b, &l); err != nil {
		t.Fatal(err)
	}
	return len(l)
}

// 20 `run --rm` and a pull at once leave a consistent store.
func TestOverlayConcurrentRunsAndPull(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	s.pull(busybox())
	var wg sync.WaitGroup
	results := make([]result, 21)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			results[i] = s.run("run", "--rm", "--net=none", "--tls-verify=false", busybox(), "sh", "-c", fmt.Sprintf("echo %d > /f; cat /f", i))
		}(i)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		results[20] = s.run("pull", "-q", "--tls-verify=false", debian())
	}()
	wg.Wait()
	for i, r := range results {
		if r.code != 0 || r.err != nil {
			t.Errorf("command %d failed:\n%s", i, r)
		} else if i < 20 && r.out() != fmt.Sprint(i) {
			t.Errorf("run %d printed %q", i, r.out())
		}
	}
	s.run("system", "check").ok(t)
	if n := s.containerCount(t); n != 0 {
		t.Errorf("%d containers left after --rm", n)
	}
	s.run("images").ok(t)
	s.runSh(debian(), "echo ok", "--net=none", "--pull=never").wantOut(t, "ok")
}

// kill -9 at random points of pulls: the next pull and run just work.
func TestOverlayKillDuringPull(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	for i := 0; i < 6; i++ {
		delay := time.Duration(50+rng.Intn(1200)) * time.Millisecond
		if i == 0 {
			delay = time.Duration(10+rng.Intn(100)) * time.Millisecond // in the store's first open and probes
		}
		cmd := exec.Command(suite.bin, "pull", "-q", "--tls-verify=false", debian())
		cmd.Dir, cmd.Env, cmd.SysProcAttr = s.home, s.environ(), s.sysProcAttr()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		if i%2 == 0 {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the whole job
		} else {
			_ = cmd.Process.Kill() // unroot only: its stage dies with it
		}
		_ = cmd.Wait()
		s.log(fmt.Sprintf("killed pull %d after %s", i, delay))
		if i%3 == 2 {
			// Removing what got stored must work too.
			s.run("rmi", debian())
		}
	}
	time.Sleep(300 * time.Millisecond)
	s.pull(debian())
	s.runSh(debian(), "echo ok", "--net=none", "--pull=never").wantOut(t, "ok")
	s.run("system", "check").ok(t)
}

// A full disk during a pull: a clear error, and the partial layer is gone.
func TestOverlayFullDiskDuringPull(t *testing.T) {
	t.Parallel()
	if !suite.asRoot {
		t.Skip("needs root to mount a small file system")
	}
	s := sandboxFor(t, nil)
	small := filepath.Join(s.home, "small")
	if err := os.Mkdir(small, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", small, "tmpfs", 0, "size=48m,mode=0755"); err != nil {
		t.Skipf("mounting a tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(small, unix.MNT_DETACH) })
	if err := os.Chown(small, int(s.user.uid), int(s.user.gid)); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(small, "store")
	s.run("--root", root, "pull", "-q", "--tls-verify=false", debian()).
		wantCode(t, 125).wantStderr(t, "no space left on device", "fix:")
	var st unix.Statfs_t
	if err := unix.Statfs(small, &st); err != nil {
		t.Fatal(err)
	}
	if used := (st.Blocks - st.Bfree) * uint64(st.Bsize); used > 4<<20 {
		t.Errorf("%d bytes left in the store after the failed pull: the partial layer was not removed", used)
	}
	s.run("--root", root, "pull", "-q", "--tls-verify=false", busybox()).ok(t)
	s.run("--root", root, "run", "--rm", "--net=none", busybox(), "echo", "ok").wantOut(t, "ok")
	s.run("--root", root, "system", "check").ok(t)
}

func TestSystemDfPruneReset(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	s.pull(busybox())
	s.pull(layered())
	s.run("run", "--net=none", "--name", "kept", "--tls-verify=false", busybox(), "sh", "-c", "head -c 100000 /dev/zero > /blob").ok(t)
	df := s.run("system", "df", "-v").ok(t)
	for _, want := range []string{"Images", "Containers", "Shared layers", "kept", "SHARED SIZE"} {
		if !strings.Contains(df.stdout, want) {
			t.Errorf("system df does not show %q:\n%s", want, df)
		}
	}
	s.run("system", "prune").ok(t)
	if n := s.containerCount(t); n != 0 {
		t.Errorf("%d containers left after prune", n)
	}
	s.run("system", "prune", "-a").ok(t)
	if out := s.run("images", "-q").ok(t).out(); out != "" {
		t.Errorf("images left after prune -a: %q", out)
	}
	s.pull(busybox())
	s.run("system", "reset").wantCode(t, 125).wantStderr(t, "-f")
	s.run("system", "reset", "-f").ok(t)
	if _, err := os.Stat(s.storeDir()); !os.IsNotExist(err) {
		t.Errorf("store still there after reset: %v", err)
	}
	s.runSh(busybox(), "echo ok", "--net=none").wantOut(t, "ok")
}
