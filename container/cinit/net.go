package cinit

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// LoopbackUp brings up lo in a network namespace of our own (--net=none).
func LoopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("reading lo's flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bringing lo up: %w", err)
	}
	return nil
}

// AllowPing lets every user of the container ping in a network namespace
// of its own: a new one starts with ping sockets disabled ("1 0"); it is
// ours, so, as in Podman, the range is every group id we map (gids of them).
func AllowPing(gids uint64) {
	_ = os.WriteFile("/proc/sys/net/ipv4/ping_group_range", []byte(fmt.Sprintf("0 %d", gids-1)), 0)
}
