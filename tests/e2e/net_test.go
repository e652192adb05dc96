package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// freePort returns a TCP and UDP port free on 127.0.0.1 right now.
func freePort(t *testing.T) int {
	t.Helper()
	for i := 0; i < 20; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// drivers are the user-mode network drivers to exercise: the embedded one
// always, the helpers when this machine has a usable one.
func drivers(t *testing.T, s *sandbox) []string {
	ds := []string{"gvisor"}
	for _, d := range []string{"slirp4netns", "pasta"} {
		r := s.run("run", "--rm", "--tls-verify=false", "--net="+d, busybox(), "true")
		if r.code == 0 {
			ds = append(ds, d)
		} else {
			t.Logf("driver %s not usable here: %s", d, strings.TrimSpace(r.stderr))
		}
	}
	return ds
}

// background starts `unroot run` and returns a channel with its result.
func background(s *sandbox, args ...string) chan result {
	ch := make(chan result, 1)
	go func() { ch <- s.runWith(runOpts{timeout: 2 * time.Minute}, args...) }()
	return ch
}

func TestNetPublishedPortsTCPAndUDP(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	s.pull(debian())
	for _, d := range drivers(t, s) {
		t.Run(d, func(t *testing.T) {
			tcp, udp := freePort(t), freePort(t)
			// A TCP server (bash's /dev/tcp can't listen: perl can, and
			// perl-base is in every Debian image) and a UDP echo server.
			script := `perl -MIO::Socket::INET -e '
				my $u = IO::Socket::INET->new(LocalPort => 5353, Proto => "udp") or die "udp: $!";
				my $t = IO::Socket::INET->new(LocalPort => 8080, Listen => 5, ReuseAddr => 1) or die "tcp: $!";
				if (fork) { while (my $c = $t->accept) { print $c "tcp-hello\n"; close $c } exit }
				while (1) { $u->recv(my $m, 1024); $u->send("echo:$m") }' &
				sleep 15`
			ch := background(s, "run", "--rm", "--tls-verify=false", "--net="+d,
				"-p", fmt.Sprintf("127.0.0.1:%d:8080", tcp), "-p", fmt.Sprintf("127.0.0.1:%d:5353/udp", udp),
				debian(), "bash", "-c", script)
			var got string
			deadline := time.Now().Add(40 * time.Second)
			for time.Now().Before(deadline) && got == "" {
				if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", tcp), time.Second); err == nil {
					_ = c.SetDeadline(time.Now().Add(2 * time.Second))
					b, _ := io.ReadAll(c)
					c.Close()
					got = strings.TrimSpace(string(b))
				}
				if got == "" {
					time.Sleep(300 * time.Millisecond)
				}
			}
			if got != "tcp-hello" {
				t.Errorf("TCP through -p 127.0.0.1:%d:8080: got %q", tcp, got)
			}
			var echo string
			for i := 0; i < 10 && echo == ""; i++ {
				c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", udp))
				if err != nil {
					t.Fatal(err)
				}
				_ = c.SetDeadline(time.Now().Add(time.Second))
				_, _ = c.Write([]byte("ping"))
				buf := make([]byte, 100)
				if n, err := c.Read(buf); err == nil {
					echo = string(buf[:n])
				}
				c.Close()
			}
			if echo != "echo:ping" {
				t.Errorf("UDP through -p 127.0.0.1:%d:5353/udp: got %q", udp, echo)
			}
			if r := <-ch; r.code != 0 {
				t.Errorf("container: %s", r)
			}
		})
	}
}

// hostHTTPServer serves "from-the-host" on the host's 127.0.0.1 for the
// rest of the test and returns its port.
func hostHTTPServer(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "from-the-host") })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

// The host's loopback is reachable from the container as
// host.containers.internal (and host.docker.internal).
func TestNetHostLoopbackReachable(t *testing.T) {
	t.Parallel()
	port := hostHTTPServer(t)
	s := sandboxFor(t, nil)
	s.pull(busybox())
	for _, d := range drivers(t, s) {
		t.Run(d, func(t *testing.T) {
			for _, name := range []string{"host.containers.internal", "host.docker.internal"} {
				s.runSh(busybox(), fmt.Sprintf("wget -q -O- http://%s:%d/", name, port), "--net="+d).wantOut(t, "from-the-host")
			}
			// --disable-host-loopback takes it away.
			r := s.runSh(busybox(), fmt.Sprintf("wget -q -T 3 -O- http://host.containers.internal:%d/", port), "--net="+d, "--disable-host-loopback")
			if r.code == 0 {
				t.Errorf("--disable-host-loopback: the host was still reachable:\n%s", r)
			}
		})
	}
}

