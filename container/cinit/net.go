package cinit

import (
	"fmt"
	"os"

	"github.com/unroot/unroot/slirp/ifconf"
)

// LoopbackUp brings up lo in a network namespace of our own.
func LoopbackUp() error { return ifconf.Up("lo", 0) }

// AllowPing lets every user of the container ping in a network namespace
// of its own: a new one starts with ping sockets disabled ("1 0"); it is
// ours, so, as in Podman, the range is every group id we map (gids of them).
func AllowPing(gids uint64) {
	_ = os.WriteFile("/proc/sys/net/ipv4/ping_group_range", []byte(fmt.Sprintf("0 %d", gids-1)), 0)
}
