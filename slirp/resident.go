package slirp

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A resident network outlives the process that set it up: a detached
// container left to its init alone (container.OneProcess) keeps
// slirp4netns and its published ports without any unroot process on the
// host.
//
//   - slirp4netns runs in a session of its own, with no parent-death
//     signal, and quits when the write end of its --exit-fd pipe closes:
//     the container's init holds it (Options.ExitFD), so the network ends
//     with the container, even on kill -9. RootlessKit's driver ties the
//     helper to its caller (PR_SET_PDEATHSIG), hence the launcher here.
//   - Published TCP ports are listening sockets made on the host before
//     the container starts (ListenPorts) and handed down to the init,
//     which accepts on them and connects to the container's address from
//     inside its network namespace, splicing the two kernel sockets: what
//     RootlessKit's builtin port driver does, with no host process.
//     PortNative ports are slirp4netns's own (add_hostfwd), which need
//     nothing after Setup either.
//   - There is no host-loopback bypass (package slirp/bypass answers its
//     connect hook from the host side): the container reaches the host's
//     127.0.0.1 through slirp4netns, as Podman's containers do.

// ListenPorts binds the published TCP ports on the host (resolving random
// and ranged host ports) and returns them with their listening sockets,
// one per port, for the container's init to forward. UDP ports cannot be
// forwarded that way (Resident says so).
func ListenPorts(ports []PortSpec) ([]PortSpec, []*os.File, error) {
	ports, err := checkPorts(DriverSlirp4netns, ports)
	if err != nil {
		return nil, nil, err
	}
	var bound []PortSpec
	var files []*os.File
	fail := func(err error) ([]PortSpec, []*os.File, error) {
		for _, f := range files {
			f.Close()
		}
		return nil, nil, err
	}
	for _, p := range ports {
		if p.Proto != "tcp" {
			return fail(fmt.Errorf("slirp: publishing %s: only TCP ports can be forwarded without a host process", p))
		}
		q, f, err := listenOne(p)
		if err != nil {
			return fail(err)
		}
		bound = append(bound, q)
		files = append(files, f)
	}
	return bound, files, nil
}

// listenOne binds one port (the first free one of a range) and keeps it.
func listenOne(p PortSpec) (PortSpec, *os.File, error) {
	var f *os.File
	q, err := firstFree(p, func(q PortSpec) (int, error) {
		ip := q.HostIP
		if ip == "" {
			ip = "0.0.0.0"
		}
		l, err := net.Listen("tcp4", net.JoinHostPort(ip, strconv.Itoa(q.HostPort)))
		if err != nil {
			return 0, err
		}
		defer l.Close()
		if f, err = l.(*net.TCPListener).File(); err != nil {
			return 0, err
		}
		return l.Addr().(*net.TCPAddr).Port, nil
	})
	return q, f, err
}

// Resident says whether a container's network can be left to its init
// (see the top of this file): mode (Options.Mode) resolves to slirp4netns,
// and its ports are TCP, or forwarded by slirp4netns itself.
func Resident(mode, portDriver string, ports []PortSpec) bool {
	switch mode {
	case "", "auto", string(DriverSlirp4netns):
	default:
		return false
	}
	drv, _, err := Choose(mode)
	if err != nil || drv != DriverSlirp4netns {
		return false
	}
	pd, err := ChoosePortDriver(drv, portDriver)
	if err != nil {
		return false
	}
	if pd == PortBuiltin {
		for _, p := range ports {
			if p.Proto != "" && p.Proto != "tcp" {
				return false
			}
		}
	}
	return true
}

// startSlirp4netns starts slirp4netns for pid's network namespace with
// RootlessKit's driver's options and waits until its tap device is up.
// slirp4netns makes the tap device itself (in the namespace, as the
// namespace's root): RootlessKit's driver runs `nsenter ... ip tuntap add`
// and `ip link set up` beforehand, four execs that cost ~25 ms per
// container here. With exit (a resident network) it runs in a session of
// its own, without a parent-death signal, quitting when exit's writers
// are gone, and its diagnostics go to a file in dir (a pipe to us would
// break when we exit); otherwise it dies with us, and they go to logw.
// Its last lines are in the error if it fails.
func startSlirp4netns(dir string, pid, mtu int, disableHostLoopback bool, apiSock string, exit *os.File, logw *tailLog) (*exec.Cmd, error) {
	f, err := slirpFeatures()
	if err != nil {
		return nil, err
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer readyR.Close()
	args := []string{"--mtu", strconv.Itoa(mtu), "--ready-fd", "3"}
	if exit != nil {
		args = append(args, "--exit-fd", "4")
	}
	if disableHostLoopback {
		args = append(args, "--disable-host-loopback")
	}
	if apiSock != "" {
		args = append(args, "--api-socket", apiSock)
	}
	if f.SupportsEnableSandbox {
		args = append(args, "--enable-sandbox")
	}
	if f.SupportsEnableSeccomp && f.KernelSupportsEnableSeccomp {
		args = append(args, "--enable-seccomp")
	}
	args = append(args, strconv.Itoa(pid), tapName)
	cmd := exec.Command("slirp4netns", args...)
	cmd.ExtraFiles = []*os.File{readyW}
	logPath := filepath.Join(dir, "slirp4netns.log")
	if exit != nil {
		logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			readyW.Close()
			return nil, err
		}
		defer logf.Close()
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.ExtraFiles = append(cmd.ExtraFiles, exit)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	} else {
		cmd.Stdout, cmd.Stderr = logw, logw
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}
	err = cmd.Start()
	readyW.Close()
	if err != nil {
		return nil, fmt.Errorf("starting slirp4netns: %w", err)
	}
	// One byte once the tap device is connected; EOF if it died.
	_ = readyR.SetReadDeadline(time.Now().Add(30 * time.Second))
	var b [1]byte
	if n, err := readyR.Read(b[:]); n != 1 {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		var out string
		if exit != nil {
			o, _ := os.ReadFile(logPath)
			out = string(o)
		} else {
			out = logw.String()
		}
		out = strings.TrimSpace(out)
		if strings.Contains(out, "/dev/net/tun") {
			out += "\n  fix: slirp4netns needs /dev/net/tun usable by you (distributions ship it 0666: sudo chmod 0666 /dev/net/tun), or run with --net=none or --net=host"
		}
		return nil, fmt.Errorf("slirp4netns did not come up (%v): %s", err, out)
	}
	return cmd, nil
}
