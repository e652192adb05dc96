package slirp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rootless-containers/rootlesskit/v3/pkg/messages"
	"github.com/rootless-containers/rootlesskit/v3/pkg/network"
	rkpasta "github.com/rootless-containers/rootlesskit/v3/pkg/network/pasta"
	rkslirp "github.com/rootless-containers/rootlesskit/v3/pkg/network/slirp4netns"
	"github.com/rootless-containers/rootlesskit/v3/pkg/port/builtin"
	bopaque "github.com/rootless-containers/rootlesskit/v3/pkg/port/builtin/opaque"

	"github.com/unroot/unroot/slirp/ifconf"
)

// ChildConfig is what the host side (Setup, in A) hands to the container's
// monitor (ConfigureChild, in B). It is JSON-serialisable.
type ChildConfig struct {
	Driver Driver `json:"driver"`

	// Interface inside the container's netns.
	Dev     string `json:"dev"`
	IP      string `json:"ip"`
	Netmask int    `json:"netmask"`
	Gateway string `json:"gateway"`
	MTU     int    `json:"mtu"`
	// InterfaceConfigured is true when the driver itself has already put
	// the address and routes on Dev (pasta --config-net).
	InterfaceConfigured bool              `json:"interfaceConfigured,omitempty"`
	NetworkOpaque       map[string]string `json:"networkOpaque,omitempty"`

	// PortDriver is "builtin" when B has to run the child half of the
	// port forwarder (pasta); empty when everything runs in A.
	PortDriver string            `json:"portDriver,omitempty"`
	PortOpaque map[string]string `json:"portOpaque,omitempty"`

	// For the container's /etc/resolv.conf (see ResolvConf).
	DNS        []string `json:"dns"`
	DNSSearch  []string `json:"dnsSearch,omitempty"`
	DNSOptions []string `json:"dnsOptions,omitempty"`
	// HostLoopback is the address under which the host's 127.0.0.1 is
	// reachable from the container (host.containers.internal /
	// host.docker.internal); "" with DisableHostLoopback.
	HostLoopback string `json:"hostLoopback,omitempty"`
}

// NeedsMonitor says whether the network needs B (the process that ran
// ConfigureChild) alive for the container's lifetime: gvisor's frame pump
// between the tap device and A, and the builtin port forwarder's child
// half, are goroutines in B. slirp4netns and pasta with the native port
// forwarding need nothing from B.
func (c ChildConfig) NeedsMonitor() bool {
	return c.Driver == DriverGvisor || c.PortDriver == PortBuiltin
}

// ResolvConf renders the container's /etc/resolv.conf.
func (c ChildConfig) ResolvConf() []byte {
	var b bytes.Buffer
	if len(c.DNSSearch) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(c.DNSSearch, " "))
	}
	for _, ns := range c.DNS {
		fmt.Fprintf(&b, "nameserver %s\n", ns)
	}
	if len(c.DNSOptions) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(c.DNSOptions, " "))
	}
	return b.Bytes()
}

// Hosts renders the container's /etc/hosts for the given hostname.
func (c ChildConfig) Hosts(hostname string) []byte {
	var b bytes.Buffer
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	if hostname != "" && c.IP != "" {
		fmt.Fprintf(&b, "%s\t%s\n", c.IP, hostname)
	}
	if c.HostLoopback != "" {
		fmt.Fprintf(&b, "%s\thost.containers.internal host.docker.internal\n", c.HostLoopback)
	}
	return b.Bytes()
}

func childNetworkDriver(d Driver) (network.ChildDriver, error) {
	switch d {
	case DriverGvisor:
		if !gvisorBuiltIn {
			return nil, errors.New("slirp: the gvisor driver is not in this binary")
		}
		return gvisorChild(), nil
	case DriverSlirp4netns:
		return rkslirp.NewChildDriver(), nil
	case DriverPasta:
		return rkpasta.NewChildDriver(), nil
	}
	return nil, fmt.Errorf("slirp: unknown driver %q", d)
}

// ConfigureChild runs in B: root in the container's user namespace, inside
// its network namespace, before pivot_root (it opens /dev/net/tun and uses
// sockets under the state directory).
//
// It brings lo up, attaches the driver's tap device, sets address, MTU and
// default route, and, for pasta, starts the in-namespace half of the port
// forwarder. For gvisor and the builtin port forwarder it leaves goroutines
// running: B must stay alive (as the container's monitor) for the
// container's lifetime, and must not exec into the container's process.
func ConfigureChild(cfg ChildConfig) error {
	cd, err := childNetworkDriver(cfg.Driver)
	if err != nil {
		return err
	}
	if err := ifconf.Up("lo", 0); err != nil {
		return fmt.Errorf("slirp: %w", err)
	}
	netmsg := &messages.ParentInitNetworkDriverCompleted{
		Dev:                 cfg.Dev,
		IP:                  cfg.IP,
		Netmask:             cfg.Netmask,
		Gateway:             cfg.Gateway,
		DNS:                 cfg.DNS,
		MTU:                 cfg.MTU,
		NetworkDriverOpaque: cfg.NetworkOpaque,
	}
	dev, err := cd.ConfigureNetworkChild(netmsg, "")
	if err != nil {
		return fmt.Errorf("slirp: %s: configuring the container side: %w", cfg.Driver, err)
	}
	if !cfg.InterfaceConfigured {
		if err := ifconf.Up(dev, cfg.MTU); err != nil {
			return fmt.Errorf("slirp: %w", err)
		}
		if err := ifconf.Address(dev, cfg.IP, cfg.Netmask, cfg.Gateway); err != nil {
			return fmt.Errorf("slirp: %w", err)
		}
	}
	if cfg.PortDriver == "builtin" {
		if err := startBuiltinPortChild(cfg.PortOpaque); err != nil {
			return err
		}
	}
	return nil
}

// startBuiltinPortChild starts RootlessKit's builtin port driver (child
// half) and returns once it listens on its socket, so that B may pivot_root
// right after ConfigureChild.
func startBuiltinPortChild(opaque map[string]string) error {
	sock := opaque[bopaque.SocketPath]
	if sock == "" {
		return errors.New("slirp: builtin port driver: no socket path")
	}
	errc := make(chan error, 1)
	go func() {
		errc <- builtin.NewChildDriver(io.Discard).RunChildDriver(opaque, make(chan struct{}), "")
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			return nil
		}
		select {
		case err := <-errc:
			return fmt.Errorf("slirp: builtin port driver (child): %v", err)
		case <-time.After(2 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("slirp: builtin port driver (child): timed out waiting for " + strconv.Quote(sock))
		}
	}
}
