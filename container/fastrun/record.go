// Package fastrun is unroot's fast path for the commonest command, a
// foreground `run --rm` of an image already in the store, without the
// network stack: it runs in the small user-facing binary, so none of
// containers/image, containers/storage or the user-mode network is
// initialised (tens of milliseconds per exec of the full binary).
//
// It never opens the store. The full unroot, each time it finds an image
// for a run or pulls one, leaves a Record in the run directory: the image's
// config and its layer directories. The fast path trusts a record only
// while the files it was derived from are unchanged (Stamps); anything else
// (a missing or stale record, a flag it does not know, a user-mode
// network, a detached or named container) is handed to the full unroot.
package fastrun

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/unroot/unroot/container/resolve"
)

// recordVersion changes whenever Record's meaning does.
const recordVersion = "2"

// Record is what a run needs from the store, for one image reference as
// the user spelled it, with one set of global flags.
type Record struct {
	ImageID   string `json:"image_id"`
	GraphRoot string `json:"graph_root"`
	RunDir    string `json:"run_dir"`
	// Lower are the image's layer directories, top first (overlay's
	// lowerdir order).
	Lower  []string       `json:"lower"`
	Config *resolve.Image `json:"config,omitempty"`
	// Stamps: the record is valid while these files are as they were.
	Stamps []Stamp `json:"stamps"`
}

// Stamp is a file's identity as far as a record cares: gone, or its size
// and modification time.
type Stamp struct {
	Path  string `json:"path"`
	Size  int64  `json:"size"` // -1: the file did not exist
	Mtime int64  `json:"mtime_ns"`
}

// StampOf reads a file's stamp.
func StampOf(path string) Stamp {
	st, err := os.Stat(path)
	if err != nil {
		return Stamp{Path: path, Size: -1}
	}
	return Stamp{Path: path, Size: st.Size(), Mtime: st.ModTime().UnixNano()}
}

// Key names the record of an image reference under the global flags
// (everything before the verb) and the environment that choose the store.
func Key(globalArgs []string, ref string) string {
	parts := []string{recordVersion, ref}
	for i := 0; i < len(globalArgs); i++ {
		// The log level chooses no store.
		switch a := globalArgs[i]; {
		case a == "--log-level":
			i++
		case strings.HasPrefix(a, "--log-level="):
		default:
			parts = append(parts, a)
		}
	}
	for _, v := range []string{"HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"} {
		parts = append(parts, v+"="+os.Getenv(v))
	}
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(sum[:16])
}

// recordPath is where the record of key lives: in the default run
// directory, which the fast path finds without reading any configuration.
func recordPath(defaultRunDir, key string) string {
	return filepath.Join(defaultRunDir, "fast", key+".json")
}

// Save writes a record atomically.
func Save(defaultRunDir, key string, r *Record) error {
	dir := filepath.Join(defaultRunDir, "fast")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".rec-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), recordPath(defaultRunDir, key))
}

var errStale = errors.New("stale record")

// Load reads the record of key and checks that it still holds.
func Load(defaultRunDir, key string) (*Record, error) {
	b, err := os.ReadFile(recordPath(defaultRunDir, key))
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	if len(r.Lower) == 0 || r.GraphRoot == "" || r.RunDir == "" {
		return nil, errStale
	}
	for _, s := range r.Stamps {
		if StampOf(s.Path) != s {
			return nil, errStale
		}
	}
	for _, l := range r.Lower {
		if _, err := os.Stat(l); err != nil {
			return nil, errStale
		}
	}
	return &r, nil
}
