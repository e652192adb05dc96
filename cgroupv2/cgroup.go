package cgroupv2

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"
)

// DefaultSlice is the user-manager slice container scopes go into.
const DefaultSlice = "unroot.slice"

// Options for Setup.
type Options struct {
	// ID names the container: the scope is unroot-<ID>.scope, the cgroupfs
	// directory unroot-<ID>.
	ID     string
	Limits Limits
	// Manager forces "systemd" or "cgroupfs"; "" picks systemd when a user
	// session bus exists, otherwise a writable delegated current cgroup.
	Manager string
	// Slice overrides DefaultSlice (systemd only).
	Slice string
	// Always creates a cgroup even when no limit is requested (for
	// stats or a cgroup namespace). Without it and without limits, Setup
	// does nothing and returns a nil *Cgroup.
	Always bool
	// Nest keeps the monitor process (pid) out of the limits: the scope or
	// directory gets two children, "monitor" (pid is moved there) and
	// "container" (the limits; Path), and the caller moves the container's
	// processes into Path. Without Nest, pid lives in Path with the limits.
	Nest bool
}

// Cgroup is the container's cgroup. All methods are safe on a nil *Cgroup.
type Cgroup struct {
	top     string // the scope's or unroot-<ID>'s directory (Remove)
	path    string // absolute directory under the cgroup2 mount
	rel     string // path relative to the cgroup2 mount
	unit    string // systemd scope name, "" in cgroupfs mode
	conn    *sd.Conn
	manager string
}

// Path is the cgroup directory the container lives in (for reading files,
// and what the container sees as / after unsharing its cgroup namespace).
func (c *Cgroup) Path() string {
	if c == nil {
		return ""
	}
	return c.path
}

// RelPath is Path relative to the cgroup2 mount, as in /proc/PID/cgroup.
func (c *Cgroup) RelPath() string {
	if c == nil {
		return ""
	}
	return c.rel
}

// Unit is the systemd scope name, or "" when not managed by systemd.
func (c *Cgroup) Unit() string {
	if c == nil {
		return ""
	}
	return c.unit
}

// Top is the scope's or the cgroupfs unroot-<ID> directory: with Nest,
// the parent of Path.
func (c *Cgroup) Top() string {
	if c == nil {
		return ""
	}
	return c.top
}

// RemoveLeft removes a cgroup Setup made whose owner went away without
// removing it: the scope unit (Unit; stopped, which kills what still runs
// in it, and its failed state reset), else the cgroupfs directory (Top).
// Safe when it is gone already.
func RemoveLeft(unit, dir string) error {
	if unit == "" && dir == "" {
		return nil
	}
	return (&Cgroup{unit: unit, top: dir}).Remove()
}

// Manager is "systemd" or "cgroupfs".
func (c *Cgroup) Manager() string {
	if c == nil {
		return ""
	}
	return c.manager
}

// Setup puts the process pid (the container's monitor, blocked until Setup
// returns) into a new cgroup with the limits applied. It runs Check's
// logic first and returns the same *Error when the limits can't be applied.
func Setup(ctx context.Context, opts Options, pid int) (*Cgroup, error) {
	l := opts.Limits
	if !l.Any() && !opts.Always {
		return nil, nil
	}
	if err := l.Validate(); err != nil {
		return nil, err
	}
	if opts.ID == "" {
		return nil, errors.New("cgroupv2: Setup needs a container ID")
	}
	h := detectHost()
	m, err := plan(l, h)
	if err != nil {
		if l.Any() {
			return nil, err
		}
		return nil, nil // Always, but nothing usable: no cgroup, no error
	}
	switch opts.Manager {
	case "systemd":
		m = modeSystemd
		if h.busAddr == "" {
			return nil, errors.New("cgroupv2: no user session bus for the systemd cgroup manager")
		}
	case "cgroupfs":
		m = modeCgroupfs
	case "":
	default:
		return nil, fmt.Errorf("cgroupv2: unknown cgroup manager %q", opts.Manager)
	}
	if m == modeSystemd {
		return setupSystemd(ctx, opts, h, pid)
	}
	return setupCgroupfs(opts, h, pid)
}

