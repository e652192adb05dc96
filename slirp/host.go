package slirp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rootless-containers/rootlesskit/v3/pkg/messages"
	"github.com/rootless-containers/rootlesskit/v3/pkg/network"
	rkpasta "github.com/rootless-containers/rootlesskit/v3/pkg/network/pasta"
	"github.com/rootless-containers/rootlesskit/v3/pkg/port"
	"github.com/rootless-containers/rootlesskit/v3/pkg/port/builtin"
	portslirp "github.com/rootless-containers/rootlesskit/v3/pkg/port/slirp4netns"
)

// Options configures the container's user-mode network.
type Options struct {
	// Mode is "auto" (or ""), "pasta", "slirp4netns" or "gvisor".
	Mode string
	// Ports to publish (see ParsePublish).
	Ports []PortSpec
	// MTU of the container's interface; 0 = driver default (65520).
	MTU int
	// DisableHostLoopback makes the host's 127.0.0.1 unreachable from the
	// container (no host.containers.internal).
	DisableHostLoopback bool
	// StateDir is a private directory for the driver's sockets, e.g.
	// $XDG_RUNTIME_DIR/unroot/<id>. Setup works in StateDir/net and
	// removes it on Close. "" = a temporary directory.
	StateDir string
	// DNS overrides the container's nameservers (--dns).
	DNS []string
	// PortDriver forwards the published ports: "" or PortBuiltin for
	// RootlessKit's builtin driver (every network driver), PortNative for
	// the network driver's own forwarding (slirp4netns, gvisor). See
	// ChoosePortDriver.
	PortDriver string
	// Log, if set, receives the helpers' diagnostics (for --debug). Either
	// way the last lines are included in Setup's errors.
	Log io.Writer
	// ExitFD makes the network resident (resident.go): slirp4netns quits
	// when the write end of this pipe, which the container's init holds,
	// closes, and Release leaves it running. Only with slirp4netns.
	ExitFD *os.File
	// Bound are Ports already bound by ListenPorts, forwarded by the
	// container's init (with ExitFD and the builtin port driver): Setup
	// only reports them.
	Bound []PortSpec
}

// Port drivers (Options.PortDriver).
const (
	// PortBuiltin is RootlessKit's builtin port driver: A listens on the
	// host and, for each connection, B connects to the container's
	// address inside the network namespace and hands the socket to A,
	// which splices the two kernel sockets. No user-mode TCP stack on the
	// way (Podman's "rootlessport" is the same driver). The container
	// sees its own address as the client's.
	PortBuiltin = "builtin"
	// PortNative is the network driver's own forwarding: slirp4netns's
	// add_hostfwd (keeps the client's address) or gvisor-tap-vsock's
	// forwarder in A (the client appears as the gateway). Slower: every
	// byte goes through the user-mode TCP stack.
	PortNative = "native"
)

// ChoosePortDriver resolves Options.PortDriver for network driver d.
// Builtin is the default everywhere: in one run on the same machine it
// was 3-4x faster inbound than slirp4netns's or gvisor-tap-vsock's own
// forwarding (bench/run.sh net), and it is what Podman uses.
// pasta has no native forwarder that matches -p (see the package doc).
func ChoosePortDriver(d Driver, pd string) (string, error) {
	switch pd {
	case "", PortBuiltin, "rootlesskit":
		return PortBuiltin, nil
	case PortNative, string(d):
		if d == DriverPasta {
			return "", fmt.Errorf("slirp: pasta has no native port forwarding usable for -p; use port_handler=builtin")
		}
		return PortNative, nil
	}
	return "", fmt.Errorf("slirp: unknown port handler %q for %s (want builtin or %s)", pd, d, d)
}

// Host is the host side of a container's network, living in A.
type Host struct {
	driver    Driver
	reason    string
	stateDir  string
	netClean  func() error
	quit      bool // Quit, not Close
	portDrv   port.ParentDriver
	portQuit  chan struct{}
	portDone  chan error
	portIDs   []int
	ports     []PortSpec
	pastaPID  int
	resident  *exec.Cmd
	fifo      string
	loopback  string
	closeOnce sync.Once
	closeErr  error
}

const (
	cidr       = "10.0.2.0/24"
	tapName    = "tap0"
	defaultMTU = 65520
)

// HostLoopback returns the address under which the container reaches the
// host's 127.0.0.1 ("" with DisableHostLoopback).
func (h *Host) HostLoopback() string { return h.loopback }

