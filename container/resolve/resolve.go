// Package resolve turns what the user asked for and an image's config into
// the container's process, the way Docker does, and writes the generated
// /etc files. It is shared by the full run path and the fast one, so it
// must stay light: no store, no network stack.
package resolve

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/unroot/unroot/container/cinit"
)

// Request is the part of a run's flags that shapes its process.
type Request struct {
	ID         string // the container id; its first 12 digits are the default host name
	Image      string
	Cmd        []string
	Entrypoint *string // --entrypoint; nil: the image's
	Env        []string
	Workdir    string
	User       string
	Hostname   string
	Tty        bool
	Net        string
	CapAdd     []string
	CapDrop    []string
	Mounts     []cinit.Mount
	ReadOnly   bool
	// OOMScoreAdj: --oom-score-adj, 0 for unchanged.
	OOMScoreAdj int
}

// Image is the part of an image's config a run uses: the OCI image
// spec's ImageConfig fields by their JSON names. A type of its own keeps
// the image-spec module (and go-digest's regexps, compiled at start-up)
// out of the fast binary.
type Image struct {
	Config ImageConfig `json:"config"`
}

// ImageConfig mirrors the OCI ImageConfig fields unroot uses.
type ImageConfig struct {
	User       string            `json:"User,omitempty"`
	Env        []string          `json:"Env,omitempty"`
	Entrypoint []string          `json:"Entrypoint,omitempty"`
	Cmd        []string          `json:"Cmd,omitempty"`
	WorkingDir string            `json:"WorkingDir,omitempty"`
	StopSignal string            `json:"StopSignal,omitempty"`
	Labels     map[string]string `json:"Labels,omitempty"`
}

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Process merges the image config with the user's flags: --entrypoint
// replaces the image's entrypoint and drops its Cmd; CMD arguments replace
// the image's Cmd; -e adds to and overrides the image's Env.
func Process(r Request, cfg *Image) (*cinit.Process, error) {
	var ic ImageConfig
	if cfg != nil {
		ic = cfg.Config
	}
	entry := ic.Entrypoint
	cmd := ic.Cmd
	if r.Entrypoint != nil {
		entry = nil
		if *r.Entrypoint != "" {
			entry = []string{*r.Entrypoint}
		}
		cmd = nil
	}
	if len(r.Cmd) > 0 {
		cmd = r.Cmd
	}
	args := append(append([]string{}, entry...), cmd...)
	if len(args) == 0 {
		return nil, fmt.Errorf("no command given and image %s has no Cmd or Entrypoint: add a command after the image name", r.Image)
	}
	p := &cinit.Process{
		Args:     args,
		Env:      MergeEnv(ic.Env, r.Env),
		Cwd:      ic.WorkingDir,
		User:     ic.User,
		Hostname: r.Hostname,
		Tty:      r.Tty,
		Net:      r.Net,
	}
	if r.Workdir != "" {
		p.Cwd = r.Workdir
	}
	if p.Cwd == "" {
		p.Cwd = "/"
	}
	if r.User != "" {
		p.User = r.User
	}
	if p.Hostname == "" {
		p.Hostname = r.ID[:12]
	}
	if !cinit.HasEnv(p.Env, "PATH") {
		p.Env = append([]string{defaultPath}, p.Env...)
	}
	if r.Tty && !cinit.HasEnv(p.Env, "TERM") {
		p.Env = append(p.Env, "TERM=xterm")
	}
	if !cinit.HasEnv(p.Env, "HOSTNAME") {
		p.Env = append(p.Env, "HOSTNAME="+p.Hostname)
	}
	if r.OOMScoreAdj != 0 {
		v := r.OOMScoreAdj
		p.OOMScoreAdj = &v
	}
	caps, err := cinit.Capabilities(r.CapAdd, r.CapDrop)
	if err != nil {
		return nil, err
	}
	p.Caps = caps
	p.Mounts, p.ReadOnly = r.Mounts, r.ReadOnly
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

// Etc says what goes into the container's /etc/hosts and /etc/resolv.conf.
type Etc struct {
	Net      string   // none, host, or a user-mode driver
	DNS      []string // --dns
	AddHosts []string // --add-host HOST:IP
	// Hosts and ResolvConf, when set, come from the user-mode network.
	Hosts, ResolvConf string
}

// WriteEtcFiles writes the container's /etc/hosts, /etc/hostname and
// /etc/resolv.conf into runDir and returns them as container path -> host
// file, for the init to bind-mount over the image's.
func WriteEtcFiles(runDir, hostname string, e Etc) (map[string]string, error) {
	out := map[string]string{}
	for ctrPath, content := range EtcContents(hostname, e) {
		host := filepath.Join(runDir, filepath.Base(ctrPath))
		if err := os.WriteFile(host, []byte(content), 0o644); err != nil {
			return nil, err
		}
		out[ctrPath] = host
	}
	return out, nil
}

// EtcContents returns the container's /etc/hosts, /etc/hostname and
// /etc/resolv.conf, by container path.
func EtcContents(hostname string, e Etc) map[string]string {
	hosts, resolv := e.Hosts, e.ResolvConf
	if hosts == "" {
		hosts = "127.0.0.1\tlocalhost localhost.localdomain\n::1\tlocalhost ip6-localhost ip6-loopback\n"
		hosts += fmt.Sprintf("127.0.1.1\t%s\n", hostname)
		resolv = resolvConf(e.Net)
		if len(e.DNS) > 0 {
			resolv = ""
			for _, d := range e.DNS {
				resolv += "nameserver " + d + "\n"
			}
		}
	}
	for _, h := range e.AddHosts {
		name, ip, _ := strings.Cut(h, ":")
		hosts += ip + "\t" + name + "\n"
	}
	return map[string]string{
		"/etc/hostname":    hostname + "\n",
		"/etc/hosts":       hosts,
		"/etc/resolv.conf": resolv,
	}
}

// resolvConf copies the host's nameservers. A loopback resolver (systemd's
// 127.0.0.53, dnsmasq) is only reachable with the host's network; in an
// isolated network namespace it would answer nothing, so it is replaced by
// the one systemd-resolved forwards to, when known.
func resolvConf(net string) string {
	src := "/etc/resolv.conf"
	if net != "host" {
		if b, err := os.ReadFile(src); err == nil && strings.Contains(string(b), "nameserver 127.") {
			if _, err := os.Stat("/run/systemd/resolve/resolv.conf"); err == nil {
				src = "/run/systemd/resolve/resolv.conf"
			}
		}
	}
	f, err := os.Open(src)
	if err != nil {
		return ""
	}
	defer f.Close()
	var b strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}
