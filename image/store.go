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
	"strings"

	"go.podman.io/storage"
	"go.podman.io/storage/types"

	"github.com/unroot/unroot/image/paths"
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

// Paths are the per-user locations unroot uses (package paths).
type Paths = paths.Paths

// DefaultPaths follows the XDG base directories.
func DefaultPaths() Paths { return paths.Default() }

// HostUID is the caller's uid on the host, also from inside unroot's user
// namespace.
func HostUID() int { return paths.HostUID() }

// EnsureRunDir creates the run directory private to the user.
func EnsureRunDir(dir string) error { return paths.EnsureRunDir(dir) }

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
