package cinit

import (
	"fmt"
	"os"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
)

// Mount is a -v bind mount or a --tmpfs of the container.
type Mount struct {
	Type        string `json:"type"`             // bind | tmpfs
	Source      string `json:"source,omitempty"` // host path (bind)
	Destination string `json:"destination"`
	ReadOnly    bool   `json:"ro,omitempty"`
	Options     string `json:"options,omitempty"` // tmpfs: Docker's comma-separated options
	// Volume names the volume a bind of its directory comes from;
	// Anonymous: made for this container (-v /path), removed by rm -v.
	Volume    string `json:"volume,omitempty"`
	Anonymous bool   `json:"anonymous,omitempty"`
}

// setupMounts mounts the user's volumes into the rootfs r (before
// pivot_root, where host paths are visible). Destinations are resolved
// inside r: a symlink in the image cannot point a mount at the host.
func setupMounts(r string, mounts []Mount) error {
	for _, m := range mounts {
		t, err := securejoin.SecureJoin(r, m.Destination)
		if err != nil {
			return fmt.Errorf("volume %s: %w", m.Destination, err)
		}
		switch m.Type {
		case "bind":
			st, err := os.Stat(m.Source)
			if err != nil {
				return fmt.Errorf("volume %s:%s: %w", m.Source, m.Destination, err)
			}
			if err := mkTarget(t, st.IsDir()); err != nil {
				return fmt.Errorf("volume %s: %w", m.Destination, err)
			}
			if err := mount(m.Source, t, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
				return err
			}
			if m.ReadOnly {
				if err := unix.MountSetattr(-1, t, unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
					return fmt.Errorf("making %s read-only: %w", m.Destination, err)
				}
			}
		case "tmpfs":
			if err := mkTarget(t, true); err != nil {
				return fmt.Errorf("tmpfs %s: %w", m.Destination, err)
			}
			flags, data := TmpfsOptions(m.Options)
			if m.ReadOnly {
				flags |= unix.MS_RDONLY
			}
			if err := mount("tmpfs", t, "tmpfs", flags, data); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unknown mount type %q", m.Type)
		}
	}
	return nil
}

// TmpfsOptions turns Docker's --tmpfs options into mount flags and data;
// the default is nosuid,nodev,noexec as in Docker.
func TmpfsOptions(opts string) (uintptr, string) {
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	var data []string
	for _, o := range strings.Split(opts, ",") {
		switch o {
		case "":
		case "ro":
			flags |= unix.MS_RDONLY
		case "rw":
			flags &^= unix.MS_RDONLY
		case "exec":
			flags &^= unix.MS_NOEXEC
		case "noexec":
			flags |= unix.MS_NOEXEC
		case "suid":
			flags &^= unix.MS_NOSUID
		case "nosuid":
			flags |= unix.MS_NOSUID
		case "dev":
			flags &^= unix.MS_NODEV
		case "nodev":
			flags |= unix.MS_NODEV
		default:
			data = append(data, o)
		}
	}
	return flags, strings.Join(data, ",")
}

// readOnlyRoot makes the container's root read-only (--read-only); the
// mounts on it (/proc, /dev, volumes, /etc files) keep their own modes.
func readOnlyRoot(r string) error {
	if err := unix.MountSetattr(-1, r, 0, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
		return fmt.Errorf("--read-only: %w", err)
	}
	return nil
}
