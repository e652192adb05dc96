package slirp

import (
	"bufio"
	"bytes"
	"net"
	"strings"
)

type resolvConf struct {
	Nameservers []string
	Search      []string
	Options     []string
}

func parseResolvConf(b []byte) resolvConf {
	var rc resolvConf
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		line := s.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "nameserver":
			rc.Nameservers = append(rc.Nameservers, f[1])
		case "search", "domain":
			rc.Search = f[1:] // the last one wins, as in glibc
		case "options":
			rc.Options = append(rc.Options, f[1:]...)
		}
	}
	return rc
}

// pickDNS decides the container's nameservers. user (--dns) wins. Otherwise
// the host's nameservers are used, unless the host uses a loopback resolver
// (systemd-resolved's 127.0.0.53, dnsmasq on 127.0.0.1, ...) that is not
// reachable from the container, or only IPv6 ones (the container has IPv4
// only): then the driver's DNS forwarder, which runs on the host side and
// does reach the host's resolver.
func pickDNS(user []string, host resolvConf, driverDNS []string) []string {
	if len(user) > 0 {
		return append([]string(nil), user...)
	}
	var v4 []string
	for _, ns := range host.Nameservers {
		ip := net.ParseIP(strings.SplitN(ns, "%", 2)[0])
		if ip == nil {
			continue
		}
		if ip.IsLoopback() || ip.IsUnspecified() {
			return append([]string(nil), driverDNS...)
		}
		if ip.To4() != nil {
			v4 = append(v4, ip.String())
		}
	}
	if len(v4) == 0 {
		return append([]string(nil), driverDNS...)
	}
	return v4
}
