// Package fuseoverlay chooses how a container's root filesystem is layered,
// with an explicit fallback order: the kernel's overlay inside the user
// namespace (Linux >= 5.11), then fuse-overlayfs, then vfs (full copies).
//
// containers/storage probes and falls back by itself, and records a
// fallback to fuse-overlayfs in the store for good (overlay/.has-mount-program),
// so one transient failure pinned a store to FUSE. Here the choice is made
// once per store and kernel, logged, remembered in the store root
// (unroot-overlay.json, read on every open: no probe on the hot path) and
// handed to containers/storage explicitly (driver and mount_program), so the
// driver never decides on its own.
package fuseoverlay

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Strategies, in fallback order.
const (
	Auto   = "auto"
	Native = "native"
	Fuse   = "fuse"
	VFS    = "vfs"
)

// CacheFile is the decision's record in the store root.
const CacheFile = "unroot-overlay.json"

// Decision is the strategy of one store.
type Decision struct {
	Strategy     string    `json:"strategy"`
	Reason       string    `json:"reason"`
	Kernel       string    `json:"kernel"`
	MountProgram string    `json:"mount_program,omitempty"`
	NativeError  string    `json:"native_error,omitempty"` // the native probe's failure, if it ran and failed
	Decided      time.Time `json:"decided"`
}

// Valid reports whether s names a strategy (or auto).
func Valid(s string) error {
	switch s {
	case "", Auto, Native, Fuse, VFS:
		return nil
	}
	return fmt.Errorf("unknown overlay strategy %q: use auto, native, fuse or vfs", s)
}

// Driver is the containers/storage driver name for the strategy.
func (d Decision) Driver() string {
	if d.Strategy == VFS {
		return "vfs"
	}
	return "overlay"
}

// Options rewrites containers/storage driver options for the strategy:
// options written for "overlay." go to the vfs driver under vfs (those it
// knows: ignore_chown_errors, imagestore), and fuse adds mount_program.
func (d Decision) Options(opts []string) []string {
	var out []string
	for _, o := range opts {
		k, v, _ := strings.Cut(o, "=")
		switch {
		case d.Strategy == VFS && strings.HasPrefix(k, "overlay."):
			switch strings.TrimPrefix(k, "overlay.") {
			case "ignore_chown_errors", "imagestore", "additionalimagestore":
				out = append(out, "vfs."+strings.TrimPrefix(strings.TrimPrefix(k, "overlay."), "additional")+"="+v)
			}
		case k == "overlay.mount_program":
			// ours decides
		default:
			out = append(out, o)
		}
	}
	if d.Strategy == Fuse {
		out = append(out, "overlay.mount_program="+d.MountProgram)
	}
	return out
}

// Cached returns the recorded decision of the store at root, if any.
func Cached(root string) (Decision, bool) {
	var d Decision
	b, err := os.ReadFile(filepath.Join(root, CacheFile))
	if err != nil || json.Unmarshal(b, &d) != nil || Valid(d.Strategy) != nil || d.Strategy == Auto || d.Strategy == "" {
		return Decision{}, false
	}
	return d, true
}

// Kernel is the running kernel's release.
func Kernel() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// Resolve decides the strategy of the store at root given the user's wish
// (auto or "" for the fallback order). It must run as root in unroot's user
// namespace, in a mount namespace of its own: the native probe mounts.
// A recorded decision for the running kernel is returned at once.
//
// foreignLowers says read-only image stores owned by another user will be
// layered under this store's containers: the kernel's overlay cannot copy
// up files of ids outside the user namespace, so a new store goes to
// fuse-overlayfs.
func Resolve(root, want string, foreignLowers bool) (Decision, error) {
	if err := Valid(want); err != nil {
		return Decision{}, err
	}
	if want == "" {
		want = Auto
	}
	kernel := Kernel()
	if d, ok := Cached(root); ok && d.Kernel == kernel && (want == Auto || want == d.Strategy) {
		if d.Strategy == Fuse {
			// Cheap (a stat and an open): a clear error beats a failed mount.
			if _, err := FuseUsable(); err != nil {
				return d, fmt.Errorf("this store uses fuse-overlayfs, which is not usable now: %w", err)
			}
		}
		return d, nil
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return Decision{}, fmt.Errorf("creating the image store %s: %w", root, err)
	}
	unlock, err := lock(root)
	if err != nil {
		return Decision{}, err
	}
	defer unlock()
	// Someone else may have decided while we waited for the lock.
	if d, ok := Cached(root); ok && d.Kernel == kernel && (want == Auto || want == d.Strategy) {
		return d, nil
	}
	CleanStaleProbes(root)
	d, err := decide(root, want, kernel, foreignLowers)
	if err != nil {
		return d, err
	}
	d.Kernel, d.Decided = kernel, time.Now().UTC()
	if err := save(root, d); err != nil {
		return d, err
	}
	switch {
	case d.Strategy == VFS:
		logrus.Warnf("overlay: using vfs (%s): every container gets a full copy of its image, which costs disk space and start-up time", d.Reason)
	case d.Strategy == Fuse && want == Auto:
		logrus.Warnf("overlay: using fuse-overlayfs (%s)", d.Reason)
	default:
		logrus.Infof("overlay: using %s (%s)", d.Strategy, d.Reason)
	}
	return d, nil
}

