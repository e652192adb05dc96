package cgroupv2

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// Of returns the cgroup of a running container, found from the cgroup of
// its init (pid, as the host sees it). unroot gives a container a cgroup
// of its own, <scope or unroot-ID>/container, only when it was started
// with resource limits; anything else is the user's own cgroup, which a
// container's stats or limits must not be taken from.
func Of(pid int) (*Cgroup, error) {
	h := detectHost()
	if h.mount == "" {
		return nil, &Error{Kind: KindCgroupV1, Reason: "this system has no cgroup v2 hierarchy with controllers",
			Fix: "boot with systemd.unified_cgroup_hierarchy=1 (an admin edits the kernel command line)"}
	}
	rel := currentCgroup(strconv.Itoa(pid))
	if rel == "" {
		return nil, fmt.Errorf("cgroupv2: cannot read the cgroup of process %d", pid)
	}
	if path.Base(rel) != "container" || !strings.HasPrefix(path.Base(path.Dir(rel)), "unroot-") {
		return nil, ErrNoOwnCgroup
	}
	return &Cgroup{top: filepath.Join(h.mount, path.Dir(rel)), path: filepath.Join(h.mount, rel), rel: rel}, nil
}

// ErrNoOwnCgroup: the container runs in the user's cgroup.
var ErrNoOwnCgroup = errors.New("the container has no cgroup of its own: unroot creates one when it is started with a resource limit (e.g. --memory or --pids-limit), where cgroup v2 delegation allows it")

// Update writes new limits into a running container's cgroup; only the
// limits set in l change.
func (c *Cgroup) Update(l Limits) error {
	if c == nil {
		return ErrNoOwnCgroup
	}
	if err := l.Validate(); err != nil {
		return err
	}
	return writeLimits(c.path, l)
}

// Limit reads a single-value limit file of the cgroup (e.g. memory.max):
// -1 for "max", 0 when absent.
func (c *Cgroup) Limit(file string) int64 {
	if c == nil {
		return 0
	}
	v, err := readUint(c.path, file)
	if err != nil {
		return 0
	}
	return int64(v) // "max" reads as MaxUint64, i.e. -1
}
