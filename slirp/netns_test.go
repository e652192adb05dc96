package slirp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The tests re-exec the test binary as the "container" (B): in new
// user+net+mount namespaces with a single-id map, which works unprivileged.
// /dev/net/tun must be 0666 for the tap drivers when not root.

const envRole = "UNROOT_SLIRP_TEST_ROLE"

const (
	childTCPPort  = 8080
	childUDPPort  = 8081
	childPeerPort = 8082 // replies with the client address it sees
)

func TestMain(m *testing.M) {
	switch os.Getenv(envRole) {
	case "child":
		os.Exit(childMain())
	case "hostA":
		os.Exit(hostAMain())
	}
	os.Exit(m.Run())
}

type childReq struct {
	Cfg      ChildConfig
	HostPort int      // a TCP server on the host's 127.0.0.1
	Serve    []string // command to start in the background (bench)
	Run      []string // command to run, output reported (bench)
}

type childRep struct {
	Err      string
	Greeting string
	IPAddr   string
	RunOut   string
}

// childMain is B: configure the netns, serve TCP/UDP echo, reach the host.
func childMain() int {
	in := bufio.NewReader(os.Stdin)
	line, err := in.ReadBytes('\n')
	if err != nil {
		return 3
	}
	var req childReq
	if err := json.Unmarshal(line, &req); err != nil {
		return 4
	}
	rep := childRep{}
	func() {
		if err := ConfigureChild(req.Cfg); err != nil {
			rep.Err = err.Error()
			return
		}
		out, _ := exec.Command("ip", "-4", "-o", "addr").CombinedOutput()
		rep.IPAddr = string(out)
		l, err := net.Listen("tcp", fmt.Sprintf("0.0.0.0:%d", childTCPPort))
		if err != nil {
			rep.Err = err.Error()
			return
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() { io.Copy(c, c); c.Close() }()
			}
		}()
		pl, err := net.Listen("tcp", fmt.Sprintf("0.0.0.0:%d", childPeerPort))
		if err != nil {
			rep.Err = err.Error()
			return
		}
		go func() {
			for {
				c, err := pl.Accept()
				if err != nil {
					return
				}
				host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
				fmt.Fprintf(c, "%s\n", host)
				c.Close()
			}
		}()
		u, err := net.ListenPacket("udp", fmt.Sprintf("0.0.0.0:%d", childUDPPort))
		if err != nil {
			rep.Err = err.Error()
			return
		}
		go func() {
			buf := make([]byte, 2048)
			for {
				n, a, err := u.ReadFrom(buf)
				if err != nil {
					return
				}
				u.WriteTo(buf[:n], a)
			}
		}()
		if len(req.Serve) > 0 {
			cmd := exec.Command(req.Serve[0], req.Serve[1:]...)
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			if err := cmd.Start(); err != nil {
				rep.Err = err.Error()
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		if len(req.Run) > 0 {
			out, err := exec.Command(req.Run[0], req.Run[1:]...).CombinedOutput()
			rep.RunOut = string(out)
			if err != nil {
				rep.Err = fmt.Sprintf("%v: %v", req.Run, err)
				return
			}
		}
		if req.HostPort != 0 && req.Cfg.HostLoopback != "" {
			c, err := net.DialTimeout("tcp", net.JoinHostPort(req.Cfg.HostLoopback, strconv.Itoa(req.HostPort)), 10*time.Second)
			if err != nil {
				rep.Err = "dial host loopback: " + err.Error()
				return
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			g, err := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if err != nil {
				rep.Err = "read from host loopback: " + err.Error()
				return
			}
			rep.Greeting = strings.TrimSpace(g)
		}
	}()
	b, _ := json.Marshal(rep)
	os.Stdout.Write(append(b, '\n'))
	io.Copy(io.Discard, in) // live until stdin closes
	return 0
}

type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

func startChild(t testing.TB) *child {
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = append(os.Environ(), envRole+"=child")
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		Pdeathsig:   syscall.SIGKILL,
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the namespaced child: %v", err)
	}
	c := &child{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	if tt, ok := t.(*testing.T); ok {
		tt.Cleanup(func() { c.stop() })
	}
	return c
}

func (c *child) configure(req childReq) (childRep, error) {
	b, _ := json.Marshal(req)
	if _, err := c.stdin.Write(append(b, '\n')); err != nil {
		return childRep{}, err
	}
	line, err := c.out.ReadBytes('\n')
	if err != nil {
		return childRep{}, fmt.Errorf("reading child report: %w", err)
	}
	var rep childRep
	if err := json.Unmarshal(line, &rep); err != nil {
		return rep, err
	}
	if rep.Err != "" {
		return rep, fmt.Errorf("child: %s", rep.Err)
	}
	return rep, nil
}

func (c *child) stop() {
	if c.cmd.ProcessState != nil {
		return
	}
	c.stdin.Close()
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

func hostGreeter(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "hello-from-host\n")
			c.Close()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

func requireDriver(t *testing.T, d Driver) {
	t.Helper()
	if _, _, err := Choose(string(d)); err != nil {
		t.Skipf("driver %s unavailable here: %v", d, err)
	}
	if d != DriverPasta {
		if _, err := os.Stat("/dev/net/tun"); err != nil {
			t.Skip("no /dev/net/tun")
		}
		if os.Getuid() != 0 {
			f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
			if err != nil {
				t.Skipf("/dev/net/tun not usable by uid %d (needs mode 0666): %v", os.Getuid(), err)
			}
			f.Close()
		}
	}
}

var allDrivers = []Driver{DriverGvisor, DriverSlirp4netns, DriverPasta}

func TestNetwork(t *testing.T) {
	for _, d := range allDrivers {
		t.Run(string(d), func(t *testing.T) {
			requireDriver(t, d)
			testNetwork(t, d, "")
		})
	}
}

func testNetwork(t *testing.T, d Driver, portDriver string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	hostPort := hostGreeter(t)
	stateBase := t.TempDir()
	c := startChild(t)
	opts := Options{
		Mode:       string(d),
		PortDriver: portDriver,
		StateDir:   stateBase,
		Ports: []PortSpec{
			{Proto: "tcp", HostIP: "127.0.0.1", ContainerPort: childTCPPort},
			{Proto: "udp", HostIP: "127.0.0.1", ContainerPort: childUDPPort},
		},
	}
	t0 := time.Now()
	h, cfg, err := Setup(ctx, opts, c.cmd.Process.Pid)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	tSetup := time.Since(t0)
	defer h.Close()
	cj, _ := json.Marshal(cfg)
	t.Logf("ChildConfig: %s", cj)

	t0 = time.Now()
	rep, err := c.configure(childReq{Cfg: cfg, HostPort: hostPort})
	if err != nil {
		t.Fatalf("ConfigureChild: %v", err)
	}
	t.Logf("Setup %v, ConfigureChild + host-loopback round trip %v", tSetup, time.Since(t0))
	if !strings.Contains(rep.IPAddr, cfg.IP+"/") {
		t.Errorf("container address %s not configured:\n%s", cfg.IP, rep.IPAddr)
	}

	// container -> host loopback
	if rep.Greeting != "hello-from-host" {
		t.Errorf("child reached host loopback %s but got %q", cfg.HostLoopback, rep.Greeting)
	}

	// DNS / hosts content
	hostRC, _ := os.ReadFile("/etc/resolv.conf")
	rc := parseResolvConf(hostRC)
	loopbackResolver := false
	for _, ns := range rc.Nameservers {
		if ip := net.ParseIP(ns); ip != nil && ip.IsLoopback() {
			loopbackResolver = true
		}
	}
	driverDNS := map[Driver]string{DriverGvisor: "10.0.2.1", DriverSlirp4netns: "10.0.2.3", DriverPasta: "10.0.2.3"}[d]
	if loopbackResolver || len(rc.Nameservers) == 0 {
		if len(cfg.DNS) != 1 || cfg.DNS[0] != driverDNS {
			t.Errorf("host uses a loopback resolver; want DNS [%s], got %v", driverDNS, cfg.DNS)
		}
	} else if len(cfg.DNS) == 0 || cfg.DNS[0] != rc.Nameservers[0] {
		t.Errorf("want the host's nameservers %v, got %v", rc.Nameservers, cfg.DNS)
	}
	if !strings.Contains(string(cfg.ResolvConf()), "nameserver "+cfg.DNS[0]+"\n") {
		t.Errorf("resolv.conf: %q", cfg.ResolvConf())
	}
	if want := cfg.HostLoopback + "\thost.containers.internal host.docker.internal\n"; !strings.Contains(string(cfg.Hosts("c")), want) {
		t.Errorf("hosts lacks %q", want)
	}

	// host -> published ports
	ports := h.Ports()
	if len(ports) != 2 || ports[0].HostPort == 0 || ports[1].HostPort == 0 {
		t.Fatalf("ports not resolved: %+v", ports)
	}
	tcpAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0].HostPort))
	if err := tcpEcho(tcpAddr); err != nil {
		t.Errorf("TCP via published port %s: %v", tcpAddr, err)
	}
	udpAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1].HostPort))
	if err := udpEcho(udpAddr); err != nil {
		t.Errorf("UDP via published port %s: %v", udpAddr, err)
	}

	// A second container publishing the same host port fails clearly.
	c2 := startChild(t)
	opts2 := opts
	opts2.StateDir = t.TempDir()
	opts2.Ports = []PortSpec{{Proto: "tcp", HostIP: "127.0.0.1", HostPort: ports[0].HostPort, ContainerPort: 80}}
	if h2, _, err := Setup(ctx, opts2, c2.cmd.Process.Pid); err == nil {
		h2.Close()
		t.Errorf("second Setup on busy port %d succeeded", ports[0].HostPort)
	} else if !strings.Contains(err.Error(), "already in use") {
		t.Errorf("second Setup on busy port: unclear error: %v", err)
	} else {
		t.Logf("busy port: %v", err)
	}
	c2.stop()

	// Teardown: nothing left behind.
	c.stop()
	if err := h.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := os.Stat(filepath.Join(stateBase, "net")); !os.IsNotExist(err) {
		t.Errorf("state dir left behind: %v", err)
	}
	if kids := childrenOf(os.Getpid()); len(kids) > 0 {
		t.Errorf("processes left behind: %v", kids)
	}
	if p := helpersFor(c.cmd.Process.Pid); len(p) > 0 {
		t.Errorf("helpers for pid %d left behind: %v", c.cmd.Process.Pid, p)
	}
	if l, err := net.Listen("tcp", tcpAddr); err != nil {
		t.Errorf("published port still bound after Close: %v", err)
	} else {
		l.Close()
	}
}

