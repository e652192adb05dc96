package slirp

import (
	"net"
	"strconv"
	"strings"
	"testing"
)

func TestListenPorts(t *testing.T) {
	// A random port and a range whose first port is taken.
	busy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	bp := busy.Addr().(*net.TCPAddr).Port
	bound, files, err := ListenPorts([]PortSpec{
		{HostIP: "127.0.0.1", ContainerPort: 80},
		{HostIP: "127.0.0.1", HostPort: bp, HostPortEnd: bp + 20, ContainerPort: 81},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if len(bound) != 2 || len(files) != 2 {
		t.Fatalf("bound %v, %d files", bound, len(files))
	}
	if bound[0].HostPort == 0 || bound[0].Proto != "tcp" {
		t.Errorf("random port not resolved: %+v", bound[0])
	}
	if bound[1].HostPort <= bp || bound[1].HostPort > bp+20 || bound[1].HostPortEnd != 0 {
		t.Errorf("range: %+v (port %d is busy)", bound[1], bp)
	}
	// The sockets listen: a connection is queued.
	for i, b := range bound {
		l, err := net.FileListener(files[i])
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(b.HostPort)))
		if err != nil {
			t.Errorf("port %d: %v", b.HostPort, err)
		} else {
			c.Close()
		}
		l.Close()
	}

	if _, _, err := ListenPorts([]PortSpec{{Proto: "udp", ContainerPort: 53}}); err == nil || !strings.Contains(err.Error(), "only TCP") {
		t.Errorf("UDP: %v", err)
	}
	if _, _, err := ListenPorts([]PortSpec{{HostIP: "127.0.0.1", HostPort: bp, ContainerPort: 80}}); err == nil || !strings.Contains(err.Error(), "already in use") {
		t.Errorf("a busy port: %v", err)
	}
}

func TestResidentRule(t *testing.T) {
	if Resident("gvisor", "", nil) || Resident("pasta", "", nil) || Resident("none", "", nil) {
		t.Error("only slirp4netns can be resident")
	}
	if err := checkSlirp4netns(); err != nil {
		t.Skip(err)
	}
	udp := []PortSpec{{Proto: "udp", ContainerPort: 53}}
	auto, _, _ := Choose("") // pasta, when new enough, comes first
	for _, c := range []struct {
		mode, pd string
		ports    []PortSpec
		want     bool
	}{
		{"auto", "", nil, auto == DriverSlirp4netns},
		{"slirp4netns", "", []PortSpec{{Proto: "tcp", ContainerPort: 80}}, true},
		{"slirp4netns", "", udp, false},
		{"slirp4netns", "builtin", udp, false},
		{"slirp4netns", "native", udp, true},
	} {
		if got := Resident(c.mode, c.pd, c.ports); got != c.want {
			t.Errorf("Resident(%q, %q, %v) = %v", c.mode, c.pd, c.ports, got)
		}
	}
}
