package slirp

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// TestIperf measures TCP throughput per driver with iperf3; it runs only
// with UNROOT_SLIRP_IPERF=1 (bench/net.sh). "in" = host -> published port
// -> container; "out" = container -> host loopback.
func TestIperf(t *testing.T) {
	if os.Getenv("UNROOT_SLIRP_IPERF") == "" {
		t.Skip("set UNROOT_SLIRP_IPERF=1 (see bench/net.sh)")
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Skip("iperf3 not installed")
	}
	secs := os.Getenv("UNROOT_SLIRP_IPERF_SECS")
	if secs == "" {
		secs = "3"
	}
	type variant struct {
		name string
		d    Driver
		pd   string
	}
	vs := []variant{{"gvisor", DriverGvisor, PortBuiltin}, {"gvisor+native-ports", DriverGvisor, PortNative},
		{"slirp4netns", DriverSlirp4netns, PortBuiltin}, {"slirp4netns+native-ports", DriverSlirp4netns, PortNative},
		{"pasta", DriverPasta, PortBuiltin}}
	for _, v := range vs {
		t.Run(v.name, func(t *testing.T) {
			requireDriver(t, v.d)

			// host-side iperf3 server on 127.0.0.1 for "out"
			hp := freePort(t)
			srv := exec.Command("iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", strconv.Itoa(hp))
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { srv.Process.Kill(); srv.Wait() }()
			time.Sleep(200 * time.Millisecond)

			c := startChild(t)
			h, cfg, err := Setup(context.Background(), Options{Mode: string(v.d), PortDriver: v.pd, StateDir: t.TempDir(),
				Ports: []PortSpec{{Proto: "tcp", HostIP: "127.0.0.1", ContainerPort: 5201}}}, c.cmd.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			rep, err := c.configure(childReq{Cfg: cfg,
				Serve: []string{"iperf3", "-s", "-p", "5201"},
				Run:   []string{"iperf3", "-c", cfg.HostLoopback, "-p", strconv.Itoa(hp), "-t", secs, "-J"}})
			if err != nil {
				t.Fatalf("%v\n%s", err, rep.RunOut)
			}
			out := gbps(rep.RunOut)
			inRaw, err := exec.Command("iperf3", "-c", "127.0.0.1", "-p", strconv.Itoa(h.Ports()[0].HostPort), "-t", secs, "-J").CombinedOutput()
			if err != nil {
				t.Fatalf("iperf3 in: %v\n%s", err, inRaw)
			}
			in := gbps(string(inRaw))
			fmt.Printf("IPERF %-28s in(host->container port) %6.2f Gbit/s   out(container->host lo) %6.2f Gbit/s\n", v.name, in, out)
		})
	}
}

func gbps(js string) float64 {
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if json.Unmarshal([]byte(js), &r) != nil {
		return -1
	}
	return r.End.SumReceived.BitsPerSecond / 1e9
}

func freePort(t *testing.T) int {
	p, err := probeBind(PortSpec{Proto: "tcp", HostIP: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}