func TestNetDNSConfig(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	r := s.runSh(busybox(), "cat /etc/resolv.conf; echo ---; cat /etc/hosts").ok(t)
	if !strings.Contains(r.stdout, "nameserver ") {
		t.Errorf("no nameserver in /etc/resolv.conf:\n%s", r)
	}
	s.runSh(busybox(), "grep -c nameserver /etc/resolv.conf; grep 10.9.8.7 /etc/resolv.conf; grep 'db.example' /etc/hosts",
		"--dns", "10.9.8.7", "--add-host", "db.example:192.0.2.1").ok(t)
	s.runSh(busybox(), "hostname; grep -w box1 /etc/hosts", "--hostname", "box1").ok(t)
}

func TestNetHostSharesInterfaces(t *testing.T) {
	t.Parallel()
	host, err := os.ReadFile("/proc/net/dev")
	if err != nil {
		t.Fatal(err)
	}
	s := sandboxFor(t, nil)
	r := s.runSh(busybox(), "cat /proc/net/dev", "--net=host").ok(t)
	if ifaces(string(host)) != ifaces(r.stdout) {
		t.Errorf("--net=host: host has %s, container sees %s", ifaces(string(host)), ifaces(r.stdout))
	}
}

func ifaces(procNetDev string) string {
	var names []string
	for _, l := range strings.Split(procNetDev, "\n") {
		if name, _, ok := strings.Cut(l, ":"); ok && !strings.Contains(name, "|") {
			names = append(names, strings.TrimSpace(name))
		}
	}
	return strings.Join(names, ",")
}

func TestNetSameHostPortTwiceFailsClearly(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	s.pull(busybox())
	port := freePort(t)
	pub := fmt.Sprintf("127.0.0.1:%d:80", port)
	ch := background(s, "run", "--rm", "--tls-verify=false", "-p", pub, busybox(), "sleep", "15")
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
			break // the first container holds it
		} else {
			l.Close()
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.run("run", "--rm", "--tls-verify=false", "-p", pub, busybox(), "true").wantCode(t, 125).wantStderr(t, "already in use")
	<-ch
}

func TestNetPrivilegedPortNamesTheSysctl(t *testing.T) {
	t.Parallel()
	b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if strings.TrimSpace(string(b)) == "0" {
		t.Skip("this host lets everyone bind low ports")
	}
	s := sandboxFor(t, nil)
	s.run("run", "--rm", "--tls-verify=false", "-p", "127.0.0.1:81:80", busybox(), "true").
		wantCode(t, 125).wantStderr(t, "ip_unprivileged_port_start")
}

// Every user in the container may open ICMP echo (ping) sockets: the
// container's network namespace is ours to configure.
func TestNetPingSocketsForEveryUser(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	s.pull(debian())
	s.run("run", "--rm", "--tls-verify=false", "-u", "1000", debian(), "perl", "-MSocket", "-e",
		`socket(S, PF_INET, SOCK_DGRAM, 1) or die "icmp socket: $!\n"; print "ok\n"`).wantOut(t, "ok")
}

