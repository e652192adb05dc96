package slirp

import "testing"

func TestParseNetwork(t *testing.T) {
	for _, c := range []struct {
		in, mode, pd string
		bad          bool
	}{
		{in: "", mode: "auto"},
		{in: "auto", mode: "auto"},
		{in: "bridge", mode: "auto"},
		{in: "slirp", mode: "auto"},
		{in: "none", mode: "none"},
		{in: "host", mode: "host"},
		{in: "gvisor", mode: "gvisor"},
		{in: "slirp4netns", mode: "slirp4netns"},
		{in: "slirp4netns:port_handler=slirp4netns", mode: "slirp4netns", pd: PortNative},
		{in: "slirp4netns:port_handler=native", mode: "slirp4netns", pd: PortNative},
		{in: "slirp4netns:port_handler=rootlesskit", mode: "slirp4netns", pd: PortBuiltin},
		{in: "gvisor:port_handler=gvisor", mode: "gvisor", pd: PortNative},
		{in: "auto:port_handler=builtin", mode: "auto", pd: PortBuiltin},
		{in: "auto:port_handler=native", mode: "auto", pd: PortNative},
		{in: "pasta:port_handler=builtin", mode: "pasta", pd: PortBuiltin},
		{in: "pasta:port_handler=native", bad: true},
		{in: "gvisor:port_handler=slirp4netns", bad: true},
		{in: "slirp4netns:port_handler=bogus", bad: true},
		{in: "slirp4netns:mtu=1500", bad: true},
		{in: "host:port_handler=builtin", bad: true},
		{in: "none:", bad: true},
		{in: "bogus", bad: true},
	} {
		mode, pd, err := ParseNetwork(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("ParseNetwork(%q) = %q, %q; want an error", c.in, mode, pd)
			}
			continue
		}
		if err != nil || mode != c.mode || pd != c.pd {
			t.Errorf("ParseNetwork(%q) = %q, %q, %v; want %q, %q", c.in, mode, pd, err, c.mode, c.pd)
		}
	}
}

func TestChoosePortDriver(t *testing.T) {
	for _, c := range []struct {
		d       Driver
		in, out string
		bad     bool
	}{
		{d: DriverSlirp4netns, in: "", out: PortBuiltin},
		{d: DriverGvisor, in: "", out: PortBuiltin},
		{d: DriverPasta, in: "", out: PortBuiltin},
		{d: DriverSlirp4netns, in: PortNative, out: PortNative},
		{d: DriverSlirp4netns, in: "slirp4netns", out: PortNative},
		{d: DriverGvisor, in: PortNative, out: PortNative},
		{d: DriverGvisor, in: "rootlesskit", out: PortBuiltin},
		{d: DriverPasta, in: PortNative, bad: true},
		{d: DriverGvisor, in: "slirp4netns", bad: true},
		{d: DriverGvisor, in: "x", bad: true},
	} {
		got, err := ChoosePortDriver(c.d, c.in)
		if c.bad != (err != nil) || got != c.out {
			t.Errorf("ChoosePortDriver(%s, %q) = %q, %v; want %q (error: %v)", c.d, c.in, got, err, c.out, c.bad)
		}
	}
}

func TestNeedsMonitor(t *testing.T) {
	for _, c := range []struct {
		cfg  ChildConfig
		want bool
	}{
		{ChildConfig{Driver: DriverGvisor}, true},
		{ChildConfig{Driver: DriverGvisor, PortDriver: PortBuiltin}, true},
		{ChildConfig{Driver: DriverSlirp4netns}, false},
		{ChildConfig{Driver: DriverSlirp4netns, PortDriver: PortBuiltin}, true},
		{ChildConfig{Driver: DriverPasta}, false},
		{ChildConfig{Driver: DriverPasta, PortDriver: PortBuiltin}, true},
	} {
		if got := c.cfg.NeedsMonitor(); got != c.want {
			t.Errorf("%+v.NeedsMonitor() = %v, want %v", c.cfg, got, c.want)
		}
	}
}
