// Package slirp gives a container's network namespace user-mode networking
// and publishes ports, by driving RootlessKit (v3) as a library: its
// pkg/network drivers (pasta, slirp4netns, gvisor-tap-vsock) and pkg/port
// drivers, split like RootlessKit's pkg/parent (here: Setup, in A) and
// pkg/child (here: ConfigureChild, in B).
//
// # Drivers
//
//	driver       helper                  outbound (container -> host, internet)
//	-----------  ----------------------  ---------------------------------------
//	pasta        pasta (apt: passt)      pasta's own TCP/IP translation
//	             >= 2023_06_25
//	slirp4netns  slirp4netns             libslirp in the helper process
//	gvisor       none (embedded)         gvisor-tap-vsock's stack, in A
//
// # Published ports (-p)
//
// Every driver publishes ports with RootlessKit's builtin port driver by
// default (Podman's "rootlessport" is the same code): A listens on the
// host; for each connection B connects, inside the container's network
// namespace, to the container's address and passes that socket to A,
// which splices it to the host connection. No user-mode TCP stack is on
// the way, which makes it several times faster than the drivers' own
// forwarding (bench/run.sh net). B therefore stays alive for the
// container's lifetime (ChildConfig.NeedsMonitor).
//
// A detached container left to its init alone (a resident network, see
// resident.go) has no A or B: its init forwards the published TCP ports
// the same way (accept on the host's socket, connect inside, splice),
// from listening sockets bound here before the container starts.
//
// --network=DRIVER:port_handler=native (Options.PortDriver = PortNative)
// uses the network driver's own forwarding instead, where it has one:
//
//	port driver                         client source IP seen in the container
//	----------------------------------  ----------------------------------------
//	builtin (default, every driver)     not preserved: the container's own
//	                                    address (10.0.2.100)
//	slirp4netns native (add_hostfwd)    preserved (the real client address)
//	gvisor native (forwarder in A)      not preserved: the gateway (10.0.2.1)
//
// So: use --network=slirp4netns:port_handler=slirp4netns (Podman's
// spelling) when the container must log real client addresses, at the
// cost of inbound throughput. (pasta's own forwarding would preserve it
// too, but RootlessKit only offers it as "forward everything the container
// listens on" (implicit) or through pasta's pesto control socket (passt >=
// 2026_05); neither matches Docker's -p, so pasta has no native mode.)
//
// Addresses (all drivers): container 10.0.2.100/24 on tap0, MTU 65520 by
// default. Gateway and host loopback (host.containers.internal; the host's
// 127.0.0.1 unless DisableHostLoopback): gvisor 10.0.2.1; slirp4netns and
// pasta gateway 10.0.2.2 (host loopback). DNS forwarder: gvisor 10.0.2.1,
// slirp4netns and pasta 10.0.2.3; it is used only when the host's
// resolv.conf points at a loopback resolver (systemd-resolved 127.0.0.53,
// dnsmasq ...) or has no IPv4 nameserver; otherwise the container gets the
// host's nameservers directly.
//
// TCP connections from the container to the host loopback address skip
// the driver's stack altogether when the container runs with the seccomp
// connect hook of package slirp/bypass (container.Spec.NetBypass): they
// are made on the host and swapped in for the container's socket.
//
// # Processes and lifetime
//
//   - gvisor: the whole stack and the port forwarders are goroutines in A;
//     B runs two goroutines pumping frames between /dev/net/tun and a unix
//     socket in StateDir. Nothing outlives A.
//   - slirp4netns: a child of A started with PR_SET_PDEATHSIG=SIGKILL (so
//     it dies with A even on kill -9); Close kills it.
//   - pasta: daemonises; Close finds and stops it. Recent passt releases
//     also quit when the namespace's process exits.
//   - The builtin port forwarder (any driver) is goroutines in A and B.
//   - A resident slirp4netns (Options.ExitFD; a detached container left to
//     its init, see resident.go) runs in a session of its own and quits
//     when the container's init, which holds its --exit-fd pipe, is gone;
//     its published TCP ports are forwarded by that init from sockets
//     bound here beforehand (ListenPorts). Release leaves it running.
//
// # Host requirements
//
// gvisor and slirp4netns need /dev/net/tun usable by the user (mode 0666, as
// distributions ship it). slirp4netns is started here, not by RootlessKit's
// driver, and makes the tap device itself; gvisor's driver needs nsenter(1)
// and ip(8) on the host (A runs "nsenter -t PID -U -n -m ip tuntap add
// tap0"). pasta needs no /dev/net/tun.
package slirp
