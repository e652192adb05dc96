package slirp

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// PortSpec is one published port (Docker's -p / --publish).
type PortSpec struct {
	// Proto is "tcp" or "udp".
	Proto string `json:"proto"`
	// HostIP is the host address to listen on; "" means all IPv4 addresses
	// (0.0.0.0).
	HostIP string `json:"hostIP,omitempty"`
	// HostPort is the host port; 0 means "pick a free port" (resolved by
	// Setup, see Host.Ports).
	HostPort int `json:"hostPort"`
	// HostPortEnd, when > HostPort, makes Setup pick the first free port in
	// [HostPort, HostPortEnd] (Docker's "-p 8000-8010:80").
	HostPortEnd int `json:"hostPortEnd,omitempty"`
	// ContainerPort is the port inside the container.
	ContainerPort int `json:"containerPort"`
}

func (p PortSpec) String() string {
	ip := p.HostIP
	if strings.Contains(ip, ":") {
		ip = "[" + ip + "]"
	}
	hp := strconv.Itoa(p.HostPort)
	if p.HostPortEnd > p.HostPort {
		hp += "-" + strconv.Itoa(p.HostPortEnd)
	}
	if ip == "" {
		return fmt.Sprintf("%s:%d/%s", hp, p.ContainerPort, p.Proto)
	}
	return fmt.Sprintf("%s:%s:%d/%s", ip, hp, p.ContainerPort, p.Proto)
}

// ParsePublish parses one value of Docker's -p/--publish flag:
//
//	[ip:][hostPort:]containerPort[/tcp|/udp]
//
// ip may be IPv6 in brackets ("[::1]:8080:80"). hostPort and containerPort
// may be ranges ("8080-8082:80-82" yields three specs). An omitted or empty
// hostPort ("80", "127.0.0.1::80") means a random free host port. A host
// range with a single container port ("8000-8010:80") means "the first free
// port of the range".
func ParsePublish(s string) ([]PortSpec, error) {
	orig := s
	bad := func(format string, a ...any) error {
		return fmt.Errorf("invalid publish spec %q: %s", orig, fmt.Sprintf(format, a...))
	}
	if s == "" {
		return nil, bad("empty")
	}
	proto := "tcp"
	if i := strings.LastIndex(s, "/"); i >= 0 {
		proto = strings.ToLower(s[i+1:])
		s = s[:i]
		switch proto {
		case "tcp", "udp":
		case "sctp":
			return nil, bad("sctp is not supported by user-mode networking")
		default:
			return nil, bad("unknown protocol %q (want tcp or udp)", proto)
		}
	}

	var hostIP, hostPart, ctrPart string
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return nil, bad("missing ']'")
		}
		hostIP = s[1:end]
		rest := s[end+1:]
		if !strings.HasPrefix(rest, ":") {
			return nil, bad("expected ':' after the address")
		}
		rest = rest[1:]
		i := strings.LastIndex(rest, ":")
		if i < 0 {
			return nil, bad("missing container port")
		}
		hostPart, ctrPart = rest[:i], rest[i+1:]
		if net.ParseIP(hostIP) == nil {
			return nil, bad("invalid IP address %q", hostIP)
		}
	} else {
		parts := strings.Split(s, ":")
		switch len(parts) {
		case 1:
			ctrPart = parts[0]
		case 2:
			hostPart, ctrPart = parts[0], parts[1]
		case 3:
			hostIP, hostPart, ctrPart = parts[0], parts[1], parts[2]
			if net.ParseIP(hostIP) == nil {
				return nil, bad("invalid IP address %q", hostIP)
			}
		default:
			return nil, bad("too many ':' (use [addr] for IPv6 addresses)")
		}
	}
	if hostIP != "" {
		hostIP = net.ParseIP(hostIP).String()
	}
	cLo, cHi, err := parseRange(ctrPart)
	if err != nil {
		return nil, bad("container port: %v", err)
	}
	var hLo, hHi int
	if hostPart != "" {
		if hLo, hHi, err = parseRange(hostPart); err != nil {
			return nil, bad("host port: %v", err)
		}
	}
	n := cHi - cLo + 1
	var out []PortSpec
	switch {
	case hostPart == "":
		for p := cLo; p <= cHi; p++ {
			out = append(out, PortSpec{Proto: proto, HostIP: hostIP, ContainerPort: p})
		}
	case n == 1 && hHi > hLo:
		out = append(out, PortSpec{Proto: proto, HostIP: hostIP, HostPort: hLo, HostPortEnd: hHi, ContainerPort: cLo})
	case hHi-hLo+1 != n:
		return nil, bad("host port range and container port range differ in size")
	default:
		for i := 0; i < n; i++ {
			out = append(out, PortSpec{Proto: proto, HostIP: hostIP, HostPort: hLo + i, ContainerPort: cLo + i})
		}
	}
	return out, nil
}

func parseRange(s string) (lo, hi int, err error) {
	a, b, isRange := strings.Cut(s, "-")
	if lo, err = parsePort(a); err != nil {
		return 0, 0, err
	}
	hi = lo
	if isRange {
		if hi, err = parsePort(b); err != nil {
			return 0, 0, err
		}
		if hi < lo {
			return 0, 0, fmt.Errorf("invalid range %q", s)
		}
	}
	return lo, hi, nil
}

func parsePort(s string) (int, error) {
	if s == "" {
		return 0, fmt.Errorf("missing port number")
	}
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("invalid port %q (want 1-65535)", s)
	}
	return p, nil
}
