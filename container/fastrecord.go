package container

import (
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/storage"

	"github.com/unroot/unroot/container/fastrun"
	"github.com/unroot/unroot/image"
)

// FastTarget says where the fast path (package fastrun) looks for the
// record of the image a command names.
type FastTarget struct {
	Key string `json:"key"`
	// Dir is the default run directory, where records live whatever
	// --runroot says: the fast path reads no configuration.
	Dir string `json:"dir"`
	// ConfigDir holds the user's storage configuration.
	ConfigDir string `json:"config_dir"`
}

// FastStamps are the files whose change invalidates a record made now:
// the store's image list (pull, rmi, load, tag), its overlay strategy and
// the user's storage configuration. Take them before looking the image up.
func FastStamps(o image.StoreOptions, configDir string) []fastrun.Stamp {
	if o.GraphRoot == "" {
		return nil
	}
	files := []string{
		filepath.Join(o.GraphRoot, "overlay-images", "images.json"),
		filepath.Join(o.GraphRoot, "unroot-overlay.json"),
	}
	for _, f := range image.ConfigFiles {
		files = append(files, filepath.Join(configDir, f))
	}
	st := make([]fastrun.Stamp, len(files))
	for i, f := range files {
		st[i] = fastrun.StampOf(f)
	}
	return st
}

// SaveFastRecord leaves the fast path what it needs to run img without the
// store: its config and layer directories. Only images of a store on the
// kernel's own overlay qualify (the fast path mounts no FUSE and copies
// nothing). Failing to save only costs the next run its speed.
func SaveFastRecord(t *FastTarget, stamps []fastrun.Stamp, runDir string, o image.StoreOptions, store storage.Store, img *storage.Image, cfg *v1.Image) {
	if t == nil || t.Key == "" || len(o.ImageStores) > 0 || store.GraphDriverName() != "overlay" || img.TopLayer == "" {
		return
	}
	for _, opt := range store.GraphOptions() {
		if strings.Contains(opt, "mount_program") {
			return
		}
	}
	root := filepath.Join(store.GraphRoot(), "overlay")
	var lower []string
	for id := img.TopLayer; id != ""; {
		l, err := store.Layer(id)
		if err != nil {
			return
		}
		// The short link keeps the mount options within a page for
		// images with many layers, as containers/storage does.
		dir := filepath.Join(root, l.ID, "diff")
		if link, err := os.ReadFile(filepath.Join(root, l.ID, "link")); err == nil && len(link) > 0 {
			dir = filepath.Join(root, "l", strings.TrimSpace(string(link)))
		}
		lower = append(lower, dir)
		id = l.Parent
	}
	_ = fastrun.Save(t.Dir, t.Key, &fastrun.Record{
		ImageID:   img.ID,
		GraphRoot: store.GraphRoot(),
		RunDir:    runDir,
		Lower:     lower,
		Config:    imageOf(cfg),
		Stamps:    stamps,
	})
}