func dialer(addr string) func() (*godbus.Conn, error) {
	return func() (*godbus.Conn, error) {
		c, err := godbus.Dial(addr)
		if err != nil {
			return nil, err
		}
		if err := c.Auth([]godbus.Auth{godbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
			c.Close()
			return nil, err
		}
		if err := c.Hello(); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
}

func prop(name string, v any) sd.Property {
	return sd.Property{Name: name, Value: godbus.MakeVariant(v)}
}

type ioLimit struct {
	Path string
	Rate uint64
}

// systemdProps maps the limits to systemd resource-control properties.
func systemdProps(l Limits) []sd.Property {
	var p []sd.Property
	if l.Memory > 0 {
		p = append(p, prop("MemoryMax", uint64(l.Memory)))
	}
	if v, ok := l.SwapMax(); ok {
		if v < 0 {
			p = append(p, prop("MemorySwapMax", uint64(math.MaxUint64)))
		} else {
			p = append(p, prop("MemorySwapMax", uint64(v)))
		}
	}
	if l.MemoryReservation > 0 {
		p = append(p, prop("MemoryLow", uint64(l.MemoryReservation)))
	}
	if l.NanoCPUs > 0 {
		p = append(p, prop("CPUQuotaPerSecUSec", uint64(l.NanoCPUs/1000)),
			prop("CPUQuotaPeriodUSec", uint64(DefaultCPUPeriod)))
	}
	if w := CPUWeight(l.CPUShares); w > 0 {
		p = append(p, prop("CPUWeight", w))
	}
	if l.CpusetCpus != "" {
		cpus, _ := ParseCPUSet(l.CpusetCpus)
		p = append(p, prop("AllowedCPUs", cpuMask(cpus)))
	}
	if l.PidsLimit > 0 {
		p = append(p, prop("TasksMax", uint64(l.PidsLimit)))
	} else if l.PidsLimit < 0 {
		p = append(p, prop("TasksMax", uint64(math.MaxUint64)))
	}
	io := func(name string, devs []ThrottleDevice) {
		if len(devs) == 0 {
			return
		}
		var v []ioLimit
		for _, d := range devs {
			path := d.Path
			if dev, err := resolveDevice(d.Path); err == nil {
				if p := fmt.Sprintf("/dev/block/%d:%d", dev.major, dev.minor); exists(p) {
					path = p // the whole disk, when d.Path is a partition
				}
			}
			v = append(v, ioLimit{path, d.Rate})
		}
		p = append(p, prop(name, v))
	}
	io("IOReadBandwidthMax", l.DeviceReadBps)
	io("IOWriteBandwidthMax", l.DeviceWriteBps)
	io("IOReadIOPSMax", l.DeviceReadIOps)
	io("IOWriteIOPSMax", l.DeviceWriteIOps)
	return p
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func setupSystemd(ctx context.Context, opts Options, h host, pid int) (*Cgroup, error) {
	conn, err := sd.NewConnection(dialer(h.busAddr))
	if err != nil {
		return nil, &Error{Kind: KindNoSession, Reason: fmt.Sprintf("cannot connect to the systemd user instance over D-Bus (%s): %v", h.busAddr, err),
			Fix: fmt.Sprintf("make sure `systemctl --user status` works; an admin may need `loginctl enable-linger %s`; or run with --cgroups=disabled and without resource limits", userName())}
	}
	slice := opts.Slice
	if slice == "" {
		slice = DefaultSlice
	}
	unit := "unroot-" + opts.ID + ".scope"
	base := []sd.Property{
		sd.PropDescription("unroot container " + opts.ID),
		sd.PropSlice(slice),
		sd.PropPids(uint32(pid)),
		prop("Delegate", true),
		prop("CollectMode", "inactive-or-failed"),
	}
	start := func(props []sd.Property) error {
		ch := make(chan string, 1)
		if _, err := conn.StartTransientUnitContext(ctx, unit, "fail", props, ch); err != nil {
			return err
		}
		select {
		case res := <-ch:
			if res != "done" {
				return fmt.Errorf("systemd job for %s: %s", unit, res)
			}
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	props := base
	if !opts.Nest {
		props = append(base, systemdProps(opts.Limits)...)
	}
	err = start(props)
	var dbe godbus.Error
	if err != nil && errors.As(err, &dbe) && (strings.Contains(dbe.Name, "PropertyReadOnly") || strings.Contains(dbe.Name, "InvalidArgs") || strings.Contains(dbe.Name, "UnknownProperty")) {
		// An older systemd that lacks one of the properties: create the
		// scope bare and write every limit into its files below.
		err = start(base)
	}
	if err != nil {
		conn.Close()
		return nil, &Error{Kind: KindUnavailable, Reason: fmt.Sprintf("systemd could not create the scope %s: %v", unit, err),
			Fix: "see `journalctl --user -e`; or run with --cgroups=disabled and without resource limits"}
	}
	c := &Cgroup{unit: unit, conn: conn, manager: "systemd"}
	fail := func(err error) (*Cgroup, error) {
		c.Remove()
		c.Close()
		return nil, err
	}
	v, err := conn.GetUnitTypePropertyContext(ctx, unit, "Scope", "ControlGroup")
	if err != nil {
		return fail(fmt.Errorf("cgroupv2: reading ControlGroup of %s: %w", unit, err))
	}
	rel, _ := v.Value.Value().(string)
	if rel == "" {
		return fail(fmt.Errorf("cgroupv2: systemd reports no cgroup for %s", unit))
	}
	c.rel, c.path = rel, filepath.Join(h.mount, rel)
	c.top = c.path
	if opts.Nest {
		if err := c.nest(opts.Limits, pid); err != nil {
			if errors.Is(err, os.ErrPermission) {
				err = &Error{Kind: KindNotDelegated, Controllers: opts.Limits.Controllers(),
					Reason: fmt.Sprintf("%v: the systemd user manager was started before these controllers were delegated", err),
					Fix:    fmt.Sprintf("an admin runs `systemctl restart user@%d.service` (or log out of every session and in again, or reboot)", h.uid)}
			}
			return fail(err)
		}
		return c, nil
	}
	// systemd has applied its properties; write the files too, so that
	// whatever this systemd version could not express is applied as well
	// (same values, so this is idempotent).
	if err := writeLimits(c.path, opts.Limits); err != nil {
		if errors.Is(err, os.ErrPermission) {
			// Measured on systemd 252: after the Delegate= drop-in and only
			// a daemon-reload, the running user manager lists the new
			// controllers but their files in new scopes belong to root.
			err = &Error{Kind: KindNotDelegated, Controllers: opts.Limits.Controllers(),
				Reason: fmt.Sprintf("%v: the systemd user manager was started before these controllers were delegated", err),
				Fix:    fmt.Sprintf("an admin runs `systemctl restart user@%d.service` (or log out of every session and in again, or reboot)", h.uid)}
		}
		return fail(err)
	}
	if got := currentCgroup(strconv.Itoa(pid)); got != rel {
		return fail(fmt.Errorf("cgroupv2: process %d is in %q, not in the scope's cgroup %q", pid, got, rel))
	}
	return c, nil
}

// leafName is where the processes of a delegated cgroup are moved so that
// controllers can be enabled in it ("no internal processes" rule).
const leafName = "unroot-leaf"

func setupCgroupfs(opts Options, h host, pid int) (*Cgroup, error) {
	if h.mount == "" || h.current == "" {
		return nil, errors.New("cgroupv2: no cgroup v2 hierarchy")
	}
	parent := filepath.Join(h.mount, h.current)
	if err := enableControllers(parent, opts.Limits.Controllers()); err != nil {
		return nil, err
	}
	name := "unroot-" + opts.ID
	dir := filepath.Join(parent, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cgroupv2: %w", err)
	}
	c := &Cgroup{top: dir, path: dir, rel: filepath.Join(h.current, name), manager: "cgroupfs"}
	if opts.Nest {
		if err := writeFile(dir, "cgroup.procs", strconv.Itoa(pid)); err != nil {
			c.Remove()
			return nil, err
		}
		if err := c.nest(opts.Limits, pid); err != nil {
			c.Remove()
			return nil, err
		}
		return c, nil
	}
	if err := writeLimits(dir, opts.Limits); err != nil {
		c.Remove()
		return nil, err
	}
	if err := writeFile(dir, "cgroup.procs", strconv.Itoa(pid)); err != nil {
		c.Remove()
		return nil, err
	}
	return c, nil
}

// enableControllers enables ctrls in dir's cgroup.subtree_control, moving
// the processes of dir into a leaf child first when needed.
func enableControllers(dir string, ctrls []string) error {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		return fmt.Errorf("cgroupv2: %w", err)
	}
	on := map[string]bool{}
	for _, c := range strings.Fields(string(data)) {
		on[c] = true
	}
	var add []string
	for _, c := range ctrls {
		if !on[c] {
			add = append(add, "+"+c)
		}
	}
	if len(add) == 0 {
		return nil
	}
	err = os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte(strings.Join(add, " ")), 0)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("cgroupv2: enabling %s in %s: %w", strings.Join(add, " "), dir, err)
	}
	// Processes live in dir: move them all into a leaf.
	leaf := filepath.Join(dir, leafName)
	if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("cgroupv2: %w", err)
	}
	for range 20 {
		procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			return fmt.Errorf("cgroupv2: %w", err)
		}
		pids := strings.Fields(string(procs))
		if len(pids) == 0 {
			break
		}
		for _, p := range pids {
			if err := writeFile(leaf, "cgroup.procs", p); err != nil && !errors.Is(err, unix.ESRCH) {
				return err
			}
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte(strings.Join(add, " ")), 0); err != nil {
		return fmt.Errorf("cgroupv2: enabling %s in %s: %w", strings.Join(add, " "), dir, err)
	}
	return nil
}

func writeFile(dir, file, val string) error {
	if err := os.WriteFile(filepath.Join(dir, file), []byte(val), 0); err != nil {
		return fmt.Errorf("cgroupv2: writing %q to %s: %w", val, filepath.Join(dir, file), err)
	}
	return nil
}

type device struct{ major, minor uint32 }

// resolveDevice maps a device path to the major:minor io.max takes: the
// whole disk for a partition (the kernel refuses partitions in io.max).
func resolveDevice(path string) (device, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return device{}, fmt.Errorf("cgroupv2: device %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return device{}, fmt.Errorf("cgroupv2: %s is not a block device", path)
	}
	d := device{unix.Major(st.Rdev), unix.Minor(st.Rdev)}
	sys := fmt.Sprintf("/sys/dev/block/%d:%d", d.major, d.minor)
	if exists(filepath.Join(sys, "partition")) {
		if data, err := os.ReadFile(filepath.Join(sys, "..", "dev")); err == nil {
			var ma, mi uint32
			if _, err := fmt.Sscanf(strings.TrimSpace(string(data)), "%d:%d", &ma, &mi); err == nil {
				d = device{ma, mi}
			}
		}
	}
	return d, nil
}

// ioMaxLines builds the io.max lines ("MAJ:MIN rbps=N wbps=N ...").
func ioMaxLines(l Limits) ([]string, error) {
	type entry struct {
		dev  device
		keys []string
	}
	var order []device
	byDev := map[device]*entry{}
	add := func(key string, devs []ThrottleDevice) error {
		for _, d := range devs {
			dev, err := resolveDevice(d.Path)
			if err != nil {
				return err
			}
			e := byDev[dev]
			if e == nil {
				e = &entry{dev: dev}
				byDev[dev] = e
				order = append(order, dev)
			}
			e.keys = append(e.keys, fmt.Sprintf("%s=%d", key, d.Rate))
		}
		return nil
	}
	for _, a := range []struct {
		k string
		d []ThrottleDevice
	}{{"rbps", l.DeviceReadBps}, {"wbps", l.DeviceWriteBps}, {"riops", l.DeviceReadIOps}, {"wiops", l.DeviceWriteIOps}} {
		if err := add(a.k, a.d); err != nil {
			return nil, err
		}
	}
	var lines []string
	for _, d := range order {
		lines = append(lines, fmt.Sprintf("%d:%d %s", d.major, d.minor, strings.Join(byDev[d].keys, " ")))
	}
	return lines, nil
}

// writeLimits writes the limits into the cgroup files of dir.
func writeLimits(dir string, l Limits) error {
	max := func(v int64) string {
		if v < 0 {
			return "max"
		}
		return strconv.FormatInt(v, 10)
	}
	if l.Memory != 0 {
		if err := writeFile(dir, "memory.max", max(l.Memory)); err != nil {
			return err
		}
	}
	if v, ok := l.SwapMax(); ok {
		if err := writeFile(dir, "memory.swap.max", max(v)); err != nil {
			if l.MemorySwap != 0 || !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("%w (is swap accounting enabled in the kernel?)", err)
			}
			// implicit default swap limit, no swap accounting: nothing to limit
		}
	}
	if l.MemoryReservation > 0 {
		if err := writeFile(dir, "memory.low", max(l.MemoryReservation)); err != nil {
			return err
		}
	}
	if l.NanoCPUs > 0 {
		if err := writeFile(dir, "cpu.max", fmt.Sprintf("%d %d", CPUQuota(l.NanoCPUs), DefaultCPUPeriod)); err != nil {
			return err
		}
	}
	if w := CPUWeight(l.CPUShares); w > 0 {
		if err := writeFile(dir, "cpu.weight", strconv.FormatUint(w, 10)); err != nil {
			return err
		}
	}
	if l.CpusetCpus != "" {
		if err := writeFile(dir, "cpuset.cpus", l.CpusetCpus); err != nil {
			return err
		}
	}
	if l.PidsLimit != 0 {
		if err := writeFile(dir, "pids.max", max(l.PidsLimit)); err != nil {
			return err
		}
	}
	lines, err := ioMaxLines(l)
	if err != nil {
		return err
	}
	for _, line := range lines {
		if err := writeFile(dir, "io.max", line); err != nil {
			return err
		}
	}
	return nil
}