func tcpEcho(addr string) error {
	var last error
	for i := 0; i < 20; i++ {
		last = func() error {
			c, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(3 * time.Second))
			if _, err := c.Write([]byte("ping\n")); err != nil {
				return err
			}
			got, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				return err
			}
			if got != "ping\n" {
				return fmt.Errorf("echo returned %q", got)
			}
			return nil
		}()
		if last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return last
}

func udpEcho(addr string) error {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 64)
	var last error
	for i := 0; i < 20; i++ {
		c.Write([]byte("uping"))
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := c.Read(buf)
		if err == nil && string(buf[:n]) == "uping" {
			return nil
		}
		last = fmt.Errorf("got %q, %v", buf[:n], err)
	}
	return last
}

// childrenOf lists live (non-zombie reaped) processes whose parent is pid.
func childrenOf(pid int) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndex(s, ")")+2:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			out = append(out, e.Name()+":"+strings.ReplaceAll(string(cmd), "\x00", " "))
		}
	}
	return out
}

// helpersFor lists slirp4netns/pasta processes attached to pid.
func helpersFor(pid int) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		base := filepath.Base(args[0])
		if (base == "slirp4netns" || base == "pasta" || base == "passt") && bytes.Contains(b, []byte("\x00"+strconv.Itoa(pid)+"\x00")) {
			out = append(out, e.Name()+":"+strings.Join(args, " "))
		}
	}
	return out
}