// Driver returns the driver in use and why it was chosen.
func (h *Host) Driver() (Driver, string) { return h.driver, h.reason }

// Ports returns the published ports with the host ports actually bound
// (random and ranged host ports resolved).
func (h *Host) Ports() []PortSpec { return append([]PortSpec(nil), h.ports...) }

// Setup runs in A after B (host pid) exists, its uid/gid maps are written
// and before B continues. It starts the user-mode network stack for B's
// network namespace and publishes opts.Ports. The returned ChildConfig must
// be passed to ConfigureChild in B. Close the Host when the container is
// gone (also on every error path after Setup succeeded).
func Setup(ctx context.Context, opts Options, pid int) (_ *Host, _ ChildConfig, retErr error) {
	var cfg ChildConfig
	drv, reason, err := Choose(opts.Mode)
	if err != nil {
		return nil, cfg, err
	}
	logw := &tailLog{fw: opts.Log}
	mtu := opts.MTU
	if mtu == 0 {
		mtu = defaultMTU
	}
	if mtu < 1280 || mtu > 65520 {
		return nil, cfg, fmt.Errorf("slirp: MTU %d out of range (1280-65520)", mtu)
	}
	ports, err := checkPorts(drv, opts.Ports)
	if err != nil {
		return nil, cfg, err
	}
	portDrv, err := ChoosePortDriver(drv, opts.PortDriver)
	if err != nil {
		return nil, cfg, err
	}
	// Resolve random/ranged host ports and fail early (before starting any
	// helper) on privileged or busy ports, with a clear message.
	for i, p := range ports {
		if ports[i], err = reservePort(p); err != nil {
			return nil, cfg, err
		}
	}

	h := &Host{driver: drv, reason: reason}
	defer func() {
		if retErr != nil {
			h.Close()
		}
	}()
	if h.stateDir, err = makeStateDir(opts.StateDir); err != nil {
		return nil, cfg, err
	}

	var nd network.ParentDriver
	_, ipnet, _ := net.ParseCIDR(cidr)
	apiSock := filepath.Join(h.stateDir, "slirp4netns.sock")
	if opts.ExitFD != nil && drv != DriverSlirp4netns {
		return nil, cfg, fmt.Errorf("slirp: a resident network needs slirp4netns, not %s", drv)
	}
	switch drv {
	case DriverGvisor:
		nd, err = gvisorParent(logw, mtu, ipnet, opts.DisableHostLoopback)
	case DriverSlirp4netns:
		return h.setupSlirp4netns(ctx, opts, pid, mtu, ports, portDrv, apiSock, logw)
	case DriverPasta:
		nd, err = rkpasta.NewParentDriver(logw, "pasta", mtu, ipnet, tapName, "", opts.DisableHostLoopback, false, false)
	}
	if err != nil {
		return nil, cfg, fmt.Errorf("slirp: %s: %w", drv, err)
	}
	netmsg, clean, err := nd.ConfigureNetwork(pid, h.stateDir, "")
	h.netClean = clean
	if drv == DriverPasta {
		h.pastaPID = findPasta(pid)
	}
	if err != nil {
		if tail := logw.String(); tail != "" {
			err = fmt.Errorf("%w\n%s output:\n%s", err, drv, tail)
		}
		return nil, cfg, fmt.Errorf("slirp: starting %s for pid %d: %w", drv, pid, err)
	}
	cfg = h.childConfig(opts, netmsg)
	return h.publish(ctx, cfg, logw, ports, portDrv, apiSock, netmsg)
}

// childConfig is what B needs to configure the network namespace.
func (h *Host) childConfig(opts Options, netmsg *messages.ParentInitNetworkDriverCompleted) ChildConfig {
	cdi, _ := func() (network.ChildDriver, error) { return childNetworkDriver(h.driver) }()
	info, _ := cdi.ChildDriverInfo()
	cfg := ChildConfig{
		Driver:              h.driver,
		Dev:                 netmsg.Dev,
		IP:                  netmsg.IP,
		Netmask:             netmsg.Netmask,
		Gateway:             netmsg.Gateway,
		MTU:                 netmsg.MTU,
		InterfaceConfigured: info != nil && info.ConfiguresInterface,
		NetworkOpaque:       netmsg.NetworkDriverOpaque,
	}
	hostRC, _ := os.ReadFile("/etc/resolv.conf")
	rc := parseResolvConf(hostRC)
	cfg.DNS = pickDNS(opts.DNS, rc, netmsg.DNS)
	cfg.DNSSearch, cfg.DNSOptions = rc.Search, rc.Options
	if !opts.DisableHostLoopback {
		cfg.HostLoopback = hostLoopback(h.driver)
		h.loopback = cfg.HostLoopback
	}
	return cfg
}

