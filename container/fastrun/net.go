package fastrun

import (
	"context"
	"path/filepath"

	"github.com/sirupsen/logrus"

	"github.com/unroot/unroot/slirp"
)

// netPlan is a user-mode network the fast path can set up itself: pasta
// or slirp4netns (helper binaries). The embedded gvisor stack is not in
// this binary; a run that needs it goes to the full unroot.
type netPlan struct {
	opts slirp.Options
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
	p := &netPlan{opts: slirp.Options{Mode: string(drv), MTU: f.mtu, DisableHostLoopback: f.noHostLoopback, DNS: f.dns}}
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
