// Package container turns an image and the user's flags into a running
// process: the container's rootfs and mounts, its namespaces, capabilities
// and exit status. The host half (run.go) talks to the monitor (monitor.go,
// root in unroot's user namespace) which starts the container's init
// (init.go, PID 1 of the container).
package container

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"strconv"
	"strings"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/unroot/unroot/cgroupv2"
	"github.com/unroot/unroot/container/cinit"
	"github.com/unroot/unroot/container/resolve"
	"github.com/unroot/unroot/idmap"
	"github.com/unroot/unroot/image"
	"github.com/unroot/unroot/slirp"
)

// Spec is everything the monitor and init need to create a container.
type Spec struct {
	ID       string                `json:"id"`
	Name     string                `json:"name,omitempty"`
	Image    string                `json:"image"`
	Pull     string                `json:"pull"` // missing|always|never
	Registry image.RegistryOptions `json:"registry"`
	Store    image.StoreOptions    `json:"store"`
	RunDir   string                `json:"run_dir"`
	Mapping  idmap.Mapping         `json:"mapping"`
	// KeepID: --userns=keep-id (the caller's ids inside); nil otherwise.
	KeepID *KeepID `json:"keep_id,omitempty"`

	// What the user asked for; merged with the image config by Resolve.
	Cmd                 []string         `json:"cmd,omitempty"`
	Entrypoint          *string          `json:"entrypoint,omitempty"`
	Env                 []string         `json:"env,omitempty"`
	Workdir             string           `json:"workdir,omitempty"`
	User                string           `json:"user,omitempty"`
	Hostname            string           `json:"hostname,omitempty"`
	Tty                 bool             `json:"tty"`
	Stdin               bool             `json:"stdin"`
	Net                 string           `json:"net"` // none|host|auto|pasta|slirp4netns|gvisor
	Publish             []slirp.PortSpec `json:"publish,omitempty"`
	PortDriver          string           `json:"port_driver,omitempty"` // slirp.Options.PortDriver
	DNS                 []string         `json:"dns,omitempty"`
	AddHosts            []string         `json:"add_hosts,omitempty"` // host:ip
	MTU                 int              `json:"mtu,omitempty"`
	DisableHostLoopback bool             `json:"disable_host_loopback,omitempty"`
	Limits              cgroupv2.Limits  `json:"limits"`
	Cgroups             string           `json:"cgroups,omitempty"` // enabled|disabled
	// NetBypass: the container's TCP connections to the host loopback
	// skip the user-mode stack (package slirp/bypass). Set by the host
	// side; the init passes the seccomp listener up on the monitor's
	// extra file NetBypassExtra (after the terminal's socket, if any).
	NetBypass bool `json:"net_bypass,omitempty"`
	// NetResident: the container's network is left to its init (package
	// slirp's resident.go; set by the host side with OwnLog): the
	// monitor's extra files from NetResidentExtra on are slirp4netns's
	// exit pipe and then the listening sockets of Forward, the published
	// ports the init forwards.
	NetResident bool             `json:"net_resident,omitempty"`
	Forward     []slirp.PortSpec `json:"forward,omitempty"`
	// CgroupPath is the container's cgroup (set by the host side).
	CgroupPath string   `json:"cgroup_path,omitempty"`
	Remove     bool     `json:"remove"`
	CapAdd     []string `json:"cap_add,omitempty"`
	CapDrop    []string `json:"cap_drop,omitempty"`
	Quiet      bool     `json:"quiet"`
	// Mounts: -v and --tmpfs (host paths absolute); ReadOnly: --read-only.
	Mounts   []Mount `json:"mounts,omitempty"`
	ReadOnly bool    `json:"read_only,omitempty"`
	// LeanMonitor: once the container runs, the monitor re-executes itself
	// as the small waiter (a detached container that is not --rm).
	LeanMonitor bool `json:"lean_monitor,omitempty"`
	// OwnLog: once the container runs, its init is its only unroot
	// process: it writes the log and the exit file itself, and the
	// monitor and the host side exit (see OneProcess). Set by the
	// detached process.
	OwnLog *OwnLog `json:"own_log,omitempty"`
	// StopSignal: --stop-signal (else the image's, else SIGTERM).
	StopSignal string `json:"stop_signal,omitempty"`
	// SignalsFromTTY: the user's terminal delivers INT/QUIT/TSTP to the
	// monitor directly, so nobody must forward them a second time.
	SignalsFromTTY bool `json:"signals_from_tty"`
	// Fast: where to leave the fast path a record of the image.
	Fast *FastTarget `json:"fast,omitempty"`
	// Restart: --restart, carried out by the detached process (run -d).
	Restart RestartPolicy `json:"restart,omitempty"`
	// Labels: --label and --label-file (the image's are merged at start).
	Labels map[string]string `json:"labels,omitempty"`
}