// setupSlirp4netns is Setup's slirp4netns, started by us rather than by
// RootlessKit's driver (startSlirp4netns says why), with its addresses.
// With Options.ExitFD it is resident (resident.go): its published ports
// were bound beforehand (Options.Bound) unless it forwards them itself.
func (h *Host) setupSlirp4netns(ctx context.Context, opts Options, pid, mtu int, ports []PortSpec, portDrv, apiSock string, logw *tailLog) (*Host, ChildConfig, error) {
	resident := opts.ExitFD != nil
	native := portDrv == PortNative && len(ports) > 0
	out := logw
	if resident {
		out = nil // its log file instead
		if !native {
			apiSock = ""
		}
	}
	cmd, err := startSlirp4netns(h.stateDir, pid, mtu, opts.DisableHostLoopback, apiSock, opts.ExitFD, out)
	if err != nil {
		return nil, ChildConfig{}, fmt.Errorf("slirp: starting slirp4netns for pid %d: %w", pid, err)
	}
	if resident {
		h.resident = cmd
	}
	h.netClean = func() error {
		_ = cmd.Process.Kill()
		// Its exit unregisters the tap device, which waits for the
		// kernel's network clean-up (~10-20 ms here): a process about to
		// exit need not wait for that (Quit), unless slirp4netns forwards
		// ports itself, which must be free by the time we return.
		if h.quit && !resident && !native {
			return nil
		}
		_ = cmd.Wait()
		return nil
	}
	netmsg := slirp4netnsAddrs(mtu)
	cfg := h.childConfig(opts, netmsg)
	if resident && !native {
		h.ports = append(h.ports, opts.Bound...)
		return h, cfg, nil
	}
	return h.publish(ctx, cfg, logw, ports, portDrv, apiSock, netmsg)
}

// Slirp4netnsChild is the container's side of the slirp4netns network
// Setup starts with opts, known before it starts (its addresses are
// fixed): for a container that configures its interface itself.
func Slirp4netnsChild(opts Options) ChildConfig {
	mtu := opts.MTU
	if mtu == 0 {
		mtu = defaultMTU
	}
	return (&Host{driver: DriverSlirp4netns}).childConfig(opts, slirp4netnsAddrs(mtu))
}

// slirp4netnsAddrs are slirp4netns's fixed addresses, as RootlessKit's
// driver reports them.
func slirp4netnsAddrs(mtu int) *messages.ParentInitNetworkDriverCompleted {
	return &messages.ParentInitNetworkDriverCompleted{Dev: tapName, IP: "10.0.2.100", Netmask: 24,
		Gateway: "10.0.2.2", DNS: []string{"10.0.2.3"}, MTU: mtu}
}

