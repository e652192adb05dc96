package slirp

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	rkslirp "github.com/rootless-containers/rootlesskit/v3/pkg/network/slirp4netns"
	"github.com/unroot/unroot/image/paths"
)

// Choosing the network driver means asking the helpers what they are:
// `pasta --version` and `pasta --help`, `slirp4netns --help`, ~70 ms of
// exec's here, and a detached run asks twice (the engine and the detached
// process). The answers are kept in the user's run directory (a tmpfs,
// gone at reboot), each under the helper's path, size and modification
// time and the kernel's release: an upgrade of either asks again.

// probe is one helper's remembered answer.
type probe struct {
	Size     int64             `json:"size"`
	MTime    int64             `json:"mtime"`
	Err      string            `json:"err,omitempty"`
	Features *rkslirp.Features `json:"features,omitempty"`
}

// probeFile is the cache file's content.
type probeFile struct {
	Kernel string           `json:"kernel"`
	Probes map[string]probe `json:"probes"` // by the helper's path
}

var probeMu sync.Mutex

// probeCachePath is where the answers are kept: "" for nowhere, as when
// the run directory (under /tmp without XDG_RUNTIME_DIR) is not ours, and
// someone else could write the answers.
var probeCachePath = func() string {
	dir := paths.Default().Run
	if paths.EnsureRunDir(dir) != nil {
		return ""
	}
	return filepath.Join(dir, "netprobe.json")
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// cachedProbe returns the remembered answer for the helper at bin, if it
// is still the same file on the same kernel.
func cachedProbe(bin string) (probe, bool) {
	st, err := os.Stat(bin)
	if err != nil {
		return probe{}, false
	}
	probeMu.Lock()
	defer probeMu.Unlock()
	f := readProbes()
	p, ok := f.Probes[bin]
	if !ok || f.Kernel != kernelRelease() || p.Size != st.Size() || p.MTime != st.ModTime().UnixNano() {
		return probe{}, false
	}
	return p, true
}

// rememberProbe stores the answer for the helper at bin (best effort).
func rememberProbe(bin string, err error, features *rkslirp.Features) {
	st, serr := os.Stat(bin)
	path := probeCachePath()
	if serr != nil || path == "" {
		return
	}
	p := probe{Size: st.Size(), MTime: st.ModTime().UnixNano(), Features: features}
	if err != nil {
		p.Err = err.Error()
	}
	probeMu.Lock()
	defer probeMu.Unlock()
	f := readProbes()
	if f.Kernel != kernelRelease() {
		f = probeFile{Kernel: kernelRelease()}
	}
	if f.Probes == nil {
		f.Probes = map[string]probe{}
	}
	f.Probes[bin] = p
	b, merr := json.Marshal(f)
	if merr != nil || os.MkdirAll(filepath.Dir(path), 0o700) != nil {
		return
	}
	// Whole or not at all: concurrent runs may write it at once.
	tmp, terr := os.CreateTemp(filepath.Dir(path), ".netprobe-*")
	if terr != nil {
		return
	}
	_, werr := tmp.Write(b)
	if cerr := tmp.Close(); werr != nil || cerr != nil || os.Rename(tmp.Name(), path) != nil {
		os.Remove(tmp.Name())
	}
}

func readProbes() probeFile {
	var f probeFile
	if path := probeCachePath(); path != "" {
		if b, err := os.ReadFile(path); err == nil {
			_ = json.Unmarshal(b, &f)
		}
	}
	return f
}

func probeErr(p probe) error {
	if p.Err == "" {
		return nil
	}
	return errors.New(p.Err)
}
