package cgroupv2

import (
	"bufio"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Kind classifies why limits cannot be applied.
type Kind int

const (
	// KindCgroupV1: the machine runs cgroup v1 or hybrid; fix at boot.
	KindCgroupV1 Kind = iota + 1
	// KindNoSession: no systemd user session (no session bus) and no
	// writable, delegated cgroup to fall back to.
	KindNoSession
	// KindNotDelegated: cgroup v2 and a manager are there, but some needed
	// controllers are not delegated to the user.
	KindNotDelegated
	// KindUnavailable: the kernel lacks a controller, or setup failed.
	KindUnavailable
)

// Error is returned by Check and Setup when requested limits cannot be
// applied. Reason says why; Fix says exactly what to do about it.
type Error struct {
	Kind        Kind
	Controllers []string // the controllers concerned, if any
	Reason      string
	Fix         string
}

func (e *Error) Error() string {
	s := "cannot apply the requested resource limits: " + e.Reason
	if e.Fix != "" {
		s += "\n  fix: " + strings.ReplaceAll(e.Fix, "\n", "\n       ")
	}
	return s
}

// host is what Check and Setup learn about the machine; tests fake it.
type host struct {
	uid       int
	mount     string // cgroup2 mount point, "" if none
	unified   bool   // cgroup2 is mounted at /sys/fs/cgroup (no v1 hierarchies)
	current   string // this process's cgroup v2 path ("/user.slice/..."), relative to mount
	busAddr   string // user session bus address, "" if none found
	runtimeOK bool   // $XDG_RUNTIME_DIR (or /run/user/UID) exists
}

func detectHost() host {
	h := host{uid: os.Getuid()}
	h.mount, h.unified = cgroup2Mount()
	h.current = delegatedCgroup(currentCgroup("self"))
	h.busAddr = userBusAddress(h.uid)
	rt := os.Getenv("XDG_RUNTIME_DIR")
	if rt == "" {
		rt = fmt.Sprintf("/run/user/%d", h.uid)
	}
	if st, err := os.Stat(rt); err == nil && st.IsDir() {
		h.runtimeOK = true
	}
	return h
}

// delegatedCgroup maps the leaf an earlier Setup (cgroupfs) moved us, or our
// parent shell, into back to the delegated cgroup it is a leaf of.
func delegatedCgroup(p string) string {
	if path.Base(p) == leafName {
		return path.Dir(p)
	}
	return p
}

// cgroup2Mount finds the cgroup2 mount point from /proc/self/mountinfo.
func cgroup2Mount() (mount string, unified bool) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent maj:min root mountpoint opts ... - fstype source superopts
		fields := strings.Fields(sc.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && i >= 4 {
				if fields[i+1] == "cgroup2" {
					mp := unescapeMount(fields[4])
					if mp == "/sys/fs/cgroup" {
						return mp, true
					}
					if mount == "" {
						mount = mp
					}
				}
				break
			}
		}
	}
	return mount, false
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// currentCgroup returns the cgroup v2 path of a process ("self" or a pid).
func currentCgroup(pid string) string {
	data, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p
		}
	}
	return ""
}

// userBusAddress finds the user's D-Bus session bus without ever
// autolaunching one: $DBUS_SESSION_BUS_ADDRESS, else $XDG_RUNTIME_DIR/bus,
// else /run/user/UID/bus when it is our socket (su/sudo sessions).
func userBusAddress(uid int) string {
	if a := os.Getenv("DBUS_SESSION_BUS_ADDRESS"); a != "" {
		if p, ok := strings.CutPrefix(a, "unix:path="); ok {
			if i := strings.IndexByte(p, ','); i >= 0 {
				p = p[:i]
			}
			if !isSocket(p, -1) {
				return ""
			}
		}
		return a
	}
	if rt := os.Getenv("XDG_RUNTIME_DIR"); rt != "" {
		if p := filepath.Join(rt, "bus"); isSocket(p, uid) {
			return "unix:path=" + p
		}
	}
	if p := fmt.Sprintf("/run/user/%d/bus", uid); isSocket(p, uid) {
		return "unix:path=" + p
	}
	return ""
}