// publish starts the port driver and publishes ports.
func (h *Host) publish(ctx context.Context, cfg ChildConfig, logw io.Writer, ports []PortSpec, portDrv, apiSock string,
	netmsg *messages.ParentInitNetworkDriverCompleted) (*Host, ChildConfig, error) {
	drv := h.driver
	var err error
	if len(ports) == 0 {
		return h, cfg, nil
	}
	// Ports: RootlessKit's builtin forwarder (half in A, half in B), or
	// the driver's own (slirp4netns's API, gvisor-tap-vsock's in A).
	useBuiltin := portDrv == PortBuiltin
	switch {
	case useBuiltin:
		// Remove what a crashed earlier run may have left.
		os.Remove(filepath.Join(h.stateDir, ".bp.sock"))
		if h.portDrv, err = builtin.NewParentDriver(logw, h.stateDir, false, ""); err == nil {
			h.fifo = filepath.Join(h.stateDir, ".bp-ready.pipe")
			cfg.PortDriver = "builtin"
			cfg.PortOpaque = h.portDrv.OpaqueForChild()
		}
	case drv == DriverGvisor:
		h.portDrv, err = gvisorPorts(logw, h.stateDir)
	case drv == DriverSlirp4netns:
		h.portDrv, err = portslirp.NewParentDriver(logw, apiSock)
	}
	if err != nil {
		h.portDrv = nil
		return nil, cfg, fmt.Errorf("slirp: port driver: %w", err)
	}
	cctx := &port.ChildContext{
		IP:        net.ParseIP(netmsg.IP).To4(),
		GatewayIP: net.ParseIP(netmsg.Gateway).To4(),
	}
	if vn, ok := netmsg.Network.(port.VirtualNetworkProvider); ok {
		cctx.Network = vn
	}
	initDone := make(chan struct{}, 1)
	h.portQuit = make(chan struct{})
	h.portDone = make(chan error, 1)
	go func() { h.portDone <- h.portDrv.RunParentDriver(initDone, h.portQuit, cctx) }()
	if !useBuiltin { // builtin only completes once B is up; AddPort does not need it
		select {
		case <-initDone:
		case err := <-h.portDone:
			h.portDone <- err
			return nil, cfg, fmt.Errorf("slirp: port driver: %w", err)
		case <-ctx.Done():
			return nil, cfg, ctx.Err()
		}
	} else {
		go func() { <-initDone }() // builtin sends on an unbuffered channel
	}
	for _, bound := range ports {
		hostIP := bound.HostIP
		if hostIP == "" {
			hostIP = "0.0.0.0"
		}
		spec := port.Spec{Proto: bound.Proto, ParentIP: hostIP, ParentPort: bound.HostPort, ChildPort: bound.ContainerPort}
		if useBuiltin {
			spec.ChildIP = cfg.IP // like Docker: connect to the container's address
		}
		st, err := h.portDrv.AddPort(ctx, spec)
		if err != nil {
			return nil, cfg, fmt.Errorf("slirp: publishing %s: %w", bound, portError(err, bound))
		}
		h.portIDs = append(h.portIDs, st.ID)
		h.ports = append(h.ports, bound)
	}
	return h, cfg, nil
}

func hostLoopback(d Driver) string {
	switch d {
	case DriverGvisor:
		return "10.0.2.1" // gateway, NATed to the host's 127.0.0.1
	default:
		return "10.0.2.2" // slirp4netns gateway / pasta map-gw
	}
}

func makeStateDir(base string) (string, error) {
	const longest = "/gvisortapvsock/tap.sock"
	if base != "" {
		dir := filepath.Join(base, "net")
		if len(dir)+len(longest) < 100 {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return "", fmt.Errorf("slirp: state dir: %w", err)
			}
			return dir, nil
		}
		// too long for a unix socket path: fall through to a short one
	}
	dir, err := os.MkdirTemp("", "unroot-net-")
	if err != nil {
		return "", fmt.Errorf("slirp: state dir: %w", err)
	}
	return dir, nil
}

// checkPorts validates ports against what the driver supports.
func checkPorts(d Driver, ports []PortSpec) ([]PortSpec, error) {
	out := make([]PortSpec, 0, len(ports))
	seen := map[string]PortSpec{}
	for _, p := range ports {
		if p.Proto == "" {
			p.Proto = "tcp"
		}
		if p.Proto != "tcp" && p.Proto != "udp" {
			return nil, fmt.Errorf("slirp: publishing %s: protocol must be tcp or udp", p)
		}
		if p.ContainerPort < 1 || p.ContainerPort > 65535 || p.HostPort < 0 || p.HostPort > 65535 || p.HostPortEnd > 65535 {
			return nil, fmt.Errorf("slirp: publishing %s: port out of range", p)
		}
		if p.HostIP != "" {
			ip := net.ParseIP(p.HostIP)
			if ip == nil {
				return nil, fmt.Errorf("slirp: publishing %s: invalid host IP", p)
			}
			if ip.To4() == nil && d != DriverPasta {
				return nil, fmt.Errorf("slirp: publishing %s: the %s driver cannot listen on IPv6 host addresses (use an IPv4 address or --network=pasta)", p, d)
			}
		}
		if p.HostPort != 0 && p.HostPortEnd <= p.HostPort {
			k := fmt.Sprintf("%s/%s:%d", p.Proto, p.HostIP, p.HostPort)
			if q, dup := seen[k]; dup {
				return nil, fmt.Errorf("slirp: publishing %s: host port already used by %s", p, q)
			}
			seen[k] = p
		}
		out = append(out, p)
	}
	return out, nil
}

