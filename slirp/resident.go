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

// startResident starts slirp4netns for pid's network namespace with
// RootlessKit's driver's options, but in a session of its own, without a
// parent-death signal, quitting when exit's writers are gone. slirp4netns
// makes the tap device itself (in the namespace, as the namespace's root):
// RootlessKit's two nsenter+ip runs beforehand cost ~25 ms per container. Its diagnostics go to a file in dir (a pipe to us
// would break when we exit); its last lines are in the error if it fails.
func startResident(dir string, pid, mtu int, disableHostLoopback bool, apiSock string, exit *os.File) (*exec.Cmd, error) {
	f, err := slirpFeatures()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "slirp4netns.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer readyR.Close()
	args := []string{"--mtu", strconv.Itoa(mtu), "--ready-fd", "3", "--exit-fd", "4"}
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
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{readyW, exit}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
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
		out, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("slirp4netns did not come up (%v): %s", err, strings.TrimSpace(string(out)))
	}
	return cmd, nil
}
