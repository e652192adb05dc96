// Package scratch keeps the writable layers of the containers the fast
// path runs (`run --rm` without the store, package fastrun): one directory
// per container under the graph root, DIR/ID/{upper,work,merged}, and
// DIR/ID/image, which holds the image id and is share-locked while the
// container lives. rmi refuses an image in use, and anyone may remove a
// directory whose lock is free (its container was killed with SIGKILL).
//
// It is a package of its own, free of the store, because the container's
// init links it: on the fastest path the init mounts its own rootfs.
package scratch

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Dir is the directory, in the graph root, of the fast path's containers.
func Dir(graphRoot string) string { return filepath.Join(graphRoot, "unroot-run") }

// Register creates the container's directory dir (in tmp) and holds its
// lock, with the image id in it, for as long as the returned file is open.
// rmi cannot run in between: the guard is shared while we check that the
// image's layers (lower) are still there, exclusive while rmi checks and
// deletes.
func Register(tmp, dir, imageID string, lower []string) (*os.File, error) {
	release, err := Guard(tmp, false)
	if err != nil {
		return nil, err
	}
	defer release()
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the container's layer: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "image"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_SH); err != nil {
		lock.Close()
		return nil, fmt.Errorf("locking the container's layer: %w", err)
	}
	if _, err := lock.WriteString(imageID); err != nil {
		lock.Close()
		return nil, err
	}
	for _, l := range lower {
		if _, err := os.Stat(l); err != nil {
			lock.Close()
			return nil, fmt.Errorf("the image was removed while the container started: run it again")
		}
	}
	return lock, nil
}

// Mount makes dir's upper, work and merged directories and mounts the
// overlay of lower (top first) and upper on merged, which it returns.
func Mount(dir string, lower []string) (string, error) {
	if err := Make(dir); err != nil {
		return "", err
	}
	return MountMade(dir, lower)
}

// Make makes dir's upper, work and merged directories. It needs no
// mapped ids (a direct init makes them while its mapping is written).
func Make(dir string) error {
	for _, d := range []string{"upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// MountMade mounts the overlay of lower (top first) and dir's upper on
// its merged directory (made by Make), which it returns.
func MountMade(dir string, lower []string) (string, error) {
	merged := filepath.Join(dir, "merged")
	// The options the store's overlay uses in a user namespace (userxattr:
	// whiteouts and opaque dirs as user.overlay.* xattrs), plus volatile:
	// the upper layer is thrown away at the end, so it need not be synced
	// to disk when the mount goes (kernels before 5.10 refuse it).
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s,userxattr",
		strings.Join(lower, ":"), filepath.Join(dir, "upper"), filepath.Join(dir, "work"))
	err := unix.Mount("overlay", merged, "overlay", 0, opts+",volatile")
	if err == unix.EINVAL {
		err = unix.Mount("overlay", merged, "overlay", 0, opts)
	}
	if err != nil {
		return "", fmt.Errorf("mounting the container's filesystem: %w", err)
	}
	return merged, nil
}

// Guard locks the fast containers' directory tmp against rmi: shared for
// a container registering itself, exclusive for rmi.
func Guard(tmp string, exclusive bool) (release func(), err error) {
	return guard(tmp, exclusive, false)
}

func guard(tmp string, exclusive, try bool) (release func(), err error) {
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", tmp, err)
	}
	f, err := os.OpenFile(filepath.Join(tmp, ".guard"), os.O_CREATE|os.O_RDONLY, 0o600)
	if err != nil {
		return nil, err
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	if try {
		how |= unix.LOCK_NB
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", tmp, err)
	}
	return func() { f.Close() }, nil
}

// ImageInUse reports whether a fast container runs from imageID. Call it
// with the exclusive Guard held.
func ImageInUse(tmp, imageID string) bool {
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if id, busy := InUse(filepath.Join(tmp, e.Name())); busy && id == imageID {
			return true
		}
	}
	return false
}

// Sweep removes the directories of fast containers whose init or monitor
// is gone (their lock is free). It holds the guard exclusively, so that
// no container is half-way through registering (its directory made, its
// lock not yet taken); when the guard is busy it leaves the sweep to a
// later run.
func Sweep(tmp string) {
	release, err := guard(tmp, true, true)
	if err != nil {
		return
	}
	defer release()
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(tmp, e.Name())
		if _, busy := InUse(dir); !busy {
			_ = unix.Unmount(filepath.Join(dir, "merged"), unix.MNT_DETACH)
			_ = os.RemoveAll(dir)
		}
	}
}

// InUse reports whether the fast container in dir still runs, and from
// which image.
func InUse(dir string) (imageID string, busy bool) {
	f, err := os.Open(filepath.Join(dir, "image"))
	if err != nil {
		return "", false
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
		return "", false
	}
	b, _ := os.ReadFile(f.Name())
	return string(b), true
}