func TestPrivilegedPort(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	start, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || start <= 80 {
		t.Skip("port 80 is not privileged here")
	}
	if os.Getuid() == 0 {
		t.Skip("root may bind privileged ports")
	}
	_, _, err = Setup(context.Background(), Options{Mode: "gvisor", Ports: []PortSpec{{Proto: "tcp", HostIP: "127.0.0.1", HostPort: 80, ContainerPort: 80}}}, os.Getpid())
	if err == nil || !strings.Contains(err.Error(), "sysctl net.ipv4.ip_unprivileged_port_start=80") {
		t.Fatalf("want an error with the sysctl fix, got %v", err)
	}
	t.Log(err)
}

// hostAMain plays A: start B, Setup, configure B, report B's pid, then
// wait to be killed.
func hostAMain() int {
	t := &testing.T{}
	c := startChild(t)
	h, cfg, err := Setup(context.Background(), Options{Mode: os.Getenv("UNROOT_SLIRP_TEST_MODE"),
		StateDir: os.Getenv("UNROOT_SLIRP_TEST_STATE"),
		Ports:    []PortSpec{{Proto: "tcp", HostIP: "127.0.0.1", ContainerPort: childTCPPort}}}, c.cmd.Process.Pid)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hostA:", err)
		return 1
	}
	_ = h
	if _, err := c.configure(childReq{Cfg: cfg}); err != nil {
		fmt.Fprintln(os.Stderr, "hostA:", err)
		return 1
	}
	fmt.Printf("%d %d\n", c.cmd.Process.Pid, h.Ports()[0].HostPort)
	select {}
}