func decide(root, want, kernel string, foreignLowers bool) (Decision, error) {
	prev, hadPrev := Cached(root)
	existing, why := Existing(root)
	if existing == "" && hadPrev && Layers(root, prev.Driver()) > 0 {
		existing, why = prev.Strategy, "recorded in "+CacheFile
	}
	if want != Auto {
		if err := canSwitch(root, existing, want, why); err != nil {
			return Decision{}, err
		}
		d := Decision{Strategy: want, Reason: "chosen with --overlay=" + want + " (or overlay in the config file)"}
		switch want {
		case Native:
			if err := ProbeNative(root); err != nil {
				return d, fmt.Errorf("--overlay=native: the kernel's overlay does not work here: %w\n  fix: use --overlay=auto (fuse-overlayfs or vfs) or a newer kernel (>= 5.11 mounts overlay in user namespaces)", err)
			}
			return d, clearMountProgramFlag(root)
		case Fuse:
			p, err := FuseUsable()
			if err != nil {
				return d, fmt.Errorf("--overlay=fuse: %w", err)
			}
			d.MountProgram = p
		}
		return d, nil
	}
	// auto: the store's existing format decides when there is one.
	switch existing {
	case VFS:
		return Decision{Strategy: VFS, Reason: "the store was created with vfs (" + why + ")"}, nil
	case Native:
		if err := ProbeNative(root); err != nil {
			// fuse-overlayfs understands the kernel's whiteouts: the store
			// stays usable.
			if p, ferr := FuseUsable(); ferr == nil {
				return Decision{Strategy: Fuse, MountProgram: p, NativeError: err.Error(),
					Reason: fmt.Sprintf("native overlay stopped working on kernel %s (%v)", kernel, err)}, nil
			}
			return Decision{}, fmt.Errorf("this store holds native overlay layers, but the kernel's overlay fails now (%v) and fuse-overlayfs is not usable either: use --root for another store, or unroot system reset", err)
		}
		return Decision{Strategy: Native, Reason: "kernel overlay in the user namespace works (probed on " + kernel + ")"}, clearMountProgramFlag(root)
	}
	if foreignLowers && existing == "" {
		if p, err := FuseUsable(); err == nil {
			return Decision{Strategy: Fuse, MountProgram: p, Reason: "read-only image stores of other users are layered by fuse-overlayfs (the kernel's overlay cannot copy up files of ids outside the user namespace)"}, nil
		}
	}
	nerr := ProbeNative(root)
	if nerr != nil && transient(nerr) {
		time.Sleep(200 * time.Millisecond)
		nerr = ProbeNative(root)
	}
	if nerr == nil {
		if existing == Fuse && FuseIndicators(root) {
			return Decision{Strategy: Fuse, MountProgram: mustFuse(),
				Reason: "the store holds fuse-overlayfs layers (native overlay would work now: unroot system reset, or a new --root, to switch)"}, nil
		}
		reason := "kernel overlay in the user namespace works (probed on " + kernel + ")"
		if existing == Fuse {
			reason += "; the store was on fuse-overlayfs but its layers are readable by the kernel: switched"
		}
		return Decision{Strategy: Native, Reason: reason}, clearMountProgramFlag(root)
	}
	logrus.Infof("overlay: native overlay probe failed: %v", nerr)
	p, ferr := FuseUsable()
	if ferr == nil {
		return Decision{Strategy: Fuse, MountProgram: p, NativeError: nerr.Error(), Reason: "native overlay failed: " + nerr.Error()}, nil
	}
	logrus.Infof("overlay: fuse-overlayfs not usable: %v", ferr)
	if existing == Fuse {
		return Decision{}, fmt.Errorf("this store holds fuse-overlayfs layers but fuse-overlayfs is not usable: %w", ferr)
	}
	return Decision{Strategy: VFS, NativeError: nerr.Error(),
		Reason: fmt.Sprintf("native overlay failed: %v; fuse-overlayfs: %v", nerr, ferr)}, nil
}

func mustFuse() string {
	p, _ := FuseUsable()
	if p == "" {
		p = "/usr/bin/fuse-overlayfs"
	}
	return p
}

func transient(err error) bool {
	return errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EBUSY) || errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR)
}

