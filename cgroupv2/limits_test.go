package cgroupv2

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"200M": 200 << 20, "200m": 200 << 20, "200MB": 200 << 20, "200MiB": 200 << 20,
		"1g": 1 << 30, "1.5g": 3 << 29, "30MB": 31457280, "1024": 1024, "10k": 10240,
		"1b": 1, "2T": 2 << 40, "100 M": 100 << 20,
	} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "M", "-1", "1x", "1.2.3m", ".5m", "1gg", "abc"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q): no error", in)
		}
	}
	if v, err := ParseMemorySwap("-1"); err != nil || v != -1 {
		t.Errorf("ParseMemorySwap(-1) = %d, %v", v, err)
	}
}

func TestParseCPUs(t *testing.T) {
	for in, want := range map[string]int64{"1.5": 1500000000, "0.5": 5e8, "2": 2e9, "0.01": 1e7} {
		got, err := ParseCPUs(in)
		if err != nil || got != want {
			t.Errorf("ParseCPUs(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "-1", "NaN", "Inf"} {
		if _, err := ParseCPUs(in); err == nil {
			t.Errorf("ParseCPUs(%q): no error", in)
		}
	}
	if q := CPUQuota(1500000000); q != 150000 {
		t.Errorf("CPUQuota(1.5) = %d", q)
	}
}

func TestCPUWeight(t *testing.T) {
	for shares, want := range map[uint64]uint64{0: 0, 2: 1, 512: 20, 1024: 39, 262144: 10000, 1: 1, 1 << 20: 10000} {
		if got := CPUWeight(shares); got != want {
			t.Errorf("CPUWeight(%d) = %d; want %d", shares, got, want)
		}
	}
}

func TestParseThrottle(t *testing.T) {
	d, err := ParseThrottleBps("/dev/sda:30MB")
	if err != nil || d != (ThrottleDevice{"/dev/sda", 31457280}) {
		t.Errorf("ParseThrottleBps = %+v, %v", d, err)
	}
	d, err = ParseThrottleIOps("/dev/disk/by-id/x:y:1000")
	if err != nil || d != (ThrottleDevice{"/dev/disk/by-id/x:y", 1000}) {
		t.Errorf("ParseThrottleIOps = %+v, %v", d, err)
	}
	for _, in := range []string{"/dev/sda", "sda:1M", "/dev/sda:x", "/dev/sda:-1"} {
		if _, err := ParseThrottleBps(in); err == nil {
			t.Errorf("ParseThrottleBps(%q): no error", in)
		}
	}
	if _, err := ParseThrottleIOps("/dev/sda:1M"); err == nil {
		t.Error("ParseThrottleIOps(1M): no error")
	}
}

func TestParseCPUSet(t *testing.T) {
	got, err := ParseCPUSet("0-2,5,3")
	if err != nil || !reflect.DeepEqual(got, []int{0, 1, 2, 3, 5}) {
		t.Errorf("ParseCPUSet = %v, %v", got, err)
	}
	for _, in := range []string{"", "a", "3-1", "1,", "-1"} {
		if _, err := ParseCPUSet(in); err == nil {
			t.Errorf("ParseCPUSet(%q): no error", in)
		}
	}
	if m := cpuMask([]int{0, 1, 9}); !reflect.DeepEqual(m, []byte{3, 2}) {
		t.Errorf("cpuMask = %v", m)
	}
}

func TestSwapAndValidate(t *testing.T) {
	mb := int64(1 << 20)
	l := Limits{Memory: 200 * mb, MemorySwap: 300 * mb}
	if v, ok := l.SwapMax(); !ok || v != 100*mb {
		t.Errorf("SwapMax = %d %v", v, ok)
	}
	if v, ok := (Limits{Memory: 200 * mb}).SwapMax(); !ok || v != 200*mb {
		t.Errorf("default SwapMax = %d %v", v, ok)
	}
	if v, ok := (Limits{Memory: 200 * mb, MemorySwap: -1}).SwapMax(); !ok || v != -1 {
		t.Errorf("unlimited SwapMax = %d %v", v, ok)
	}
	if _, ok := (Limits{}).SwapMax(); ok {
		t.Error("SwapMax without memory")
	}
	for _, bad := range []Limits{
		{MemorySwap: 300 * mb},
		{Memory: 300 * mb, MemorySwap: 200 * mb},
		{Memory: mb},
		{Memory: 100 * mb, MemoryReservation: 200 * mb},
		{NanoCPUs: 1 << 62},
		{CpusetCpus: "x"},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("Validate(%+v): no error", bad)
		}
	}
	if err := l.Validate(); err != nil {
		t.Error(err)
	}
}

func TestAnyControllers(t *testing.T) {
	if (Limits{OOMScoreAdj: 500}).Any() {
		t.Error("OOMScoreAdj alone counts as a cgroup limit")
	}
	l := Limits{Memory: 1, NanoCPUs: 1, CpusetCpus: "0", PidsLimit: 5, DeviceWriteBps: []ThrottleDevice{{"/dev/x", 1}}}
	if got := l.Controllers(); !reflect.DeepEqual(got, []string{"cpu", "cpuset", "io", "memory", "pids"}) {
		t.Errorf("Controllers = %v", got)
	}
}

// fakeTree builds a cgroup2 tree under a temp dir: root controllers, the
// user manager's controllers, and the current cgroup.
func fakeTree(t *testing.T, root, user string) host {
	dir := t.TempDir()
	write := func(p, s string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "cgroup.controllers"), root)
	if user != "" {
		write(filepath.Join(dir, "user.slice/user-1000.slice/user@1000.service/cgroup.controllers"), user)
	}
	return host{uid: 1000, mount: dir, unified: true, current: "/user.slice/user-1000.slice/session-1.scope"}
}

func kindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

func TestPlan(t *testing.T) {
	all := "cpuset cpu io memory hugetlb pids rdma misc\n"
	io := Limits{DeviceWriteBps: []ThrottleDevice{{"/dev/vda", 1 << 20}}}
	mem := Limits{Memory: 200 << 20}

	// hybrid: v2 tree without controllers
	h := fakeTree(t, "", "")
	h.unified = false
	_, err := plan(mem, h)
	if kindOf(err) != KindCgroupV1 || !strings.Contains(err.Error(), "systemd.unified_cgroup_hierarchy=1") ||
		!strings.Contains(err.Error(), "--memory") {
		t.Errorf("hybrid: %v", err)
	}
	// no cgroup2 at all
	if _, err := plan(mem, host{uid: 1000}); kindOf(err) != KindCgroupV1 {
		t.Errorf("v1: %v", err)
	}

	// systemd 252 default delegation: io not delegated
	h = fakeTree(t, all, "cpu memory pids\n")
	h.busAddr = "unix:path=/run/user/1000/bus"
	_, err = plan(io, h)
	if kindOf(err) != KindNotDelegated {
		t.Fatalf("not delegated: %v", err)
	}
	for _, s := range []string{"io", "--device-write-bps", "/etc/systemd/system/user@.service.d/delegate.conf",
		"Delegate=cpu cpuset io memory pids", "systemctl daemon-reload", "cpu memory pids"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("not-delegated error lacks %q:\n%v", s, err)
		}
	}
	if m, err := plan(mem, h); err != nil || m != modeSystemd {
		t.Errorf("memory with default delegation: %v %v", m, err)
	}

	// no bus, current cgroup not writable (does not exist here)
	h = fakeTree(t, all, "cpu memory pids\n")
	_, err = plan(mem, h)
	if kindOf(err) != KindNoSession || !strings.Contains(err.Error(), "loginctl enable-linger") ||
		!strings.Contains(err.Error(), "--cgroups=disabled") {
		t.Errorf("no session: %v", err)
	}

	// no bus, writable delegated cgroup: cgroupfs
	h = fakeTree(t, all, "")
	h.current = "/ci"
	if err := os.MkdirAll(filepath.Join(h.mount, "ci"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"cgroup.procs", "cgroup.subtree_control"} {
		os.WriteFile(filepath.Join(h.mount, "ci", f), nil, 0o644)
	}
	os.WriteFile(filepath.Join(h.mount, "ci", "cgroup.controllers"), []byte("memory pids\n"), 0o644)
	if m, err := plan(mem, h); err != nil || m != modeCgroupfs {
		t.Errorf("cgroupfs: %v %v", m, err)
	}
	if _, err := plan(io, h); kindOf(err) != KindNotDelegated {
		t.Errorf("cgroupfs without io: %v", err)
	}

	// kernel without the controller
	h = fakeTree(t, "memory pids", "memory pids")
	h.busAddr = "x"
	if _, err := plan(io, h); kindOf(err) != KindUnavailable {
		t.Errorf("no io in kernel: %v", err)
	}
}

