//go:build !unroot_tiny

package fastrun

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/unroot/unroot/container/cinit"
	"github.com/unroot/unroot/slirp"
	"github.com/unroot/unroot/slirp/bypass"
	"github.com/unroot/unroot/userns"
)

// netPlan is a user-mode network the fast path can set up itself: pasta
// or slirp4netns (helper binaries). The embedded gvisor stack is not in
// this binary; a run that needs it goes to the full unroot.
type netPlan struct {
	drv  slirp.Driver
	opts slirp.Options
	// bypass: TCP connections to the host loopback skip the user-mode
	// stack (package slirp/bypass), as in the full unroot.
	bypass bool
}

func planNet(f *flags) (*netPlan, bool) {
	mode := f.net
	switch mode {
	case "", "auto", "bridge", "default", "slirp", "private":
		mode = ""
	}
	drv, _, err := slirp.Choose(mode)
	if err != nil || drv == slirp.DriverGvisor {
		return nil, false
	}
	p := &netPlan{drv: drv, opts: slirp.Options{Mode: string(drv), MTU: f.mtu, DisableHostLoopback: f.noHostLoopback, DNS: f.dns},
		bypass: !f.noHostLoopback && os.Getenv("UNROOT_NET_BYPASS") != "0"}
	for _, s := range f.publish {
		ps, err := slirp.ParsePublish(s)
		if err != nil {
			return nil, false
		}
		p.opts.Ports = append(p.opts.Ports, ps...)
	}
	return p, true
}

// direct: slirp4netns needs nothing of a monitor, unless it has published
// ports the init cannot forward itself (UDP, or slirp4netns's own
// forwarding): RootlessKit's forwarder has a half in the monitor. The
// container's init configures its interface itself (link).
func (p *netPlan) direct() bool {
	if p.drv != slirp.DriverSlirp4netns {
		return false
	}
	if len(p.opts.Ports) == 0 {
		return true
	}
	if pd, err := slirp.ChoosePortDriver(p.drv, p.opts.PortDriver); err != nil || pd != slirp.PortBuiltin {
		return false
	}
	for _, port := range p.opts.Ports {
		if port.Proto != "tcp" {
			return false
		}
	}
	return true
}

// link is the interface a direct init configures, and the /etc files
// that go with it, known before slirp4netns starts. The published ports
// are bound here, on the host, and forwarded by the init from inside
// (cinit.Forward, as a resident network's are): their listening sockets
// are for the init, in order.
func (p *netPlan) link(s *Spec) (*cinit.Link, []*os.File, error) {
	cfg := slirp.Slirp4netnsChild(p.opts)
	s.Etc.Hosts, s.Etc.ResolvConf = string(cfg.Hosts(s.Proc.Hostname)), string(cfg.ResolvConf())
	var files []*os.File
	if len(p.opts.Ports) > 0 {
		bound, fs, err := slirp.ListenPorts(p.opts.Ports)
		if err != nil {
			return nil, nil, err
		}
		files = fs
		for _, b := range bound {
			s.Proc.Forward = append(s.Proc.Forward, cinit.Forward{Addr: net.JoinHostPort(cfg.IP, strconv.Itoa(b.ContainerPort))})
		}
		// Not RootlessKit's forwarder's.
		p.opts.Ports = nil
	}
	return &cinit.Link{Dev: cfg.Dev, MTU: cfg.MTU, IP: cfg.IP, Prefix: cfg.Netmask, Gateway: cfg.Gateway}, files, nil
}

// childConfig is the network's container side, which the monitor sets up.
type childConfig = slirp.ChildConfig

// start sets up the network for the monitor pid (mapped, not yet
// released) into s.Net, and serves the host-loopback bypass on
// bypassParent when there is one, until stop.
func (p *netPlan) start(s *Spec, pid int, bypassParent *os.File) (stop func(), err error) {
	// RootlessKit reports the container's side going away as an error;
	// for us that is the normal end of a container.
	if logrus.GetLevel() < logrus.DebugLevel {
		logrus.SetLevel(logrus.FatalLevel)
	}
	o := p.opts
	o.StateDir = filepath.Join(s.RunDir, "containers", s.ID)
	host, cfg, err := slirp.Setup(context.Background(), o, pid)
	if err != nil {
		return nil, err
	}
	s.Net = &cfg
	stopBypass := func() {}
	if bypassParent != nil {
		stopBypass = ServeBypass(bypassParent, host.HostLoopback())
	}
	// We exit right after.
	return func() { stopBypass(); host.Quit() }, nil
}

// configureNet is the monitor's part: the container's side of s.Net, and
// the /etc files that go with it.
func configureNet(s *Spec) error {
	if err := slirp.ConfigureChild(*s.Net); err != nil {
		return err
	}
	s.Etc.Hosts, s.Etc.ResolvConf = string(s.Net.Hosts(s.Proc.Hostname)), string(s.Net.ResolvConf())
	return nil
}

// WantsNet reports whether Try left a run to the full unroot only for its
// user-mode network: never in this build, which has the network.
func WantsNet() bool { return false }

// ServeBypass waits for the container's init to pass up the seccomp
// listener of the host-loopback bypass and answers its notifications
// (package slirp/bypass) until the returned stop is called, once the
// container is gone. An init that loaded no filter (old kernel) closes
// the socket without sending anything.
func ServeBypass(sock *os.File, hostLoopback string) (stop func()) {
	supc := make(chan *bypass.Supervisor, 1)
	go func() {
		f, err := userns.RecvFD(sock, "seccomp-listener")
		if err != nil {
			supc <- nil
			return
		}
		sup, err := bypass.Serve(f, hostLoopback, logrus.Debugf)
		if err != nil {
			logrus.Debugf("network bypass: %v", err)
		}
		supc <- sup
	}()
	return func() {
		select {
		case sup := <-supc:
			if sup != nil {
				logrus.Debugf("network bypass: %d connections to the host loopback bypassed", sup.Bypassed())
				sup.Close()
			}
		case <-time.After(2 * time.Second):
		}
	}
}