// canSwitch refuses to change a store's format under its layers:
// containers/storage keeps each driver's layers apart (vfs) or writes them
// in a format only one mount method reads (fuse-overlayfs whiteouts).
func canSwitch(root, existing, want, why string) error {
	if existing == "" || existing == want {
		return nil
	}
	if existing == Fuse && want == Native && !FuseIndicators(root) {
		return nil // no fuse-style whiteouts: the kernel reads these layers
	}
	return fmt.Errorf("this store (%s) was created with %s (%s) and cannot be used with --overlay=%s: use --root DIR for another store, or remove this one with unroot system reset -f", root, existing, why, want)
}

// Existing infers the format of a store that has layers: "" for an empty
// (or new) store.
func Existing(root string) (strategy, why string) {
	if Layers(root, "vfs") > 0 {
		return VFS, "it has vfs layers"
	}
	if Layers(root, "overlay") > 0 {
		b, _ := os.ReadFile(filepath.Join(root, "overlay", ".has-mount-program"))
		if strings.TrimSpace(string(b)) == "true" {
			return Fuse, "overlay/.has-mount-program"
		}
		return Native, "it has overlay layers"
	}
	return "", ""
}

// Layers counts the layers containers/storage lists for driver in root.
func Layers(root, driver string) int {
	n := 0
	for _, f := range []string{"layers.json", "volatile-layers.json"} {
		b, err := os.ReadFile(filepath.Join(root, driver+"-layers", f))
		if err != nil {
			continue
		}
		var l []json.RawMessage
		if json.Unmarshal(b, &l) == nil {
			n += len(l)
		}
	}
	return n
}

// FuseIndicators reports fuse-overlayfs-format layers: AUFS-style .wh.
// whiteouts or fuse-overlayfs xattrs (what containers/storage looks for).
func FuseIndicators(root string) bool {
	found := false
	_ = filepath.WalkDir(filepath.Join(root, "overlay"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || found {
			return fs.SkipDir
		}
		if strings.HasPrefix(d.Name(), ".wh.") {
			found = true
			return fs.SkipAll
		}
		if d.IsDir() {
			buf := make([]byte, 4096)
			if n, err := unix.Llistxattr(p, buf); err == nil && n > 0 {
				for _, x := range strings.Split(string(buf[:n]), "\x00") {
					if strings.HasPrefix(x, "user.fuseoverlayfs.") {
						found = true
						return fs.SkipAll
					}
				}
			}
		}
		return nil
	})
	return found
}

// clearMountProgramFlag undoes containers/storage's sticky record of a
// fallback to a mount program, for a store we decided is native.
func clearMountProgramFlag(root string) error {
	f := filepath.Join(root, "overlay", ".has-mount-program")
	b, err := os.ReadFile(f)
	if err != nil || strings.TrimSpace(string(b)) != "true" {
		return nil
	}
	logrus.Infof("overlay: resetting containers/storage's recorded fallback to fuse-overlayfs (%s)", f)
	return os.WriteFile(f, []byte("false"), 0o600)
}

// UsesMountProgram reports whether containers/storage has recorded a mount
// program for root (checked after opening a store we decided is native: the
// driver falls back silently when its own probe fails).
func UsesMountProgram(root string) bool {
	b, _ := os.ReadFile(filepath.Join(root, "overlay", ".has-mount-program"))
	return strings.TrimSpace(string(b)) == "true"
}

// Forget drops the recorded decision (the next open probes again).
func Forget(root string) error {
	err := os.Remove(filepath.Join(root, CacheFile))
	if os.IsNotExist(err) {
		return nil
	}
	return err
}

// FuseUsable finds fuse-overlayfs and checks /dev/fuse can be opened.
func FuseUsable() (string, error) {
	p, err := exec.LookPath("fuse-overlayfs")
	if err != nil {
		for _, c := range []string{"/usr/bin/fuse-overlayfs", "/usr/local/bin/fuse-overlayfs", "/bin/fuse-overlayfs"} {
			if st, e := os.Stat(c); e == nil && st.Mode()&0o111 != 0 {
				p, err = c, nil
				break
			}
		}
	}
	if err != nil {
		return "", errors.New("fuse-overlayfs is not installed\n  fix: apt-get install fuse-overlayfs (Debian/Ubuntu) or dnf install fuse-overlayfs (Fedora/RHEL), or use --overlay=vfs")
	}
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		fix := "ask an administrator to allow FUSE (modprobe fuse; chmod 0666 /dev/fuse), or use --overlay=vfs"
		if os.IsNotExist(err) {
			fix = "there is no /dev/fuse (in a container: run it with --device /dev/fuse; else modprobe fuse), or use --overlay=vfs"
		}
		return p, fmt.Errorf("/dev/fuse is not accessible: %v\n  fix: %s", err, fix)
	}
	f.Close()
	return p, nil
}