func isSocket(p string, uid int) bool {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return false
	}
	return st.Mode&unix.S_IFMT == unix.S_IFSOCK && (uid < 0 || int(st.Uid) == uid)
}

func readControllers(dir string) (map[string]bool, error) {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return nil, err
	}
	m := map[string]bool{}
	for _, c := range strings.Fields(string(data)) {
		m[c] = true
	}
	return m, nil
}

func missing(need []string, have map[string]bool) []string {
	var out []string
	for _, c := range need {
		if !have[c] {
			out = append(out, c)
		}
	}
	return out
}

func setString(m map[string]bool) string {
	var s []string
	for c := range m {
		s = append(s, c)
	}
	sort.Strings(s)
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, " ")
}

// flagsFor names the flags that need the given controllers, for messages.
func (l Limits) flagsFor(ctrls []string) string {
	want := map[string]bool{}
	for _, c := range ctrls {
		want[c] = true
	}
	var f []string
	add := func(c string, cond bool, flag string) {
		if want[c] && cond {
			f = append(f, flag)
		}
	}
	add("memory", l.Memory != 0, "--memory")
	add("memory", l.MemorySwap != 0, "--memory-swap")
	add("memory", l.MemoryReservation != 0, "--memory-reservation")
	add("cpu", l.NanoCPUs != 0, "--cpus")
	add("cpu", l.CPUShares != 0, "--cpu-shares")
	add("cpuset", l.CpusetCpus != "", "--cpuset-cpus")
	add("pids", l.PidsLimit != 0, "--pids-limit")
	add("io", len(l.DeviceReadBps) > 0, "--device-read-bps")
	add("io", len(l.DeviceWriteBps) > 0, "--device-write-bps")
	add("io", len(l.DeviceReadIOps) > 0, "--device-read-iops")
	add("io", len(l.DeviceWriteIOps) > 0, "--device-write-iops")
	return strings.Join(f, ", ")
}

// userServiceDir is where systemd puts the user manager's cgroup.
func (h host) userServiceDir() string {
	return filepath.Join(h.mount, fmt.Sprintf("user.slice/user-%d.slice/user@%d.service", h.uid, h.uid))
}

func userName() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "$USER"
}

// Check reports, quickly and without side effects, whether the requested
// limits can be applied; if not, the error (an *Error, or a plain error for
// invalid values) names the reason and the fix. With no limits requested it
// returns nil and does nothing.
func Check(l Limits) error {
	if !l.Any() {
		return nil
	}
	if err := l.Validate(); err != nil {
		return err
	}
	_, err := plan(l, detectHost())
	return err
}

type mode int

const (
	modeSystemd mode = iota + 1
	modeCgroupfs
)

