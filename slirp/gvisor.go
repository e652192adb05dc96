//go:build !unroot_nogvisor

package slirp

import (
	"io"
	"net"

	"github.com/rootless-containers/rootlesskit/v3/pkg/network"
	rkgvisor "github.com/rootless-containers/rootlesskit/v3/pkg/network/gvisortapvsock"
	"github.com/rootless-containers/rootlesskit/v3/pkg/port"
	portgvisor "github.com/rootless-containers/rootlesskit/v3/pkg/port/gvisortapvsock"
)

// The embedded gvisor-tap-vsock stack lives in this file alone: the small
// user-facing binary (cmd/unroot-fast) is built without it (tag
// unroot_nogvisor), since its package initialisation (gopacket's tables)
// costs tens of milliseconds per exec.

// gvisorBuiltIn says whether this binary carries the gvisor driver.
const gvisorBuiltIn = true

func gvisorParent(logw io.Writer, mtu int, ipnet *net.IPNet, disableHostLoopback bool) (network.ParentDriver, error) {
	return rkgvisor.NewParentDriver(logw, mtu, ipnet, tapName, disableHostLoopback, false)
}

func gvisorPorts(logw io.Writer, stateDir string) (port.ParentDriver, error) {
	return portgvisor.NewParentDriver(logw, stateDir)
}

func gvisorChild() network.ChildDriver { return rkgvisor.NewChildDriver() }
