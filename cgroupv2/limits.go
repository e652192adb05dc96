// Package cgroupv2 applies Docker-style resource limits (-m, --memory-swap,
// -c, --cpus, --cpuset-cpus, --pids-limit, --device-*-bps/iops) to a
// rootless container through cgroup v2, either by asking the user's systemd
// for a delegated scope over D-Bus or, without a session bus, by writing
// into an already delegated cgroup (CI containers, `systemd-run --user
// --scope -p Delegate=yes`, a batch job's cgroup).
//
// It never drops a limit silently: Check tells, before anything is created,
// why a requested limit cannot be applied and what fixes it.
package cgroupv2

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sort"
	"strconv"
	"strings"
)

// DefaultCPUPeriod is the cpu.max period used for --cpus (as Docker does).
const DefaultCPUPeriod = 100000

// ThrottleDevice is one --device-{read,write}-{bps,iops} value: a device
// path and a rate (bytes/s or I/O operations/s).
type ThrottleDevice struct {
	Path string
	Rate uint64
}

// Limits are the resource limits requested for one container, with
// Docker's flag semantics. Zero values mean "not requested".
type Limits struct {
	// Memory is memory.max in bytes (-m).
	Memory int64
	// MemorySwap is memory plus swap in bytes (--memory-swap), -1 for
	// unlimited swap. memory.swap.max = MemorySwap - Memory. When Memory is
	// set and MemorySwap is not, swap is limited to Memory (Docker's default
	// of MemorySwap = 2*Memory).
	MemorySwap int64
	// MemoryReservation is memory.low in bytes (--memory-reservation).
	MemoryReservation int64
	// NanoCPUs is --cpus times 1e9; cpu.max = NanoCPUs*period/1e9 period.
	NanoCPUs int64
	// CPUShares is the relative weight (-c, --cpu-shares; 1024 = default),
	// converted to cpu.weight.
	CPUShares uint64
	// CpusetCpus is cpuset.cpus (--cpuset-cpus), e.g. "0-2,4".
	CpusetCpus string
	// PidsLimit is pids.max (--pids-limit); 0 = not set, -1 = unlimited.
	PidsLimit int64
	// io.max limits.
	DeviceReadBps   []ThrottleDevice
	DeviceWriteBps  []ThrottleDevice
	DeviceReadIOps  []ThrottleDevice
	DeviceWriteIOps []ThrottleDevice
	// OOMScoreAdj is not a cgroup setting; it is carried here so that one
	// value describes all resource flags. The container sets it on itself.
	OOMScoreAdj int
}

// Any reports whether any cgroup limit is requested (OOMScoreAdj does not
// count: it needs no cgroup).
func (l Limits) Any() bool {
	return len(l.Controllers()) > 0
}

// Controllers returns the cgroup v2 controllers the limits need, sorted.
func (l Limits) Controllers() []string {
	set := map[string]bool{}
	if l.Memory != 0 || l.MemorySwap != 0 || l.MemoryReservation != 0 {
		set["memory"] = true
	}
	if l.NanoCPUs != 0 || l.CPUShares != 0 {
		set["cpu"] = true
	}
	if l.CpusetCpus != "" {
		set["cpuset"] = true
	}
	if l.PidsLimit != 0 {
		set["pids"] = true
	}
	if len(l.DeviceReadBps)+len(l.DeviceWriteBps)+len(l.DeviceReadIOps)+len(l.DeviceWriteIOps) > 0 {
		set["io"] = true
	}
	out := make([]string, 0, len(set))
	for c := range set {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// Validate checks the values the way Docker does (messages follow Docker's).
func (l Limits) Validate() error {
	if l.Memory < 0 && l.Memory != -1 {
		return errors.New("invalid memory limit")
	}
	if l.Memory > 0 && l.Memory < 6*1024*1024 {
		return errors.New("minimum memory limit allowed is 6MB")
	}
	if l.MemorySwap != 0 && l.MemorySwap != -1 {
		if l.MemorySwap < 0 {
			return errors.New("invalid memory-swap limit")
		}
		if l.Memory <= 0 {
			return errors.New("you should always set the memory limit when using a memory-swap limit (--memory-swap needs -m)")
		}
		if l.MemorySwap < l.Memory {
			return errors.New("minimum memory-swap limit should be larger than the memory limit (--memory-swap is memory plus swap)")
		}
	}
	if l.MemoryReservation < 0 {
		return errors.New("invalid memory reservation")
	}
	if l.Memory > 0 && l.MemoryReservation > l.Memory {
		return errors.New("minimum memory limit can not be less than memory reservation limit, see usage")
	}
	if l.NanoCPUs < 0 {
		return errors.New("invalid value for --cpus")
	}
	if n := runtime.NumCPU(); l.NanoCPUs > int64(n)*1e9 {
		return fmt.Errorf("range of CPUs is from 0.01 to %d.00, as there are only %d CPUs available", n, n)
	}
	if l.NanoCPUs > 0 && l.NanoCPUs < 1e7 {
		return fmt.Errorf("range of CPUs is from 0.01 to %d.00", runtime.NumCPU())
	}
	if l.CpusetCpus != "" {
		if _, err := ParseCPUSet(l.CpusetCpus); err != nil {
			return err
		}
	}
	if l.PidsLimit < -1 {
		return errors.New("invalid pids limit")
	}
	return nil
}

// SwapMax returns the value for memory.swap.max: -1 for "max", or bytes;
// ok is false when no swap limit applies.
func (l Limits) SwapMax() (v int64, ok bool) {
	switch {
	case l.MemorySwap == -1:
		return -1, true
	case l.MemorySwap > 0 && l.Memory > 0:
		return l.MemorySwap - l.Memory, true
	case l.MemorySwap == 0 && l.Memory > 0:
		return l.Memory, true // Docker: MemorySwap defaults to 2*Memory
	}
	return 0, false
}

// CPUWeight converts CPUShares to cpu.weight with the standard conversion
// (runc, crun, Docker): 1 + ((shares-2)*9999)/262142; 0 when not set.
func CPUWeight(shares uint64) uint64 {
	if shares == 0 {
		return 0
	}
	if shares < 2 {
		shares = 2
	}
	if shares > 262144 {
		shares = 262144
	}
	return 1 + ((shares-2)*9999)/262142
}

// CPUQuota returns the cpu.max quota for NanoCPUs at DefaultCPUPeriod.
func CPUQuota(nanoCPUs int64) int64 {
	return nanoCPUs * DefaultCPUPeriod / 1e9
}

// ParseSize parses a size like Docker's units.RAMInBytes: binary units,
// "200M" = "200MB" = "200MiB" = 200*1024*1024; "1.5g"; plain bytes.
func ParseSize(s string) (int64, error) {
	orig := s
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, unit := s[:i], strings.ToLower(strings.TrimSpace(s[i:]))
	if num == "" || strings.HasPrefix(num, ".") || strings.HasSuffix(num, ".") {
		return 0, fmt.Errorf("invalid size: %q", orig)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size: %q", orig)
	}
	unit = strings.TrimSuffix(unit, "b")
	unit = strings.TrimSuffix(unit, "i")
	mult := 1.0
	switch unit {
	case "":
	case "k":
		mult = 1 << 10
	case "m":
		mult = 1 << 20
	case "g":
		mult = 1 << 30
	case "t":
		mult = 1 << 40
	case "p":
		mult = 1 << 50
	default:
		return 0, fmt.Errorf("invalid size: %q", orig)
	}
	v := f * mult
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("size too large: %q", orig)
	}
	return int64(v), nil
}

// ParseMemorySwap parses --memory-swap: a size or -1 (unlimited).
func ParseMemorySwap(s string) (int64, error) {
	if strings.TrimSpace(s) == "-1" {
		return -1, nil
	}
	return ParseSize(s)
}

// ParseCPUs parses --cpus ("1.5") into NanoCPUs.
func ParseCPUs(s string) (int64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("invalid value for --cpus: %q", s)
	}
	n := math.Round(f * 1e9)
	if n > float64(math.MaxInt64) {
		return 0, fmt.Errorf("invalid value for --cpus: %q", s)
	}
	return int64(n), nil
}