// Connections to the host loopback skip the user-mode stack (the seccomp
// connect bypass, package slirp/bypass): the container's socket is then a
// host socket connected to 127.0.0.1, so its peer is 127.0.0.1, not the
// host-loopback address. Also for processes of `unroot exec`, and not with
// UNROOT_NET_BYPASS=0.
func TestNetHostLoopbackBypass(t *testing.T) {
	t.Parallel()
	port := hostHTTPServer(t)
	s := sandboxFor(t, nil)
	s.pull(debian())
	// Blocking and non-blocking connect; prints the peer, then the reply.
	peer := fmt.Sprintf(`use IO::Socket::INET;
		for my $blocking (1, 0) {
			my $s = IO::Socket::INET->new(PeerAddr => "host.containers.internal", PeerPort => %d, Blocking => $blocking, Timeout => 5) or die "connect: $!\n";
			$s->blocking(1);
			print $s "GET / HTTP/1.0\r\n\r\n";
			my $body = join("", <$s>) =~ /(from-the-host)/ ? $1 : "?";
			print "peer ", $s->peerhost, " $body\n";
		}`, port)
	for _, d := range drivers(t, s) {
		t.Run(d, func(t *testing.T) {
			r := s.run("run", "--rm", "--tls-verify=false", "--net="+d, debian(), "perl", "-e", peer).ok(t)
			if want := "peer 127.0.0.1 from-the-host\npeer 127.0.0.1 from-the-host"; strings.TrimSpace(r.stdout) != want {
				t.Errorf("bypassed connections: got %q, want %q", r.stdout, want)
			}
			r = s.runWith(runOpts{env: []string{"UNROOT_NET_BYPASS=0"}}, "run", "--rm", "--tls-verify=false", "--net="+d, debian(), "perl", "-e", peer).ok(t)
			if strings.Contains(r.stdout, "127.0.0.1") || !strings.Contains(r.stdout, "from-the-host") {
				t.Errorf("UNROOT_NET_BYPASS=0: got %q, want the host-loopback address as the peer", r.stdout)
			}
		})
	}
	t.Run("exec", func(t *testing.T) {
		// A detached container that keeps a host-side process (here
		// forced; also with a restart policy, -i or gvisor).
		name := fmt.Sprintf("bypass-exec-%d", port)
		s.runWith(runOpts{env: []string{"UNROOT_ONE_PROCESS=0"}}, "run", "-d", "--tls-verify=false", "--name", name, debian(), "sleep", "60").ok(t)
		defer s.run("rm", "-f", name)
		r := s.run("exec", name, "perl", "-e", peer).ok(t)
		if !strings.Contains(r.stdout, "peer 127.0.0.1 from-the-host") {
			t.Errorf("exec: got %q, want a bypassed connection", r.stdout)
		}
	})
	t.Run("resident", func(t *testing.T) {
		// A detached container left to its init has nobody on the host
		// to answer the bypass: it reaches the host through slirp4netns.
		name := fmt.Sprintf("bypass-resident-%d", port)
		s.run("run", "-d", "--tls-verify=false", "--name", name, debian(), "sleep", "60").ok(t)
		defer s.run("rm", "-f", name)
		r := s.run("exec", name, "perl", "-e", peer).ok(t)
		if want := "peer 10.0.2.2 from-the-host\npeer 10.0.2.2 from-the-host"; strings.TrimSpace(r.stdout) != want {
			t.Errorf("resident network: got %q, want %q", r.stdout, want)
		}
	})
}

// A detached container keeps its published ports and its network after it
// started (the monitor stays when the network needs it: gvisor's tap pump
// and the builtin port forwarder live there).
func TestNetDetachedPublishedPort(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	s.pull(debian())
	hostPort := hostHTTPServer(t)
	for _, d := range drivers(t, s) {
		t.Run(d, func(t *testing.T) {
			port := freePort(t)
			name := fmt.Sprintf("detached-port-%d", port)
			server := `perl -MIO::Socket::INET -e '
				my $t = IO::Socket::INET->new(LocalPort => 8080, Listen => 5, ReuseAddr => 1) or die "tcp: $!";
				while (my $c = $t->accept) { print $c "tcp-hello\n"; close $c }'`
			s.run("run", "-d", "--tls-verify=false", "--name", name, "--net="+d,
				"-p", fmt.Sprintf("127.0.0.1:%d:8080", port), debian(), "bash", "-c", server).ok(t)
			defer s.run("rm", "-f", name)
			dial := func() string {
				c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
				if err != nil {
					return ""
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(2 * time.Second))
				b, _ := io.ReadAll(c)
				return strings.TrimSpace(string(b))
			}
			var got string
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && got == ""; {
				if got = dial(); got == "" {
					time.Sleep(300 * time.Millisecond)
				}
			}
			if got != "tcp-hello" {
				t.Fatalf("-p 127.0.0.1:%d:8080 of a detached container: got %q", port, got)
			}
			time.Sleep(time.Second) // well after the start: a lean monitor would have exec'd by now
			if got = dial(); got != "tcp-hello" {
				t.Errorf("a second after the start: got %q", got)
			}
			r := s.run("exec", name, "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/host.containers.internal/%d && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3", hostPort)).ok(t)
			if !strings.Contains(r.stdout, "from-the-host") {
				t.Errorf("exec: the host's loopback: got %q", r.stdout)
			}
		})
	}
}
