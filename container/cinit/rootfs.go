package cinit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
)

// hostDevices are bind-mounted from the host: a user namespace may not
// mknod, and binding the host's nodes is what rootless runtimes do.
var hostDevices = []string{"null", "zero", "full", "random", "urandom", "tty"}

// Docker's masked and read-only paths: kernel interfaces that leak host
// information or would let a container poke at the host.
var (
	maskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
		"/sys/firmware", "/sys/devices/virtual/powercap",
	}
	readonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

func mount(src, target, fstype string, flags uintptr, data string) error {
	if err := unix.Mount(src, target, fstype, flags, data); err != nil {
		return &os.PathError{Op: "mount " + fstype, Path: target, Err: err}
	}
	return nil
}

// mkTarget makes sure a mount target exists inside the rootfs, as a
// directory or as an empty file.
func mkTarget(path string, dir bool) error {
	if st, err := os.Lstat(path); err == nil {
		if st.Mode()&os.ModeSymlink != 0 && !dir {
			// e.g. /etc/resolv.conf -> ../run/systemd/resolve/stub-resolv.conf:
			// the link may point nowhere inside the container.
			if err := os.Remove(path); err != nil {
				return err
			}
		} else {
			return nil
		}
	}
	if dir {
		return os.MkdirAll(path, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// setupRootfs mounts the kernel filesystems and the generated /etc files
// into rootfs. It runs in the container's own mount namespace.
func setupRootfs(p *Process) error {
	r := p.Rootfs
	// Nothing mounted from here on may leak back to the monitor's namespace.
	if err := mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return err
	}
	// pivot_root refuses a locked new root, which the rootfs is when the
	// monitor mounted it in a more privileged user namespace than ours
	// (--userns=keep-id nests one): a bind of it onto itself made here is
	// not locked (runc does the same).
	if err := mount(r, r, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	if err := mkTarget(r+"/proc", true); err != nil {
		return err
	}
	if err := mount("proc", r+"/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		// A host /proc partly covered (e.g. we run inside another
		// container) makes the kernel refuse a fresh proc mount.
		return fmt.Errorf("%w\n  fix: unroot needs an unmasked /proc; if this runs inside a container, start that container with an unmasked /proc (Docker/Podman: --security-opt systempaths=unconfined)", err)
	}
	if err := setupDev(r, p.SingleID); err != nil {
		return err
	}
	if err := setupSys(r, p.Net != "host"); err != nil {
		return err
	}
	if p.Cgroup {
		// Our thread is in the container's cgroup now: make it the root of
		// a cgroup namespace (inherited by the process we fork from this
		// thread) and show that subtree, delegated to us, at /sys/fs/cgroup.
		if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
			return fmt.Errorf("cgroup namespace: %w", err)
		}
		if err := mount("cgroup2", r+"/sys/fs/cgroup", "cgroup2", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return err
		}
	}
	for ctrPath, hostPath := range p.EtcFiles {
		t := filepath.Join(r, ctrPath)
		if err := mkTarget(t, false); err != nil {
			return fmt.Errorf("preparing %s: %w", ctrPath, err)
		}
		if err := mount(hostPath, t, "", unix.MS_BIND, ""); err != nil {
			return err
		}
	}
	for ctrPath, content := range p.EtcWrite {
		// Resolved inside the rootfs: a link in the image cannot send the
		// write to the host.
		t, err := securejoin.SecureJoin(r, ctrPath)
		if err == nil {
			err = mkTarget(t, false)
		}
		if err == nil {
			err = os.WriteFile(t, []byte(content), 0o644)
		}
		if err != nil {
			return fmt.Errorf("writing %s: %w", ctrPath, err)
		}
	}
	if err := setupMounts(r, p.Mounts); err != nil {
		return err
	}
	if p.ReadOnly {
		return readOnlyRoot(r)
	}
	return nil
}

func setupDev(r string, singleID bool) error {
	dev := r + "/dev"
	if err := mkTarget(dev, true); err != nil {
		return err
	}
	if err := mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_STRICTATIME, "mode=755,size=65536k"); err != nil {
		return err
	}
	for _, d := range hostDevices {
		t := dev + "/" + d
		if err := mkTarget(t, false); err != nil {
			return err
		}
		if err := mount("/dev/"+d, t, "", unix.MS_BIND, ""); err != nil {
			return err
		}
	}
	for _, d := range []string{"pts", "shm", "mqueue"} {
		if err := os.Mkdir(dev+"/"+d, 0o755); err != nil {
			return err
		}
	}
	ptsOpts := "newinstance,ptmxmode=0666,mode=0620"
	if !singleID {
		ptsOpts += ",gid=5" // the tty group, when it is mapped
	}
	if err := mount("devpts", dev+"/pts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, ptsOpts); err != nil {
		return err
	}
	if err := mount("shm", dev+"/shm", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size=65536k"); err != nil {
		return err
	}
	// mqueue needs the container's own IPC namespace; without it POSIX
	// queues are simply unavailable, which few programs notice.
	_ = mount("mqueue", dev+"/mqueue", "mqueue", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	links := [][2]string{
		{"pts/ptmx", "ptmx"}, {"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"},
		{"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"},
	}
	for _, l := range links {
		if err := os.Symlink(l[0], dev+"/"+l[1]); err != nil {
			return err
		}
	}
	return nil
}

func setupSys(r string, ownNetns bool) error {
	t := r + "/sys"
	if err := mkTarget(t, true); err != nil {
		return err
	}
	flags := uintptr(unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	// A fresh sysfs is only allowed with a network namespace of our own.
	if ownNetns {
		if err := mount("sysfs", t, "sysfs", flags, ""); err == nil {
			return nil
		}
	}
	if err := mount("/sys", t, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	// Read-only on the whole tree, submounts included.
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC}
	if err := unix.MountSetattr(-1, t, unix.AT_RECURSIVE, attr); err != nil {
		return mount("", t, "", unix.MS_BIND|unix.MS_REMOUNT|flags, "")
	}
	return nil
}

// pivot makes rootfs the root and drops every trace of the host's tree
// (runc's pivot_root(".", ".") sequence: no temporary directory needed).
func pivot(rootfs string) error {
	if err := unix.Chdir(rootfs); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detaching the host root: %w", err)
	}
	return unix.Chdir("/")
}

// maskPaths hides and write-protects kernel interfaces (after pivot).
func maskPaths() error {
	for _, p := range maskedPaths {
		st, err := os.Stat(p)
		if err != nil {
			continue
		}
		if st.IsDir() {
			err = mount("tmpfs", p, "tmpfs", unix.MS_RDONLY, "size=0")
		} else {
			err = mount("/dev/null", p, "", unix.MS_BIND, "")
		}
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return err
		}
	}
	for _, p := range readonlyPaths {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if err := mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return err
		}
		if err := mount("", p, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return err
		}
	}
	return nil
}