// ProbeNative mounts a small overlay under root (the store's file system)
// the way containers/storage will (userxattr, two lowers), and checks
// writing, deleting a lower file (a whiteout) and renaming a lower
// directory. It must run as root in a user and mount namespace.
func ProbeNative(root string) error {
	if fsi, err := Examine(root); err == nil {
		if fsi.Network != "" {
			return fmt.Errorf("the store is on %s, where the kernel refuses overlay in a user namespace", fsi.Network)
		}
		switch fsi.Magic & 0xffffffff {
		case MagicOverlay:
			return errors.New("the store is itself on an overlay file system (unroot inside a container?): overlay cannot stack on it")
		case MagicFUSE:
			return fmt.Errorf("the store is on a FUSE file system (%s)", fsi.Type)
		}
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(root, ".overlay-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p := func(s ...string) string { return filepath.Join(append([]string{dir}, s...)...) }
	for _, d := range []string{"l1", "l2/sub", "l2/dir/inner", "upper", "work", "merged"} {
		if err := os.MkdirAll(p(d), 0o755); err != nil {
			return err
		}
	}
	for _, f := range []string{"l2/sub/file", "l2/dir/inner/f"} {
		if err := os.WriteFile(p(f), []byte("x"), 0o644); err != nil {
			return err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s:%s,upperdir=%s,workdir=%s,userxattr", p("l1"), p("l2"), p("upper"), p("work"))
	if err := unix.Mount("overlay", p("merged"), "overlay", 0, opts); err != nil {
		return fmt.Errorf("mounting overlay in the user namespace: %w", err)
	}
	defer unix.Unmount(p("merged"), unix.MNT_DETACH)
	if err := os.WriteFile(p("merged", "sub", "file"), []byte("y"), 0o644); err != nil {
		return fmt.Errorf("writing to a lower file (copy-up): %w", err)
	}
	if err := os.Remove(p("merged", "sub", "file")); err != nil {
		return fmt.Errorf("deleting a lower file (whiteout): %w", err)
	}
	if err := os.RemoveAll(p("merged", "sub")); err != nil {
		return fmt.Errorf("deleting a lower directory: %w", err)
	}
	// Without redirect_dir the kernel answers EXDEV, and programs copy
	// (mv does): that is how overlay works, not a failure.
	if err := os.Rename(p("merged", "dir"), p("merged", "dir2")); err != nil && !errors.Is(err, syscall.EXDEV) {
		return fmt.Errorf("renaming a lower directory: %w", err)
	}
	if _, err := os.Stat(p("merged", "sub")); !os.IsNotExist(err) {
		return errors.New("a deleted lower directory is still visible")
	}
	return nil
}

func lock(root string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(root, "unroot-overlay.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("locking the image store: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking the image store: %w", err)
	}
	return func() { f.Close() }, nil
}

func save(root string, d Decision) error {
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(root, "."+CacheFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("recording the overlay strategy: %w", err)
	}
	return os.Rename(tmp, filepath.Join(root, CacheFile))
}

// Prepare makes containers/storage's overlay driver follow the decision for
// a native store: its own per-boot probe record (RUNROOT/overlay/overlay-*)
// says overlay works, and no sticky mount-program record is left, so the
// driver cannot fall back to fuse-overlayfs behind our back.
func Prepare(graphRoot, runRoot string, d Decision) {
	if d.Strategy != Native {
		return
	}
	_ = clearMountProgramFlag(graphRoot)
	runhome := filepath.Join(runRoot, "overlay")
	_ = os.Remove(filepath.Join(runhome, "overlay-false"))
	if _, err := os.Stat(filepath.Join(runhome, "overlay-true")); err != nil {
		if os.MkdirAll(runhome, 0o700) == nil {
			_ = os.WriteFile(filepath.Join(runhome, "overlay-true"), nil, 0o600)
		}
	}
}

// ClearMountProgramFlag is clearMountProgramFlag for callers outside.
func ClearMountProgramFlag(root string) error { return clearMountProgramFlag(root) }

// CleanStaleProbes removes test-mount directories left by a probe that was
// killed (ours: .overlay-probe-*; containers/storage's: overlay/compat*,
// overlay/metacopy-check*), which storage's consistency check reports as
// unaccounted layers. A probe lasts milliseconds: older ones are stale.
func CleanStaleProbes(root string) {
	for _, pat := range []string{".overlay-probe-*", "overlay/compat*", "overlay/metacopy-check*"} {
		matches, _ := filepath.Glob(filepath.Join(root, pat))
		for _, m := range matches {
			if st, err := os.Lstat(m); err == nil && st.IsDir() && time.Since(st.ModTime()) > 2*time.Second {
				_ = unix.Unmount(filepath.Join(m, "merged"), unix.MNT_DETACH)
				logrus.Infof("removing a stale overlay probe directory %s", m)
				_ = os.RemoveAll(m)
			}
		}
	}
}
