// Package ifconf configures a network interface from inside its network
// namespace: what `ip link set dev D mtu M up`, `ip addr add IP/N dev D`
// and `ip route add default via GW dev D` do, without ip(8), whose two
// runs were ~10 ms of every start with a user-mode network here. It is a
// package of its own, free of RootlessKit, because the container's init
// links it (a direct init configures its own interface).
package ifconf

import (
	"encoding/binary"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// Up brings the interface dev up, with mtu when it is not 0.
func Up(dev string, mtu int) error {
	return withIfreq(dev, func(fd int, ifr *unix.Ifreq) error {
		if mtu != 0 {
			ifr.SetUint32(uint32(mtu))
			if err := unix.IoctlIfreq(fd, unix.SIOCSIFMTU, ifr); err != nil {
				return fmt.Errorf("setting the MTU of %s to %d: %w", dev, mtu, err)
			}
		}
		if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
			return fmt.Errorf("reading the flags of %s: %w", dev, err)
		}
		ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
		if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
			return fmt.Errorf("bringing %s up: %w", dev, err)
		}
		return nil
	})
}

// Address gives dev its IPv4 address ip/prefix (the kernel adds the
// subnet's route) and a default route via gw.
func Address(dev, ip string, prefix int, gw string) error {
	addr, gwAddr := net.ParseIP(ip).To4(), net.ParseIP(gw).To4()
	if addr == nil || gwAddr == nil || prefix < 0 || prefix > 32 {
		return fmt.Errorf("bad address %s/%d via %s", ip, prefix, gw)
	}
	var index uint32
	err := withIfreq(dev, func(fd int, ifr *unix.Ifreq) error {
		if err := ifr.SetInet4Addr(addr); err != nil {
			return err
		}
		if err := unix.IoctlIfreq(fd, unix.SIOCSIFADDR, ifr); err != nil {
			return fmt.Errorf("setting the address of %s: %w", dev, err)
		}
		if err := ifr.SetInet4Addr(net.CIDRMask(prefix, 32)); err != nil {
			return err
		}
		if err := unix.IoctlIfreq(fd, unix.SIOCSIFNETMASK, ifr); err != nil {
			return fmt.Errorf("setting the netmask of %s: %w", dev, err)
		}
		if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
			return fmt.Errorf("finding %s: %w", dev, err)
		}
		index = ifr.Uint32()
		return nil
	})
	if err != nil {
		return err
	}
	if err := addDefaultRoute(gwAddr, index); err != nil {
		return fmt.Errorf("adding the default route via %s: %w", gw, err)
	}
	return nil
}

func withIfreq(dev string, f func(fd int, ifr *unix.Ifreq) error) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(dev)
	if err != nil {
		return err
	}
	return f(fd, ifr)
}

// addDefaultRoute sends RTM_NEWROUTE (default via gw, out of the interface
// index) and reads the kernel's answer.
func addDefaultRoute(gw net.IP, index uint32) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	attr := func(b []byte, typ uint16, v []byte) []byte {
		l := unix.SizeofRtAttr + len(v)
		b = binary.NativeEndian.AppendUint16(b, uint16(l))
		b = binary.NativeEndian.AppendUint16(b, typ)
		b = append(b, v...)
		for len(b)%unix.NLMSG_ALIGNTO != 0 {
			b = append(b, 0)
		}
		return b
	}
	b := make([]byte, unix.SizeofNlMsghdr, 64)
	b = append(b, unix.AF_INET, 0, 0, 0, // family, dst_len, src_len, tos
		unix.RT_TABLE_MAIN, unix.RTPROT_BOOT, unix.RT_SCOPE_UNIVERSE, unix.RTN_UNICAST,
		0, 0, 0, 0) // flags
	b = attr(b, unix.RTA_GATEWAY, gw)
	b = attr(b, unix.RTA_OIF, binary.NativeEndian.AppendUint32(nil, index))
	binary.NativeEndian.PutUint32(b[0:], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:], unix.RTM_NEWROUTE)
	binary.NativeEndian.PutUint16(b[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_EXCL)
	binary.NativeEndian.PutUint32(b[8:], 1) // seq
	if err := unix.Sendto(fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return err
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if m.Header.Type == syscall.NLMSG_ERROR && len(m.Data) >= 4 {
			if e := int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
				return unix.Errno(-e)
			}
			return nil
		}
	}
	return fmt.Errorf("no answer from the kernel")
}
