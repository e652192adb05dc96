// Package image pulls, stores, lists and removes images. It wraps
// containers/image (registries, manifests, signatures policy) and
// containers/storage (layers, images, container layers) and adds only what
// unroot needs on top: Docker's short-name rules and errors that say what
// to do.
package image

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.podman.io/storage"
	"go.podman.io/storage/types"
)

// StoreOptions says where the store lives and how layers are mounted.
type StoreOptions struct {
	GraphRoot     string   `json:"graph_root"`
	RunRoot       string   `json:"run_root"`
	Driver        string   `json:"driver"`
	DriverOptions []string `json:"driver_options,omitempty"`
	// Overlay is the layering strategy (package fuseoverlay): auto, native,
	// fuse or vfs; Open settles Driver from it.
	Overlay string `json:"overlay,omitempty"`
	// ImageStores are read-only stores whose images are used in place.
	ImageStores []string `json:"image_stores,omitempty"`
}

// Paths are the per-user locations unroot uses.
type Paths struct {
	Data    string // persistent: store, container configs
	Run     string // runtime state, lost on reboot
	Config  string
	Warning string // set when a fallback was taken the user should know of
}

// DefaultPaths follows the XDG base directories. XDG_RUNTIME_DIR is often
// unset (su -, ssh on HPC nodes, batch jobs), so the run directory falls
// back to a private directory under /tmp.
func DefaultPaths() Paths {
	home := os.Getenv("HOME")
	var p Paths
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		p.Data = filepath.Join(d, "unroot")
	} else {
		p.Data = filepath.Join(home, ".local", "share", "unroot")
	}
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" {
		p.Config = filepath.Join(d, "unroot")
	} else {
		p.Config = filepath.Join(home, ".config", "unroot")
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" && writableDir(d) {
		p.Run = filepath.Join(d, "unroot")
	} else {
		p.Run = filepath.Join(os.TempDir(), "unroot-"+strconv.Itoa(HostUID()))
	}
	return p
}

// HostUID is the caller's uid on the host, also from inside unroot's user
// namespace (where os.Getuid is 0).
func HostUID() int {
	if v, err := strconv.Atoi(os.Getenv("_CONTAINERS_ROOTLESS_UID")); err == nil {
		return v
	}
	return os.Getuid()
}

func writableDir(d string) bool {
	st, err := os.Stat(d)
	if err != nil || !st.IsDir() {
		return false
	}
	return unixAccessW(d)
}

// EnsureRunDir creates the run directory private to the user, and refuses
// one that someone else created first (a /tmp squatter).
func EnsureRunDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating the run directory %s: %w", dir, err)
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !st.IsDir() || ownerOf(st) != os.Getuid() && os.Getuid() != 0 {
		return fmt.Errorf("run directory %s is not a directory owned by you: remove it or set XDG_RUNTIME_DIR to a private directory", dir)
	}
	return nil
}

// DefaultStoreOptions places the store under the user's data directory.
func DefaultStoreOptions(p Paths) StoreOptions {
	return StoreOptions{
		GraphRoot: filepath.Join(p.Data, "storage"),
		RunRoot:   filepath.Join(p.Run, "storage"),
		Driver:    "overlay",
	}
}

// SquashOwnership makes layer extraction tolerate ids outside a single-id
// mapping: files of other users are stored as owned by the caller (what
// Charliecloud and enroot do), so ordinary images run without subuids.
func (o *StoreOptions) SquashOwnership() {
	for _, d := range o.DriverOptions {
		if d == "overlay.ignore_chown_errors=true" {
			return
		}
	}
	o.DriverOptions = append(o.DriverOptions, "overlay.ignore_chown_errors=true")
}

// SingleIDNamespace reports whether this process's user namespace maps
// exactly one id (no subordinate range).
func SingleIDNamespace() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	lines := strings.Fields(strings.TrimSpace(string(b)))
	return len(lines) == 3 && lines[2] == "1"
}

// Open opens the store. It must run as root in unroot's user namespace.
func Open(o StoreOptions) (storage.Store, error) {
	o, d, err := applyStrategy(o)
	if err != nil {
		return nil, err
	}
	s, err := storage.GetStore(types.StoreOptions{
		GraphRoot:          o.GraphRoot,
		RunRoot:            o.RunRoot,
		GraphDriverName:    o.Driver,
		GraphDriverOptions: o.DriverOptions,
	})
	if err != nil {
		return nil, fmt.Errorf("opening the image store at %s: %w", o.GraphRoot, err)
	}
	return checkOpened(s, o, d)
}
