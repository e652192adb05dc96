package container

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/unroot/unroot/slirp"
)

// writeEtcFiles writes the container's /etc/hosts, /etc/hostname and
// /etc/resolv.conf into runDir; init bind-mounts them over the image's.
func writeEtcFiles(runDir string, p *Process, s *Spec, net *slirp.ChildConfig) (map[string]string, error) {
	var hosts, resolv string
	if net != nil {
		hosts, resolv = string(net.Hosts(p.Hostname)), string(net.ResolvConf())
	} else {
		hosts = "127.0.0.1\tlocalhost localhost.localdomain\n::1\tlocalhost ip6-localhost ip6-loopback\n"
		hosts += fmt.Sprintf("127.0.1.1\t%s\n", p.Hostname)
		resolv = resolvConf(s.Net)
		if len(s.DNS) > 0 {
			resolv = ""
			for _, d := range s.DNS {
				resolv += "nameserver " + d + "\n"
			}
		}
	}
	for _, h := range s.AddHosts {
		name, ip, _ := strings.Cut(h, ":")
		hosts += ip + "\t" + name + "\n"
	}
	files := map[string]string{
		"/etc/hostname":    p.Hostname + "\n",
		"/etc/hosts":       hosts,
		"/etc/resolv.conf": resolv,
	}
	out := map[string]string{}
	for ctrPath, content := range files {
		host := filepath.Join(runDir, filepath.Base(ctrPath))
		if err := os.WriteFile(host, []byte(content), 0o644); err != nil {
			return nil, err
		}
		out[ctrPath] = host
	}
	return out, nil
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
