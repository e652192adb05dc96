package fastrun

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/unroot/unroot/slirp"
	"github.com/unroot/unroot/slirp/bypass"
	"github.com/unroot/unroot/userns"
)

// netPlan is a user-mode network the fast path can set up itself: pasta
// or slirp4netns (helper binaries). The embedded gvisor stack is not in
// this binary; a run that needs it goes to the full unroot.
type netPlan struct {
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
	p := &netPlan{opts: slirp.Options{Mode: string(drv), MTU: f.mtu, DisableHostLoopback: f.noHostLoopback, DNS: f.dns},
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

// setup starts the network for the monitor pid (mapped, not yet released).
func (p *netPlan) setup(s *Spec, pid int) (*slirp.Host, slirp.ChildConfig, error) {
	// RootlessKit reports the container's side going away as an error;
	// for us that is the normal end of a container.
	if logrus.GetLevel() < logrus.DebugLevel {
		logrus.SetLevel(logrus.FatalLevel)
	}
	o := p.opts
	o.StateDir = filepath.Join(s.RunDir, "containers", s.ID)
	return slirp.Setup(context.Background(), o, pid)
}

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