// TestKillA: after kill -9 of A, neither B nor any helper survives and the
// published port is released.
func TestKillA(t *testing.T) {
	for _, d := range allDrivers {
		t.Run(string(d), func(t *testing.T) {
			requireDriver(t, d)
			cmd := exec.Command("/proc/self/exe")
			cmd.Env = append(os.Environ(), envRole+"=hostA", "UNROOT_SLIRP_TEST_MODE="+string(d), "UNROOT_SLIRP_TEST_STATE="+t.TempDir())
			cmd.Stderr = os.Stderr
			out, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var bpid, hport int
			if _, err := fmt.Fscan(bufio.NewReader(out), &bpid, &hport); err != nil {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("hostA did not come up: %v", err)
			}
			if err := tcpEcho(fmt.Sprintf("127.0.0.1:%d", hport)); err != nil {
				t.Errorf("published port before kill: %v", err)
			}
			if h := helpersFor(bpid); d != DriverGvisor && len(h) == 0 {
				t.Errorf("no helper process found for B=%d before the kill", bpid)
			}
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
			deadline := time.Now().Add(5 * time.Second)
			for {
				left := helpersFor(bpid)
				if syscall.Kill(bpid, 0) == nil {
					left = append(left, fmt.Sprintf("B=%d", bpid))
				}
				if len(left) == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("left behind after kill -9 of A: %v", left)
				}
				time.Sleep(50 * time.Millisecond)
			}
			if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", hport)); err != nil {
				t.Errorf("published port still bound after kill -9 of A: %v", err)
			} else {
				l.Close()
			}
		})
	}
}

// TestNativePorts runs the drivers' own port forwarding (slirp4netns's
// API, gvisor-tap-vsock's forwarder in A; the default is RootlessKit's
// builtin driver, see TestNetwork).
func TestNativePorts(t *testing.T) {
	for _, d := range []Driver{DriverGvisor, DriverSlirp4netns} {
		t.Run(string(d), func(t *testing.T) {
			requireDriver(t, d)
			testNetwork(t, d, PortNative)
		})
	}
}