// Close releases the D-Bus connection. It does not stop the scope: a
// transient scope goes away by itself when its last process exits.
func (c *Cgroup) Close() error {
	if c == nil || c.conn == nil {
		return nil
	}
	c.conn.Close()
	c.conn = nil
	return nil
}

// Remove kills whatever still runs in the cgroup and removes it: stops the
// systemd scope, or kills and rmdirs the cgroupfs directory. Safe to call
// after the container exited (the scope may already be gone).
func (c *Cgroup) Remove() error {
	if c == nil {
		return nil
	}
	if c.unit != "" {
		conn := c.conn
		if conn == nil {
			addr := userBusAddress(os.Getuid())
			if addr == "" {
				return errors.New("cgroupv2: no user session bus to stop " + c.unit)
			}
			var err error
			if conn, err = sd.NewConnection(dialer(addr)); err != nil {
				return err
			}
			defer conn.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ch := make(chan string, 1)
		if _, err := conn.StopUnitContext(ctx, c.unit, "replace", ch); err != nil {
			var dbe godbus.Error
			if errors.As(err, &dbe) && strings.HasSuffix(dbe.Name, "NoSuchUnit") {
				return nil
			}
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		_ = conn.ResetFailedUnitContext(ctx, c.unit)
		return nil
	}
	return removeTree(c.top)
}

// nest splits c (which holds pid) into monitor/ (pid) and container/ (the
// limits), enabling the controllers between them, and points c at
// container/.
func (c *Cgroup) nest(l Limits, pid int) error {
	mon := filepath.Join(c.top, "monitor")
	if err := os.Mkdir(mon, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("cgroupv2: %w", err)
	}
	if err := writeFile(mon, "cgroup.procs", strconv.Itoa(pid)); err != nil {
		return err
	}
	if err := enableControllers(c.top, l.Controllers()); err != nil {
		return err
	}
	ctr := filepath.Join(c.top, "container")
	if err := os.Mkdir(ctr, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("cgroupv2: %w", err)
	}
	if err := writeLimits(ctr, l); err != nil {
		return err
	}
	c.path, c.rel = ctr, filepath.Join(c.rel, "container")
	return nil
}

func removeTree(dir string) error {
	if !exists(dir) {
		return nil
	}
	if procs, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs")); len(strings.TrimSpace(string(procs))) > 0 {
		if os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0) != nil {
			for _, p := range strings.Fields(string(procs)) {
				if n, err := strconv.Atoi(p); err == nil {
					_ = syscall.Kill(n, syscall.SIGKILL)
				}
			}
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			if err := removeTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	var err error
	for i := 0; i < 100; i++ {
		if err = unix.Rmdir(dir); err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("cgroupv2: removing %s: %w", dir, err)
}

// Stats is a snapshot of the cgroup's counters (0 when not available).
type Stats struct {
	MemoryCurrent uint64
	MemoryPeak    uint64
	OOMKills      uint64 // memory.events oom_kill (includes descendants)
	OOMEvents     uint64 // memory.events oom
	PidsCurrent   uint64
	CPUUsageUsec  uint64
	NrThrottled   uint64
	ThrottledUsec uint64
	// IO maps "MAJ:MIN" to io.stat keys (rbytes, wbytes, rios, wios, ...).
	IO map[string]map[string]uint64
}

// Stats reads memory.current, memory.events, pids.current, cpu.stat and
// io.stat.
func (c *Cgroup) Stats() (Stats, error) {
	var s Stats
	if c == nil {
		return s, errors.New("cgroupv2: no cgroup")
	}
	if !exists(c.path) {
		return s, fmt.Errorf("cgroupv2: %s: %w", c.path, os.ErrNotExist)
	}
	s.MemoryCurrent, _ = readUint(c.path, "memory.current")
	s.MemoryPeak, _ = readUint(c.path, "memory.peak")
	ev, _ := readKeyed(c.path, "memory.events")
	s.OOMKills, s.OOMEvents = ev["oom_kill"], ev["oom"]
	s.PidsCurrent, _ = readUint(c.path, "pids.current")
	cpu, _ := readKeyed(c.path, "cpu.stat")
	s.CPUUsageUsec, s.NrThrottled, s.ThrottledUsec = cpu["usage_usec"], cpu["nr_throttled"], cpu["throttled_usec"]
	s.IO = map[string]map[string]uint64{}
	if data, err := os.ReadFile(filepath.Join(c.path, "io.stat")); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			m := map[string]uint64{}
			for _, kv := range f[1:] {
				if k, v, ok := strings.Cut(kv, "="); ok {
					m[k], _ = strconv.ParseUint(v, 10, 64)
				}
			}
			s.IO[f[0]] = m
		}
	}
	return s, nil
}

// OOMKilled reports whether the kernel OOM killer killed a process in the
// cgroup (memory.events oom_kill > 0).
func (c *Cgroup) OOMKilled() bool {
	if c == nil {
		return false
	}
	ev, err := readKeyed(c.path, "memory.events")
	return err == nil && ev["oom_kill"] > 0
}

// ReadFile reads one of the cgroup's files, trimmed ("memory.max").
func (c *Cgroup) ReadFile(name string) (string, error) {
	if c == nil {
		return "", errors.New("cgroupv2: no cgroup")
	}
	data, err := os.ReadFile(filepath.Join(c.path, name))
	return strings.TrimSpace(string(data)), err
}

func readUint(dir, file string) (uint64, error) {
	data, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(data))
	if s == "max" {
		return math.MaxUint64, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

func readKeyed(dir, file string) (map[string]uint64, error) {
	data, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return nil, err
	}
	m := map[string]uint64{}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok {
			m[k], _ = strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return m, nil
}

// OOMKillCount reads the oom_kill counter from an open memory.events file
// (it reads from offset 0, so the same *os.File can be read repeatedly).
// The monitor can open <Path()>/memory.events while setting up and read it
// after reaping the payload: once the last process of a systemd scope
// exits, systemd removes the cgroup and its files can no longer be read.
func OOMKillCount(f *os.File) (uint64, error) {
	buf := make([]byte, 4096)
	n, err := f.ReadAt(buf, 0)
	if n == 0 && err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(buf[:n]), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, nil
}