// reservePort resolves random / ranged host ports and checks, by binding
// it briefly, that the host port is free and allowed, so that the user
// gets a clear message rather than a driver-specific one.
func reservePort(p PortSpec) (PortSpec, error) { return firstFree(p, probeBind) }

// firstFree tries the host ports of p's range in turn with bind, which
// returns the port it bound; the first one not in use wins. Errors name
// the port and the fix.
func firstFree(p PortSpec, bind func(PortSpec) (int, error)) (PortSpec, error) {
	lo, hi := p.HostPort, p.HostPort
	if p.HostPortEnd > p.HostPort {
		hi = p.HostPortEnd
	}
	var firstErr error
	for hp := lo; hp <= hi; hp++ {
		q := p
		q.HostPort, q.HostPortEnd = hp, 0
		got, err := bind(q)
		if err == nil {
			q.HostPort = got
			return q, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	if lo != hi && errors.Is(firstErr, syscall.EADDRINUSE) {
		return p, fmt.Errorf("slirp: publishing %s: no free host port in %d-%d", p, lo, hi)
	}
	return p, fmt.Errorf("slirp: publishing %s: %w", p, portError(firstErr, p))
}

func probeBind(p PortSpec) (int, error) {
	ip := p.HostIP
	if ip == "" {
		ip = "0.0.0.0"
	}
	addr := net.JoinHostPort(ip, strconv.Itoa(p.HostPort))
	if p.Proto == "udp" {
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// portError explains the two common failures.
func portError(err error, p PortSpec) error {
	switch {
	case errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) || strings.Contains(err.Error(), "permission denied"):
		start := 1024
		if b, e := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); e == nil {
			if v, e := strconv.Atoi(strings.TrimSpace(string(b))); e == nil {
				start = v
			}
		}
		if p.HostPort < start {
			return fmt.Errorf("host port %d is privileged (below net.ipv4.ip_unprivileged_port_start=%d); "+
				"allow it with `sudo sysctl net.ipv4.ip_unprivileged_port_start=%d` "+
				"(persist it in /etc/sysctl.d/), or publish a host port >= %d: %w",
				p.HostPort, start, p.HostPort, start, err)
		}
	case errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use"):
		return fmt.Errorf("host port %d/%s is already in use (by another container or process): %w", p.HostPort, p.Proto, err)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("host address %s is not an address of this host: %w", p.HostIP, err)
	}
	return err
}

// Release leaves a resident network (Options.ExitFD) to the container
// once its init holds the exit pipe alone: slirp4netns and the ports it
// forwards stay; the port driver's goroutines and the state directory go
// (slirp4netns keeps its API socket open). Without a resident network it
// is Close. Either way the Host is done.
func (h *Host) Release() error {
	if h.resident == nil {
		return h.Close()
	}
	h.closeOnce.Do(func() {
		if h.portDrv != nil {
			close(h.portQuit)
			select {
			case <-h.portDone:
			case <-time.After(2 * time.Second):
			}
		}
		_ = h.resident.Process.Release()
		h.closeErr = os.RemoveAll(h.stateDir)
	})
	return h.closeErr
}

// Quit is Close for a process that exits right after: a slirp4netns it
// started is killed but not waited for (see setupSlirp4netns).
func (h *Host) Quit() error {
	h.quit = true
	return h.Close()
}

// Close stops port forwarding and the network stack (killing its helper
// process) and removes the state directory. Safe to call more than once.
func (h *Host) Close() error {
	h.closeOnce.Do(func() {
		var errs []error
		if h.portDrv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			for _, id := range h.portIDs {
				if err := h.portDrv.RemovePort(ctx, id); err != nil {
					errs = append(errs, err)
				}
			}
			cancel()
			if h.fifo != "" {
				// unblock the builtin driver if B never came up
				if f, err := os.OpenFile(h.fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
					f.Close()
				}
			}
			close(h.portQuit)
			select {
			case <-h.portDone:
			case <-time.After(2 * time.Second):
			}
		}
		if h.netClean != nil {
			if err := h.netClean(); err != nil {
				errs = append(errs, err)
			}
		}
		if h.pastaPID > 0 {
			killPasta(h.pastaPID)
		}
		if h.stateDir != "" {
			if err := os.RemoveAll(h.stateDir); err != nil {
				errs = append(errs, err)
			}
		}
		h.closeErr = errors.Join(errs...)
	})
	return h.closeErr
}
