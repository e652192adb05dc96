package slirp

import (
	"reflect"
	"strings"
	"testing"
)

func TestParsePublish(t *testing.T) {
	tcp := func(ip string, hp, hpe, cp int) PortSpec {
		return PortSpec{Proto: "tcp", HostIP: ip, HostPort: hp, HostPortEnd: hpe, ContainerPort: cp}
	}
	cases := []struct {
		in   string
		want []PortSpec
	}{
		{"80", []PortSpec{tcp("", 0, 0, 80)}},
		{"8080:80", []PortSpec{tcp("", 8080, 0, 80)}},
		{"8080:80/tcp", []PortSpec{tcp("", 8080, 0, 80)}},
		{"8080:80/UDP", []PortSpec{{Proto: "udp", HostPort: 8080, ContainerPort: 80}}},
		{"127.0.0.1:8080:80", []PortSpec{tcp("127.0.0.1", 8080, 0, 80)}},
		{"127.0.0.1::80", []PortSpec{tcp("127.0.0.1", 0, 0, 80)}},
		{"[::1]:8080:80", []PortSpec{tcp("::1", 8080, 0, 80)}},
		{"[::1]::80/udp", []PortSpec{{Proto: "udp", HostIP: "::1", ContainerPort: 80}}},
		{"8080-8081:80-81", []PortSpec{tcp("", 8080, 0, 80), tcp("", 8081, 0, 81)}},
		{"8000-8010:80", []PortSpec{tcp("", 8000, 8010, 80)}},
		{"80-81", []PortSpec{tcp("", 0, 0, 80), tcp("", 0, 0, 81)}},
		{"0.0.0.0:53:53/udp", []PortSpec{{Proto: "udp", HostIP: "0.0.0.0", HostPort: 53, ContainerPort: 53}}},
	}
	for _, c := range cases {
		got, err := ParsePublish(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: got %+v, want %+v", c.in, got, c.want)
		}
	}
	for _, bad := range []string{"", "0", "70000", "80/sctp", "80/icmp", "a:80", "1.2.3:80:80",
		"8080-8082:80-81", "81-80", "[::1:80:80", "::1:8080:80", "1.2.3.4:5:6:7", "8080:"} {
		if got, err := ParsePublish(bad); err == nil {
			t.Errorf("%q: expected an error, got %+v", bad, got)
		} else if !strings.Contains(err.Error(), bad) {
			t.Errorf("%q: error does not quote the spec: %v", bad, err)
		}
	}
}

func TestPickDNS(t *testing.T) {
	drv := []string{"10.0.2.3"}
	cases := []struct {
		rc   string
		user []string
		want []string
	}{
		{"nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n", nil, drv},
		{"nameserver 127.0.0.1\n", nil, drv},
		{"nameserver ::1\n", nil, drv},
		{"nameserver 192.0.2.53\nnameserver 192.0.2.54 # second\n", nil, []string{"192.0.2.53", "192.0.2.54"}},
		{"nameserver 2001:db8::53\n", nil, drv},
		{"nameserver 2001:db8::53\nnameserver 192.0.2.53\n", nil, []string{"192.0.2.53"}},
		{"", nil, drv},
		{"nameserver 127.0.0.53\n", []string{"9.9.9.9"}, []string{"9.9.9.9"}},
	}
	for _, c := range cases {
		got := pickDNS(c.user, parseResolvConf([]byte(c.rc)), drv)
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q %v: got %v, want %v", c.rc, c.user, got, c.want)
		}
	}
	rc := parseResolvConf([]byte("nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan example.com\n"))
	cfg := ChildConfig{DNS: pickDNS(nil, rc, drv), DNSSearch: rc.Search, DNSOptions: rc.Options, IP: "10.0.2.100", HostLoopback: "10.0.2.2"}
	if got, want := string(cfg.ResolvConf()), "search lan example.com\nnameserver 10.0.2.3\noptions edns0 trust-ad\n"; got != want {
		t.Errorf("resolv.conf: got %q want %q", got, want)
	}
	hosts := string(cfg.Hosts("c1"))
	for _, want := range []string{"127.0.0.1\tlocalhost\n", "10.0.2.100\tc1\n", "10.0.2.2\thost.containers.internal host.docker.internal\n"} {
		if !strings.Contains(hosts, want) {
			t.Errorf("hosts lacks %q:\n%s", want, hosts)
		}
	}
	cfg.HostLoopback = ""
	if strings.Contains(string(cfg.Hosts("c1")), "host.containers.internal") {
		t.Error("hosts has host.containers.internal with host loopback disabled")
	}
}

func TestChoose(t *testing.T) {
	d, reason, err := Choose("auto")
	if err != nil || d == "" || reason == "" {
		t.Fatalf("auto: %v %q %v", d, reason, err)
	}
	t.Logf("auto -> %s (%s)", d, reason)
	if d, _, err := Choose("gvisor"); err != nil || d != DriverGvisor {
		t.Fatalf("gvisor: %v %v", d, err)
	}
	if _, _, err := Choose("bogus"); err == nil {
		t.Fatal("bogus mode accepted")
	}
	// A forced helper that is missing names the apt package.
	t.Setenv("PATH", t.TempDir())
	for mode, pkg := range map[string]string{"pasta": "apt-get install passt", "slirp4netns": "apt-get install slirp4netns"} {
		if _, _, err := Choose(mode); err == nil || !strings.Contains(err.Error(), pkg) {
			t.Errorf("%s without helper: err=%v, want mention of %q", mode, err, pkg)
		}
	}
	if d, _, err := Choose("auto"); err != nil || d != DriverGvisor {
		t.Errorf("auto without helpers: %v %v", d, err)
	}
}
