package container

import (
	"github.com/unroot/unroot/container/resolve"
	"github.com/unroot/unroot/slirp"
)

// writeEtcFiles writes the container's /etc/hosts, /etc/hostname and
// /etc/resolv.conf into runDir; init bind-mounts them over the image's.
func writeEtcFiles(runDir string, p *Process, s *Spec, net *slirp.ChildConfig) (map[string]string, error) {
	e := resolve.Etc{Net: s.Net, DNS: s.DNS, AddHosts: s.AddHosts}
	if net != nil {
		e.Hosts, e.ResolvConf = string(net.Hosts(p.Hostname)), string(net.ResolvConf())
	}
	return resolve.WriteEtcFiles(runDir, p.Hostname, e)
}
