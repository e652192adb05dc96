//go:build unroot_nogvisor

package slirp

import (
	"errors"
	"io"
	"net"

	"github.com/rootless-containers/rootlesskit/v3/pkg/network"
	"github.com/rootless-containers/rootlesskit/v3/pkg/port"
)

// gvisorBuiltIn says whether this binary carries the gvisor driver.
const gvisorBuiltIn = false

var errNoGvisor = errors.New("this binary is built without the embedded gvisor-tap-vsock stack")

func gvisorParent(io.Writer, int, *net.IPNet, bool) (network.ParentDriver, error) {
	return nil, errNoGvisor
}

func gvisorPorts(io.Writer, string) (port.ParentDriver, error) { return nil, errNoGvisor }

func gvisorChild() network.ChildDriver { return nil }
