// Package slirp gives a container's network namespace user-mode networking
// and publishes ports, by driving RootlessKit (v3) as a library: its
// pkg/network drivers (pasta, slirp4netns, gvisor-tap-vsock) and pkg/port
// drivers, split like RootlessKit's pkg/parent (here: Setup, in A) and
// pkg/child (here: ConfigureChild, in B).
//
// # Drivers
//
//	driver       helper                  ports (-p) via                  client source IP seen in the container
//	-----------  ----------------------  ------------------------------  ---------------------------------------
//	pasta        pasta (apt: passt)      RootlessKit builtin (A + B)     not preserved: the container's own
//	             >= 2023_06_25           connect()s from inside the ns   address (10.0.2.100)
//	slirp4netns  slirp4netns             slirp4netns API (add_hostfwd)   preserved (the real client address)
//	gvisor       none (embedded)         gvisor-tap-vsock in A           not preserved: the gateway (10.0.2.1)
//
// So: use --network=slirp4netns when the container must log real client
// addresses. (pasta's own forwarding would preserve it, but RootlessKit
// only offers it as "forward everything the container listens on"
// (implicit) or through pasta's pesto control socket (passt >= 2026_05);
// neither matches Docker's -p, so builtin is used.)
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
// # Processes and lifetime
//
//   - gvisor: the whole stack and the port forwarders are goroutines in A;
//     B runs two goroutines pumping frames between /dev/net/tun and a unix
//     socket in StateDir. Nothing outlives A.
//   - slirp4netns: a child of A started with PR_SET_PDEATHSIG=SIGKILL (so
//     it dies with A even on kill -9); Close kills it.
//   - pasta: daemonises; Close finds and stops it. Recent passt releases
//     also quit when the namespace's process exits. The builtin forwarder
//     is goroutines in A and B.
//
// # Host requirements
//
// gvisor and slirp4netns need /dev/net/tun usable by the user (mode 0666, as
// distributions ship it), nsenter(1) and ip(8) on the host (A runs "nsenter
// -t PID -U -n -m ip tuntap add tap0" to create the tap device; B runs ip to
// set addresses). pasta needs no /dev/net/tun.
package slirp