func splitDevice(s string) (path, val string, err error) {
	i := strings.LastIndex(s, ":")
	if i < 0 {
		return "", "", fmt.Errorf("bad format %q: want DEVICE:RATE, e.g. /dev/sda:30MB", s)
	}
	path, val = s[:i], s[i+1:]
	if !strings.HasPrefix(path, "/dev/") {
		return "", "", fmt.Errorf("bad format %q: the device must be a path under /dev", s)
	}
	return path, val, nil
}

// ParseThrottleBps parses --device-{read,write}-bps ("/dev/sda:30MB");
// the rate is a size as in ParseSize (30MB = 31457280 bytes/s, as Docker).
func ParseThrottleBps(s string) (ThrottleDevice, error) {
	path, val, err := splitDevice(s)
	if err != nil {
		return ThrottleDevice{}, err
	}
	n, err := ParseSize(val)
	if err != nil || n < 0 {
		return ThrottleDevice{}, fmt.Errorf("invalid rate for device: %q: the rate must be a size, e.g. 10MB", s)
	}
	return ThrottleDevice{Path: path, Rate: uint64(n)}, nil
}

// ParseThrottleIOps parses --device-{read,write}-iops ("/dev/sda:1000").
func ParseThrottleIOps(s string) (ThrottleDevice, error) {
	path, val, err := splitDevice(s)
	if err != nil {
		return ThrottleDevice{}, err
	}
	n, err := strconv.ParseUint(val, 10, 64)
	if err != nil {
		return ThrottleDevice{}, fmt.Errorf("invalid rate for device: %q: the number of I/O operations per second must be a positive integer", s)
	}
	return ThrottleDevice{Path: path, Rate: n}, nil
}

// ParseCPUSet parses a cpuset list ("0-2,4") into sorted CPU numbers.
func ParseCPUSet(s string) ([]int, error) {
	bad := fmt.Errorf("invalid value %q for cpuset cpus: want a list like 0-3,5", s)
	seen := map[int]bool{}
	for _, part := range strings.Split(strings.TrimSpace(s), ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, bad
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, bad
			}
		}
		if b > 8191 {
			return nil, bad
		}
		for c := a; c <= b; c++ {
			seen[c] = true
		}
	}
	out := make([]int, 0, len(seen))
	for c := range seen {
		out = append(out, c)
	}
	sort.Ints(out)
	return out, nil
}

// cpuMask returns the little-endian byte mask systemd's AllowedCPUs takes.
func cpuMask(cpus []int) []byte {
	if len(cpus) == 0 {
		return nil
	}
	mask := make([]byte, cpus[len(cpus)-1]/8+1)
	for _, c := range cpus {
		mask[c/8] |= 1 << (c % 8)
	}
	return mask
}