// RestartPolicy is Docker's --restart: no, on-failure[:N], always,
// unless-stopped.
type RestartPolicy struct {
	Name       string `json:"name,omitempty"`
	MaxRetries int    `json:"max_retries,omitempty"`
}

// ParseRestart parses --restart as Docker does.
func ParseRestart(v string) (RestartPolicy, error) {
	name, count, hasCount := strings.Cut(v, ":")
	p := RestartPolicy{Name: name}
	switch name {
	case "", "no":
		p.Name = "no"
		if hasCount {
			return p, fmt.Errorf("--restart %q: a retry count goes only with on-failure (on-failure:N)", v)
		}
	case "always", "unless-stopped":
		if hasCount {
			return p, fmt.Errorf("--restart %q: a retry count goes only with on-failure: use on-failure:%s, or %s alone", v, count, name)
		}
	case "on-failure":
		if hasCount {
			n, err := strconv.Atoi(count)
			if err != nil || n < 0 {
				return p, fmt.Errorf("--restart %q: the retry count must be a number >= 0 (on-failure:3)", v)
			}
			p.MaxRetries = n
		}
	default:
		return p, fmt.Errorf("--restart %q: use no, on-failure[:MAX-RETRIES], always or unless-stopped", v)
	}
	return p, nil
}

// Any says whether the policy may restart the container at all.
func (p RestartPolicy) Any() bool { return p.Name != "" && p.Name != "no" }

// ShouldRestart says whether a process that exited with code, after
// restarts restarts, is started again. A stop by the user is checked by
// the caller (State.ManuallyStopped).
func (p RestartPolicy) ShouldRestart(code, restarts int) bool {
	switch p.Name {
	case "always", "unless-stopped":
		return true
	case "on-failure":
		return code != 0 && (p.MaxRetries == 0 || restarts < p.MaxRetries)
	}
	return false
}

// Process is the resolved process of a container (the init stage's input).
type Process = cinit.Process

// Mount is a volume of the container.
type Mount = cinit.Mount

// NetBypassExtra is the index, among the monitor's extra files, of the
// network bypass's socket (after the terminal's socket, if any).
func (s *Spec) NetBypassExtra() int {
	if s.Tty {
		return 1
	}
	return 0
}

// NetResidentExtra is the index, among the monitor's extra files, of
// slirp4netns's exit pipe (there is no terminal and no bypass then).
func (s *Spec) NetResidentExtra() int { return 0 }

// UserModeNet says whether the container gets a user-mode network (and
// so a network namespace wired to the host by package slirp).
func (s *Spec) UserModeNet() bool { return s.Net != "none" && s.Net != "host" }

// NewID returns a 64-hex-digit container id.
func NewID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Resolve merges the image config with the user's flags the way Docker
// does (package resolve).
func Resolve(s *Spec, cfg *v1.Image) (*Process, error) {
	return resolve.Process(s.request(), imageOf(cfg))
}

// imageOf keeps what a run uses of an OCI image config.
func imageOf(cfg *v1.Image) *resolve.Image {
	if cfg == nil {
		return nil
	}
	c := cfg.Config
	return &resolve.Image{Config: resolve.ImageConfig{
		User: c.User, Env: c.Env, Entrypoint: c.Entrypoint, Cmd: c.Cmd,
		WorkingDir: c.WorkingDir, StopSignal: c.StopSignal, Labels: c.Labels,
	}}
}

// request is the part of the spec that shapes the process.
func (s *Spec) request() resolve.Request {
	return resolve.Request{
		ID: s.ID, Image: s.Image, Cmd: s.Cmd, Entrypoint: s.Entrypoint, Env: s.Env,
		Workdir: s.Workdir, User: s.User, Hostname: s.Hostname, Tty: s.Tty, Net: s.Net,
		CapAdd: s.CapAdd, CapDrop: s.CapDrop, Mounts: s.Mounts, ReadOnly: s.ReadOnly,
		OOMScoreAdj: s.Limits.OOMScoreAdj,
	}
}

// MergeLabels returns the image's labels with the user's over them (nil
// when there are none).
func MergeLabels(image, user map[string]string) map[string]string {
	if len(image)+len(user) == 0 {
		return nil
	}
	out := maps.Clone(image)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, user)
	return out
}

// Exit codes, as Docker uses them.
const (
	ExitSetup     = cinit.ExitSetup
	ExitCannotRun = cinit.ExitCannotRun
	ExitNotFound  = cinit.ExitNotFound
	StageInit     = cinit.StageInit
)

func fail(code int, err error) int { return cinit.Fail(code, err) }

// Capabilities applies --cap-add/--cap-drop to Docker's default set.
func Capabilities(add, drop []string) ([]string, error) { return cinit.Capabilities(add, drop) }