// plan decides how the limits will be applied on h, or why they can't be.
func plan(l Limits, h host) (mode, error) {
	need := l.Controllers()
	flags := l.flagsFor(need)
	v1 := func() error {
		where := "this system runs cgroup v1"
		if h.mount != "" {
			where = fmt.Sprintf("this system runs cgroups in hybrid mode: controllers are bound to cgroup v1, and the cgroup v2 hierarchy at %s has none of them", h.mount)
		}
		return &Error{Kind: KindCgroupV1, Controllers: need,
			Reason: fmt.Sprintf("resource limits (%s) need cgroup v2 (controllers: %s), but %s", flags, strings.Join(need, " "), where),
			Fix: "boot with cgroup v2: an admin adds systemd.unified_cgroup_hierarchy=1 to the kernel command line\n" +
				"(GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub) and reboots;\n" +
				"or run without resource limits"}
	}
	if h.mount == "" {
		return 0, v1()
	}
	root, err := readControllers(h.mount)
	if err != nil {
		return 0, v1()
	}
	if miss := missing(need, root); len(miss) > 0 {
		if !h.unified {
			return 0, v1()
		}
		return 0, &Error{Kind: KindUnavailable, Controllers: miss,
			Reason: fmt.Sprintf("the kernel offers no %s controller (%s has: %s)", strings.Join(miss, ", "), h.mount, setString(root)),
			Fix:    "use a kernel with these cgroup v2 controllers, or run without " + l.flagsFor(miss)}
	}

	if h.busAddr != "" {
		dir := h.userServiceDir()
		have, err := readControllers(dir)
		if err != nil {
			// Not the usual layout (or the bus is someone else's); let
			// Setup ask systemd.
			return modeSystemd, nil
		}
		if miss := missing(need, have); len(miss) > 0 {
			return 0, &Error{Kind: KindNotDelegated, Controllers: miss,
				Reason: fmt.Sprintf("resource limits (%s) need the %s cgroup controller, but systemd does not delegate it to user %d (user@%d.service has: %s)",
					l.flagsFor(miss), strings.Join(miss, ", "), h.uid, h.uid, setString(have)),
				Fix: "an admin creates /etc/systemd/system/user@.service.d/delegate.conf containing\n" +
					"    [Service]\n    Delegate=cpu cpuset io memory pids\n" +
					fmt.Sprintf("and runs `systemctl daemon-reload && systemctl restart user@%d.service` (the running user manager\n", h.uid) +
					"keeps its old controllers until restarted; logging out of every session and in again also works\n" +
					"without lingering, or reboot); or run without " + l.flagsFor(miss)}
		}
		return modeSystemd, nil
	}

	// No session bus: a writable cgroup with the controllers will do.
	cur := filepath.Join(h.mount, h.current)
	writable := h.current != "" && unix.Access(cur, unix.W_OK) == nil &&
		unix.Access(filepath.Join(cur, "cgroup.procs"), unix.W_OK) == nil &&
		unix.Access(filepath.Join(cur, "cgroup.subtree_control"), unix.W_OK) == nil
	if writable {
		have, err := readControllers(cur)
		if err == nil {
			if miss := missing(need, have); len(miss) > 0 {
				return 0, &Error{Kind: KindNotDelegated, Controllers: miss,
					Reason: fmt.Sprintf("resource limits (%s) need the %s cgroup controller, but it is not delegated to the current cgroup %s (it has: %s), and there is no systemd user session bus",
						l.flagsFor(miss), strings.Join(miss, ", "), h.current, setString(have)),
					Fix: "run unroot in a cgroup with these controllers delegated, e.g. in a login session with\n" +
						"/etc/systemd/system/user@.service.d/delegate.conf (Delegate=cpu cpuset io memory pids),\n" +
						"or ask the admin of the job or CI system to delegate them; or run without " + l.flagsFor(miss)}
			}
			return modeCgroupfs, nil
		}
	}
	reason := "there is no systemd user session: no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is unset"
	if rt := os.Getenv("XDG_RUNTIME_DIR"); rt != "" {
		reason += ", no " + filepath.Join(rt, "bus")
	} else {
		reason += ", XDG_RUNTIME_DIR is unset"
	}
	reason += fmt.Sprintf(", no /run/user/%d/bus)", h.uid)
	if h.current != "" {
		reason += fmt.Sprintf(", and the current cgroup %s is not writable", h.current)
	}
	return 0, &Error{Kind: KindNoSession, Controllers: need,
		Reason: "resource limits (" + flags + ") need a cgroup delegated by systemd, but " + reason,
		Fix: fmt.Sprintf("an admin runs `loginctl enable-linger %s`, then log in again with a real login (ssh or console; su/sudo do not start a session;\n", userName()) +
			"the dbus-user-session package must be installed); or run with --cgroups=disabled and without resource limits"}
}
