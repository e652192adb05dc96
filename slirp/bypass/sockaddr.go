package bypass

import (
	"encoding/binary"
	"net/netip"

	"golang.org/x/sys/unix"
)

// parseSockaddr decodes a struct sockaddr_in or sockaddr_in6 as the
// container passed it to connect(2); v4-mapped IPv6 addresses are
// unmapped. ok is false for anything else.
func parseSockaddr(b []byte) (addr netip.Addr, port uint16, ok bool) {
	if len(b) < 2 {
		return addr, 0, false
	}
	switch binary.NativeEndian.Uint16(b) {
	case unix.AF_INET:
		if len(b) < unix.SizeofSockaddrInet4 {
			return addr, 0, false
		}
		return netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:4]), true
	case unix.AF_INET6:
		if len(b) < unix.SizeofSockaddrInet6 {
			return addr, 0, false
		}
		return netip.AddrFrom16([16]byte(b[8:24])).Unmap(), binary.BigEndian.Uint16(b[2:4]), true
	}
	return addr, 0, false
}

// target says whether a connect(2) to sockaddr b is for the host's
// loopback seen from the container (hostLoopback, e.g. 10.0.2.2), and
// which port of the host's 127.0.0.1 it then goes to.
func target(b []byte, hostLoopback netip.Addr) (uint16, bool) {
	addr, port, ok := parseSockaddr(b)
	if !ok || !hostLoopback.IsValid() || addr != hostLoopback || port == 0 {
		return 0, false
	}
	return port, true
}