func TestCheckNoLimits(t *testing.T) {
	if err := Check(Limits{}); err != nil {
		t.Error(err)
	}
	if err := Check(Limits{OOMScoreAdj: 100}); err != nil {
		t.Error(err)
	}
}

func TestCheckHere(t *testing.T) {
	// On the development machines (hybrid v1) this must say how to fix it;
	// elsewhere it just must not panic.
	err := Check(Limits{Memory: 200 << 20})
	t.Logf("Check(-m 200M) here: %v", err)
}

func TestSystemdProps(t *testing.T) {
	l := Limits{Memory: 200 << 20, MemorySwap: 300 << 20, NanoCPUs: 15e8, CPUShares: 512, PidsLimit: -1, CpusetCpus: "0-1"}
	got := map[string]any{}
	for _, p := range systemdProps(l) {
		got[p.Name] = p.Value.Value()
	}
	want := map[string]any{
		"MemoryMax": uint64(200 << 20), "MemorySwapMax": uint64(100 << 20),
		"CPUQuotaPerSecUSec": uint64(1500000), "CPUQuotaPeriodUSec": uint64(100000),
		"CPUWeight": uint64(20), "TasksMax": ^uint64(0), "AllowedCPUs": []byte{3},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("systemdProps:\n got %v\nwant %v", got, want)
	}
}

func TestIOMaxLines(t *testing.T) {
	// Use any whole block disk of this machine.
	entries, _ := os.ReadDir("/sys/block")
	var dev string
	for _, e := range entries {
		if p := "/dev/" + e.Name(); !strings.HasPrefix(e.Name(), "loop") && exists(p) {
			dev = p
			break
		}
	}
	if dev == "" {
		t.Skip("no block device")
	}
	d, err := resolveDevice(dev)
	if err != nil {
		t.Fatal(err)
	}
	l := Limits{
		DeviceWriteBps:  []ThrottleDevice{{dev, 31457280}},
		DeviceReadIOps:  []ThrottleDevice{{dev, 1000}},
		DeviceWriteIOps: []ThrottleDevice{{dev, 50}},
	}
	lines, err := ioMaxLines(l)
	want := []string{fmt.Sprintf("%d:%d wbps=31457280 riops=1000 wiops=50", d.major, d.minor)}
	if err != nil || !reflect.DeepEqual(lines, want) {
		t.Errorf("ioMaxLines = %q, %v; want %q", lines, err, want)
	}
	if _, err := ioMaxLines(Limits{DeviceReadBps: []ThrottleDevice{{"/dev/null", 1}}}); err == nil {
		t.Error("/dev/null accepted as a block device")
	}
}

func TestDelegatedCgroup(t *testing.T) {
	for in, want := range map[string]string{"/a/b/" + leafName: "/a/b", "/a/b": "/a/b", "/": "/", "": ""} {
		if got := delegatedCgroup(in); got != want {
			t.Errorf("delegatedCgroup(%q) = %q, want %q", in, got, want)
		}
	}
}