// TestCloseWithoutChild: B dies before ConfigureChild (e.g. rootfs setup
// failed); Close must neither hang nor leave anything behind.
func TestCloseWithoutChild(t *testing.T) {
	for _, d := range []Driver{DriverGvisor, DriverSlirp4netns} {
		for _, pd := range []string{PortBuiltin, PortNative} {
			t.Run(fmt.Sprintf("%s/%s", d, pd), func(t *testing.T) {
				requireDriver(t, d)
				c := startChild(t)
				base := t.TempDir()
				h, _, err := Setup(context.Background(), Options{Mode: string(d), PortDriver: pd, StateDir: base,
					Ports: []PortSpec{{Proto: "tcp", HostIP: "127.0.0.1", ContainerPort: 80}}}, c.cmd.Process.Pid)
				if err != nil {
					t.Fatal(err)
				}
				c.stop()
				t0 := time.Now()
				h.Close()
				if el := time.Since(t0); el > 3*time.Second {
					t.Errorf("Close took %v", el)
				}
				if kids := childrenOf(os.Getpid()); len(kids) > 0 {
					t.Errorf("processes left behind: %v", kids)
				}
				if _, err := os.Stat(filepath.Join(base, "net")); !os.IsNotExist(err) {
					t.Errorf("state dir left behind: %v", err)
				}
			})
		}
	}
}

// TestSourceIP documents which driver lets the container see the client's
// address: a client on a non-loopback address of this host connects to a
// port published on 0.0.0.0 (traffic stays on this host).
func TestSourceIP(t *testing.T) {
	var clientIP net.IP
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			clientIP = n.IP
			break
		}
	}
	if clientIP == nil {
		t.Skip("no non-loopback IPv4 address on this host")
	}
	type variant struct {
		d  Driver
		pd string
	}
	vs := []variant{{DriverGvisor, ""}, {DriverSlirp4netns, ""}, {DriverPasta, ""},
		{DriverGvisor, PortNative}, {DriverSlirp4netns, PortNative}}
	for _, v := range vs {
		name := string(v.d)
		if v.pd != "" {
			name += "/" + v.pd
		}
		t.Run(name, func(t *testing.T) {
			requireDriver(t, v.d)
			c := startChild(t)
			h, cfg, err := Setup(context.Background(), Options{Mode: string(v.d), PortDriver: v.pd, StateDir: t.TempDir(),
				Ports: []PortSpec{{Proto: "tcp", ContainerPort: childPeerPort}}}, c.cmd.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			if _, err := c.configure(childReq{Cfg: cfg}); err != nil {
				t.Fatal(err)
			}
			dialer := net.Dialer{LocalAddr: &net.TCPAddr{IP: clientIP}, Timeout: 3 * time.Second}
			var seen string
			for i := 0; i < 20 && seen == ""; i++ {
				conn, err := dialer.Dial("tcp", net.JoinHostPort(clientIP.String(), strconv.Itoa(h.Ports()[0].HostPort)))
				if err != nil {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				conn.SetDeadline(time.Now().Add(3 * time.Second))
				line, _ := bufio.NewReader(conn).ReadString('\n')
				conn.Close()
				seen = strings.TrimSpace(line)
			}
			t.Logf("%s: client %s, container sees %q", name, clientIP, seen)
			if v.pd == "" && seen != cfg.IP {
				t.Errorf("%s (builtin port driver): container sees %q, documented %s (its own address)", name, seen, cfg.IP)
			}
			if want := v.d == DriverSlirp4netns && v.pd == PortNative; want != (seen == clientIP.String()) {
				t.Errorf("%s: source IP preserved=%v, documented %v", name, seen == clientIP.String(), want)
			}
			if v.d == DriverGvisor && v.pd == PortNative && seen != cfg.Gateway {
				t.Errorf("%s: container sees %q, documented the gateway %s", name, seen, cfg.Gateway)
			}
		})
	}
}
