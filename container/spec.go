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
	"strings"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/unroot/unroot/cgroupv2"
	"github.com/unroot/unroot/container/cinit"
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
	// StopSignal: --stop-signal (else the image's, else SIGTERM).
	StopSignal string `json:"stop_signal,omitempty"`
	// SignalsFromTTY: the user's terminal delivers INT/QUIT/TSTP to the
	// monitor directly, so nobody must forward them a second time.
	SignalsFromTTY bool `json:"signals_from_tty"`
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

// UserModeNet says whether the container gets a user-mode network (and
// so a network namespace wired to the host by package slirp).
func (s *Spec) UserModeNet() bool { return s.Net != "none" && s.Net != "host" }

// NewID returns a 64-hex-digit container id.
func NewID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Resolve merges the image config with the user's flags the way Docker
// does: --entrypoint replaces the image's entrypoint and drops its Cmd; CMD
// arguments replace the image's Cmd; -e adds to and overrides image Env.
func Resolve(s *Spec, cfg *v1.Image) (*Process, error) {
	var ic v1.ImageConfig
	if cfg != nil {
		ic = cfg.Config
	}
	entry := ic.Entrypoint
	cmd := ic.Cmd
	if s.Entrypoint != nil {
		entry = nil
		if *s.Entrypoint != "" {
			entry = []string{*s.Entrypoint}
		}
		cmd = nil
	}
	if len(s.Cmd) > 0 {
		cmd = s.Cmd
	}
	args := append(append([]string{}, entry...), cmd...)
	if len(args) == 0 {
		return nil, fmt.Errorf("no command given and image %s has no Cmd or Entrypoint: add a command after the image name", s.Image)
	}
	p := &Process{
		Args:     args,
		Env:      MergeEnv(ic.Env, s.Env),
		Cwd:      ic.WorkingDir,
		User:     ic.User,
		Hostname: s.Hostname,
		Tty:      s.Tty,
		Net:      s.Net,
	}
	if s.Workdir != "" {
		p.Cwd = s.Workdir
	}
	if p.Cwd == "" {
		p.Cwd = "/"
	}
	if s.User != "" {
		p.User = s.User
	}
	if p.Hostname == "" {
		p.Hostname = s.ID[:12]
	}
	if !hasEnv(p.Env, "PATH") {
		p.Env = append([]string{defaultPath}, p.Env...)
	}
	if s.Tty && !hasEnv(p.Env, "TERM") {
		p.Env = append(p.Env, "TERM=xterm")
	}
	if !hasEnv(p.Env, "HOSTNAME") {
		p.Env = append(p.Env, "HOSTNAME="+p.Hostname)
	}
	if s.Limits.OOMScoreAdj != 0 {
		v := s.Limits.OOMScoreAdj
		p.OOMScoreAdj = &v
	}
	caps, err := cinit.Capabilities(s.CapAdd, s.CapDrop)
	if err != nil {
		return nil, err
	}
	p.Caps = caps
	p.Mounts, p.ReadOnly = s.Mounts, s.ReadOnly
	return p, nil
}

// MergeEnv applies overrides (KEY=VALUE, or KEY alone to drop it) to base.
func MergeEnv(base, overrides []string) []string {
	out := append([]string{}, base...)
	for _, o := range overrides {
		k, _, hasVal := strings.Cut(o, "=")
		idx := -1
		for i, e := range out {
			if ek, _, _ := strings.Cut(e, "="); ek == k {
				idx = i
				break
			}
		}
		switch {
		case idx >= 0 && hasVal:
			out[idx] = o
		case idx < 0 && hasVal:
			out = append(out, o)
		}
	}
	return out
}

func hasEnv(env []string, k string) bool { return cinit.HasEnv(env, k) }

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
