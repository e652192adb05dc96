package userns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/unroot/unroot/idmap"
)

// Everything unroot needs from the machine, and what to do when a piece
// is missing. Facts are gathered from /proc, /etc and the file system;
// Evaluate turns them into findings without touching the system, so the
// rules are unit-tested on given values and shared by `unroot check`, the
// preflight of every stage (Preflight) and the errors of a failed start
// (Diagnose).

// Status of one prerequisite.
type Status string

const (
	StatusOK      Status = "ok"
	StatusWarn    Status = "warn"    // works, with a limitation worth knowing
	StatusMissing Status = "missing" // blocks running containers
)

// Finding is one checked prerequisite.
type Finding struct {
	Check  string `json:"check"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// Blocking returns the findings that stop containers from running.
func Blocking(fs []Finding) []Finding {
	var out []Finding
	for _, f := range fs {
		if f.Status == StatusMissing {
			out = append(out, f)
		}
	}
	return out
}

// Sysctls unroot looks at, by their sysctl names.
const (
	SysctlMaxUserNS      = "user.max_user_namespaces"
	SysctlUnprivClone    = "kernel.unprivileged_userns_clone"             // Debian/Ubuntu patch
	SysctlAppArmorUserNS = "kernel.apparmor_restrict_unprivileged_userns" // Ubuntu 23.10+
)

// Helper is newuidmap or newgidmap as found in PATH.
type Helper struct {
	Name     string `json:"name"`
	Path     string `json:"path"` // "" = not found
	Setuid   bool   `json:"setuid"`
	FileCaps bool   `json:"file_caps"`
}

// ProbeResult is what a trial user namespace could do (see Probe). Errnos
// are 0 for success; a mount missing from Mounts was not tried.
type ProbeResult struct {
	StartErr   string         `json:"start_err,omitempty"`
	StartErrno unix.Errno     `json:"start_errno,omitempty"`
	MapErr     string         `json:"map_err,omitempty"`
	ChildErr   string         `json:"child_err,omitempty"`
	Mounts     map[string]int `json:"mounts,omitempty"` // private, tmpfs, overlay, proc -> errno
}

// Probe mount names, in the order they are tried.
const (
	MountPrivate = "private" // make / private: needs CAP_SYS_ADMIN in the namespace
	MountTmpfs   = "tmpfs"
	MountOverlay = "overlay" // what the store mounts (Linux 5.11+ in a user namespace)
	MountProc    = "proc"    // what the container gets (refused under a masked /proc)
)

// Facts is the state of the machine for one user.
type Facts struct {
	Root          bool              // euid 0 on the host
	Kernel        string            // uname -r
	Sysctl        map[string]string // by sysctl name; absent = the kernel has no such knob
	AppArmorLabel string            // unroot's AppArmor confinement, "" when AppArmor is off
	Binary        string            // real path of the unroot binary
	Helpers       []Helper          // newuidmap, newgidmap
	Mapping       idmap.Mapping
	User          string   // the caller's name
	SuggestRange  string   // a free subordinate range for usermod, "100000-165535"
	Container     []string // why we think we run inside a container
	XDGRuntimeDir string
	RunDir        string
	StorageDir    string
	StorageFS     string // a network/cluster file system holding StorageDir, "" if local
	Probe         *ProbeResult
}

// AppArmorProfile renders contrib/apparmor/unroot for a binary path.
func AppArmorProfile(binary string) string {
	p := binary
	if strings.ContainsAny(p, " \t\"") {
		p = `"` + strings.ReplaceAll(p, `"`, `\"`) + `"`
	}
	return fmt.Sprintf(apparmorTemplate, p)
}

// apparmorTemplate must stay equal to contrib/apparmor/unroot (a test
// checks): a profile with no restrictions but the permission to create
// user namespaces with capabilities, as Ubuntu ships for rootlesskit.
const apparmorTemplate = `# AppArmor profile for unroot.
#
# Ubuntu 23.10 and later (kernel.apparmor_restrict_unprivileged_userns=1)
# let an unconfined program create a user namespace but take every
# capability away inside it, so unroot cannot mount its containers. This
# profile confines nothing; it only grants the "userns" permission to the
# binary at the path below, as Ubuntu's own profiles for rootlesskit, podman
# and buildah do. Install: see contrib/apparmor/README.md, or run
# ` + "`unroot check`" + ` for the command with this binary's path.

abi <abi/4.0>,
include <tunables/global>

profile unroot %s flags=(unconfined) {
  userns,

  # The full unroot, which this binary installs under the user's run
  # directory and runs for every command but the fast ones, keeps the
  # profile (it creates the user namespaces of those commands).
  /run/user/[0-9]*/unroot/bin/unroot-engine-* ix,
  /tmp/unroot-[0-9]*/bin/unroot-engine-* ix,
  # And so does the fast path's build with the user-mode network.
  /run/user/[0-9]*/unroot/bin/unroot-fastnet-* ix,
  /tmp/unroot-[0-9]*/bin/unroot-fastnet-* ix,

  # Site-specific additions and overrides.
  include if exists <local/unroot>
}
`

// AppArmorInstallCommand is the one-line command an admin runs to install
// the profile for binary.
func AppArmorInstallCommand(binary string) string {
	return fmt.Sprintf("%s check --apparmor-profile | sudo tee /etc/apparmor.d/unroot >/dev/null && sudo apparmor_parser -r /etc/apparmor.d/unroot", shellQuote(binary))
}

func appArmorFix(binary string) string {
	if binary == "" {
		binary = "/usr/local/bin/unroot"
	}
	return fmt.Sprintf("allow unroot to use user namespaces with an AppArmor profile (contrib/apparmor/unroot): `%s` (from a source tree: `sudo sh -c \"sed 's|/usr/local/bin/unroot|%s|' contrib/apparmor/unroot > /etc/apparmor.d/unroot && apparmor_parser -r /etc/apparmor.d/unroot\"`); or lift the restriction for every program: `sudo sysctl -w %s=0` (persist it in /etc/sysctl.d/)",
		AppArmorInstallCommand(binary), binary, SysctlAppArmorUserNS)
}

// appArmorProfileLoaded: unroot runs under a profile of its own (any
// label but "unconfined", e.g. "unroot (unconfined)").
func (f *Facts) appArmorProfileLoaded() bool {
	return f.AppArmorLabel != "" && f.AppArmorLabel != "unconfined"
}

func (f *Facts) appArmorRestricts() bool {
	return f.Sysctl[SysctlAppArmorUserNS] == "1" && !f.appArmorProfileLoaded()
}

func (f *Facts) mappingNeedsHelpers() bool { return f.Mapping.Kind == idmap.KindSubordinate }

const containerFix = "the container unroot runs in must allow nested user namespaces and mounts: Docker/Podman: run it with `--security-opt seccomp=unconfined --security-opt apparmor=unconfined --security-opt systempaths=unconfined` (or --privileged); Kubernetes: a pod with `securityContext: {seccompProfile: {type: Unconfined}, appArmorProfile: {type: Unconfined}, procMount: Unmasked}` (or `hostUsers: false`)"

// Evaluate turns facts into findings, one per prerequisite.
func Evaluate(f Facts) []Finding {
	var out []Finding
	out = append(out, f.userNamespaces())
	if a, ok := f.appArmor(); ok {
		out = append(out, a)
	}
	for _, h := range f.Helpers {
		out = append(out, f.helper(h))
	}
	out = append(out, f.subordinate())
	if f.Probe != nil {
		out = append(out, f.probe())
	}
	out = append(out, f.container())
	out = append(out, f.runDir())
	if f.StorageDir != "" {
		out = append(out, f.storage())
	}
	return out
}

func (f *Facts) userNamespaces() Finding {
	c := Finding{Check: "user namespaces"}
	max, hasMax := f.Sysctl[SysctlMaxUserNS]
	switch {
	case hasMax && max == "0":
		c.Status = StatusMissing
		c.Detail = "disabled: " + SysctlMaxUserNS + " = 0"
		c.Fix = "an admin enables them: `sudo sysctl -w " + SysctlMaxUserNS + "=28633` and persists it: `echo " + SysctlMaxUserNS + "=28633 | sudo tee /etc/sysctl.d/90-unroot-userns.conf`"
	case f.Sysctl[SysctlUnprivClone] == "0" && !f.Root:
		c.Status = StatusMissing
		c.Detail = "disabled for unprivileged users: " + SysctlUnprivClone + " = 0"
		c.Fix = "an admin enables them: `sudo sysctl -w " + SysctlUnprivClone + "=1` and persists it: `echo " + SysctlUnprivClone + "=1 | sudo tee /etc/sysctl.d/90-unroot-userns.conf`"
	default:
		c.Status = StatusOK
		c.Detail = "enabled"
		if hasMax {
			c.Detail += " (" + SysctlMaxUserNS + " = " + max + ")"
		}
	}
	return c
}

func (f *Facts) appArmor() (Finding, bool) {
	v, ok := f.Sysctl[SysctlAppArmorUserNS]
	if !ok {
		return Finding{}, false
	}
	c := Finding{Check: "AppArmor"}
	switch {
	case v != "1":
		c.Status, c.Detail = StatusOK, SysctlAppArmorUserNS+" = "+v+": no restriction"
	case f.appArmorProfileLoaded():
		c.Status, c.Detail = StatusOK, "user namespaces are restricted ("+SysctlAppArmorUserNS+" = 1) but unroot runs under the profile \""+f.AppArmorLabel+"\""
	case f.Root:
		c.Status, c.Detail = StatusOK, "user namespaces are restricted ("+SysctlAppArmorUserNS+" = 1), which does not apply to root"
	case f.Probe != nil && f.Probe.Mounts[MountPrivate] == 0 && f.Probe.StartErr == "" && f.Probe.MapErr == "" && f.Probe.ChildErr == "":
		c.Status, c.Detail = StatusOK, "user namespaces are restricted ("+SysctlAppArmorUserNS+" = 1), yet the probe had capabilities in one"
	default:
		c.Status = StatusMissing
		c.Detail = "user namespaces are restricted (" + SysctlAppArmorUserNS + " = 1) and no profile allows unroot: its namespaces get no capabilities, so mounts fail"
		c.Fix = appArmorFix(f.Binary)
	}
	return c, true
}

func (f *Facts) helper(h Helper) Finding {
	c := Finding{Check: h.Name}
	needed := f.mappingNeedsHelpers()
	switch {
	case h.Path == "" && needed:
		c.Status = StatusMissing
		c.Detail = "not found in PATH; it writes your subordinate id mapping"
		c.Fix = "install the package `uidmap` (Debian/Ubuntu: `sudo apt-get install uidmap`; Fedora/RHEL: `sudo dnf install shadow-utils`; Arch: `sudo pacman -S shadow`)"
	case h.Path == "":
		c.Status = StatusWarn
		c.Detail = "not found in PATH; not needed in single-id mode, needed once you have a subordinate range"
		c.Fix = "`sudo apt-get install uidmap` (Fedora/RHEL: shadow-utils)"
	case !h.Setuid && !h.FileCaps:
		c.Status = StatusMissing
		if !needed {
			c.Status = StatusWarn
		}
		capName := "cap_setuid"
		if h.Name == "newgidmap" {
			capName = "cap_setgid"
		}
		c.Detail = h.Path + " is neither setuid root nor has file capabilities: it cannot write a mapping"
		c.Fix = fmt.Sprintf("`sudo chmod u+s %s` (or `sudo setcap %s+ep %s`); reinstalling the uidmap package restores it", h.Path, capName, h.Path)
	case h.Setuid:
		c.Status, c.Detail = StatusOK, h.Path+" (setuid root)"
	default:
		c.Status, c.Detail = StatusOK, h.Path+" (file capabilities)"
	}
	return c
}

// UsermodCommand is what an admin runs to give user a subordinate range.
func UsermodCommand(user, rng string) string {
	if rng == "" {
		rng = "100000-165535"
	}
	return fmt.Sprintf("sudo usermod --add-subuids %s --add-subgids %s %s", rng, rng, user)
}

func (f *Facts) subordinate() Finding {
	c := Finding{Check: "subordinate ids"}
	m := f.Mapping
	if m.Kind == idmap.KindSubordinate {
		c.Status = StatusOK
		c.Detail = fmt.Sprintf("%s uids, %s gids (from %s)", describeSubs(m.UIDs), describeSubs(m.GIDs), m.Source)
		return c
	}
	c.Status = StatusWarn
	c.Detail = fmt.Sprintf("no range for %s: single-id mode — containers run as root mapped to your own uid only; files of other owners in images are stored as yours; `-u` with another user and --userns=keep-id are refused", f.User)
	c.Fix = "for full images an admin adds a range (pick one no other user has): `" + UsermodCommand(f.User, f.SuggestRange) + "`"
	return c
}

func describeSubs(m []idmap.Range) string {
	var parts []string
	for _, r := range m {
		if r.ContainerID == 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%d-%d", r.HostID, uint64(r.HostID)+uint64(r.Size)-1))
	}
	if len(parts) == 0 {
		return "none"
	}
	return fmt.Sprintf("%s (%d)", strings.Join(parts, ","), idmap.Size(m)-1)
}

func (f *Facts) probe() Finding {
	p := f.Probe
	c := Finding{Check: "namespace probe"}
	kind := f.Mapping.Kind
	if kind == "" {
		kind = idmap.KindSingle
	}
	switch {
	case p.StartErr != "":
		c.Status = StatusMissing
		c.Detail, c.Fix = f.CloneFailure(p.StartErrno)
		c.Detail = "creating a user namespace failed (" + p.StartErr + "): " + c.Detail
	case p.MapErr != "":
		c.Status = StatusMissing
		c.Detail = "writing the " + kind + " id mapping failed: " + p.MapErr
		if i := strings.Index(c.Detail, "\n  fix: "); i >= 0 {
			c.Detail, c.Fix = c.Detail[:i], c.Detail[i+len("\n  fix: "):]
		}
	case p.ChildErr != "":
		c.Status = StatusMissing
		c.Detail = "the probe process failed: " + p.ChildErr
	default:
		var failed []string
		for _, name := range []string{MountPrivate, MountTmpfs, MountOverlay, MountProc} {
			e, tried := p.Mounts[name]
			if tried && e != 0 {
				failed = append(failed, fmt.Sprintf("%s (%v)", name, unix.Errno(e)))
			}
		}
		if len(failed) == 0 {
			c.Status = StatusOK
			c.Detail = "created a user namespace with the " + kind + " mapping and mounted tmpfs, overlay and proc in it"
			return c
		}
		c.Status = StatusMissing
		c.Detail = "created a user namespace with the " + kind + " mapping, but mounts failed: " + strings.Join(failed, ", ")
		switch {
		case p.Mounts[MountPrivate] != 0 || p.Mounts[MountTmpfs] != 0:
			d, fix := f.MountDenied(unix.Errno(p.Mounts[MountPrivate] | p.Mounts[MountTmpfs]))
			c.Detail += ": " + d
			c.Fix = fix
		case p.Mounts[MountOverlay] != 0:
			c.Detail += ": the kernel (" + f.Kernel + ") cannot mount overlay in a user namespace (Linux 5.11 or later can); unroot's store needs it"
			c.Fix = "upgrade the kernel to 5.11 or later"
		case p.Mounts[MountProc] != 0:
			c.Detail += ": a fresh /proc is refused when the visible /proc is partly covered (masked), as in a default container"
			c.Fix = "unroot needs an unmasked /proc: " + containerFix
		}
	}
	return c
}

// CloneFailure explains why creating a user namespace failed with errno
// and what to do about it.
func (f *Facts) CloneFailure(errno unix.Errno) (detail, fix string) {
	u := f.userNamespaces()
	if u.Status == StatusMissing {
		return u.Detail, u.Fix
	}
	switch errno {
	case unix.ENOSPC:
		return "the limit on user namespaces is reached (" + SysctlMaxUserNS + " = " + f.Sysctl[SysctlMaxUserNS] + ")",
			"an admin raises it: `sudo sysctl -w " + SysctlMaxUserNS + "=28633` (persist it in /etc/sysctl.d/)"
	case unix.EUSERS:
		return "user namespaces are nested 32 deep, the kernel's limit", "run unroot from a less nested environment"
	case unix.EINVAL:
		return "the kernel (" + f.Kernel + ") has no user namespaces (CONFIG_USER_NS)", "use a kernel built with CONFIG_USER_NS=y (every current distribution kernel is)"
	}
	if f.Sysctl[SysctlAppArmorUserNS] == "1" && !f.appArmorProfileLoaded() {
		return "AppArmor restricts unprivileged user namespaces (" + SysctlAppArmorUserNS + " = 1)", appArmorFix(f.Binary)
	}
	if len(f.Container) > 0 {
		return "unroot runs inside a container (" + strings.Join(f.Container, ", ") + ") whose seccomp or AppArmor policy forbids new user namespaces", containerFix
	}
	return "the kernel or a security policy (seccomp, SELinux, AppArmor) refused it",
		"check with `unshare --user --map-root-user true`; if that fails too, ask an admin which policy blocks user namespaces"
}

// MountDenied explains a mount refused in a user namespace where we are
// root: the namespace exists but grants no capabilities.
func (f *Facts) MountDenied(errno unix.Errno) (detail, fix string) {
	if f.Sysctl[SysctlAppArmorUserNS] == "1" && !f.appArmorProfileLoaded() {
		return fmt.Sprintf("AppArmor lets unroot create a user namespace but denies it every capability there (%s = 1), so it cannot mount (%v)", SysctlAppArmorUserNS, errno), appArmorFix(f.Binary)
	}
	if len(f.Container) > 0 {
		return fmt.Sprintf("unroot runs inside a container (%s) that forbids mounts in nested user namespaces (%v)", strings.Join(f.Container, ", "), errno), containerFix
	}
	return fmt.Sprintf("unroot is root in its user namespace yet may not mount (%v): a security module (AppArmor, SELinux) or seccomp policy denies it", errno),
		"check the audit log (`journalctl -k | grep -i denied`) for the policy in the way"
}

func (f *Facts) container() Finding {
	c := Finding{Check: "container"}
	if len(f.Container) == 0 {
		c.Status, c.Detail = StatusOK, "not running inside a container"
		return c
	}
	c.Detail = "running inside a container (" + strings.Join(f.Container, ", ") + ")"
	p := f.Probe
	switch {
	case p == nil:
		c.Status = StatusWarn
		c.Detail += ": nested user namespaces and mounts are often blocked there"
		c.Fix = containerFix
	case p.StartErr == "" && p.MapErr == "" && p.ChildErr == "" && allZero(p.Mounts):
		c.Status = StatusOK
		c.Detail += ", which allows nested user namespaces"
	default:
		c.Status = StatusWarn
		c.Detail += ": see the probe above"
		c.Fix = containerFix
	}
	return c
}

func allZero(m map[string]int) bool {
	for _, v := range m {
		if v != 0 {
			return false
		}
	}
	return true
}

func (f *Facts) runDir() Finding {
	c := Finding{Check: "run directory", Status: StatusOK}
	if f.XDGRuntimeDir == "" {
		c.Detail = "XDG_RUNTIME_DIR is unset (su, ssh without logind, batch jobs): fine, unroot uses " + f.RunDir + " (created private, mode 0700)"
	} else {
		c.Detail = f.RunDir
		if !strings.HasPrefix(f.RunDir, f.XDGRuntimeDir) {
			c.Detail += " (XDG_RUNTIME_DIR=" + f.XDGRuntimeDir + " is not writable: fallback)"
		}
	}
	return c
}

func (f *Facts) storage() Finding {
	c := Finding{Check: "storage"}
	if f.StorageFS == "" {
		c.Status, c.Detail = StatusOK, f.StorageDir+" (local file system)"
		return c
	}
	c.Status = StatusWarn
	c.Detail = fmt.Sprintf("%s is on %s: overlay layers and subordinate-id ownership do not work reliably on network/cluster file systems; a coming change (issue #4) will place the store on local disk automatically", f.StorageDir, f.StorageFS)
	c.Fix = "for now put the store on a local disk: `unroot --root /tmp/$USER-unroot/storage run ...` (or XDG_DATA_HOME on local disk)"
	return c
}

// NetworkFS names the network or cluster file system with statfs magic m,
// "" for anything else.
func NetworkFS(m int64) string {
	switch uint32(m) {
	case 0x6969:
		return "NFS"
	case 0x0BD00BD0:
		return "Lustre"
	case 0x47504653:
		return "GPFS (Spectrum Scale)"
	case 0xFF534D42:
		return "CIFS/SMB"
	case 0xFE534D42:
		return "SMB2"
	case 0x517B:
		return "SMB"
	case 0x00C36400:
		return "CephFS"
	case 0x19830326:
		return "BeeGFS"
	case 0xAAD7AAEA:
		return "PanFS"
	case 0x5346414F:
		return "AFS"
	case 0x6B414653:
		return "AFS (kAFS)"
	case 0x65735546:
		return "FUSE (sshfs, GlusterFS, ...)"
	}
	return ""
}

// ContainerHints lists signs that this process runs inside a container.
// exists and read stand for the file system (tests pass fakes); env is
// the value of $container.
func ContainerHints(exists func(string) bool, read func(string) string, env string) []string {
	var h []string
	if exists("/.dockerenv") {
		h = append(h, "Docker: /.dockerenv")
	}
	if exists("/run/.containerenv") {
		h = append(h, "Podman: /run/.containerenv")
	}
	if v := strings.TrimSpace(read("/run/systemd/container")); v != "" {
		h = append(h, "/run/systemd/container = "+v)
	} else if env != "" {
		h = append(h, "$container = "+env)
	}
	cg := read("/proc/1/cgroup")
	for _, k := range []string{"docker", "kubepods", "libpod", "lxc", "containerd", "garden"} {
		if strings.Contains(cg, k) {
			h = append(h, "/proc/1/cgroup mentions "+k)
			break
		}
	}
	return h
}

// FreeSubRange suggests a 65536-id range after every range in the given
// /etc/subuid and /etc/subgid contents (useradd's layout: 100000 on).
func FreeSubRange(contents ...string) string {
	next := uint64(100000)
	for _, c := range contents {
		for _, line := range strings.Split(c, "\n") {
			f := strings.Split(strings.TrimSpace(line), ":")
			if len(f) != 3 {
				continue
			}
			var start, count uint64
			if _, err := fmt.Sscan(f[1], &start); err != nil {
				continue
			}
			if _, err := fmt.Sscan(f[2], &count); err != nil {
				continue
			}
			if start+count > next {
				next = start + count
			}
		}
	}
	return fmt.Sprintf("%d-%d", next, next+65535)
}

// ---------------------------------------------------------------- gathering

func readSysctl(name string) (string, bool) {
	b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(name, ".", "/"))
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(b)), true
}

func readFile(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return string(b)
}

// FindHelper looks up newuidmap or newgidmap in PATH.
func FindHelper(name string) Helper {
	h := Helper{Name: name}
	p, err := exec.LookPath(name)
	if err != nil {
		return h
	}
	if rp, err := filepath.EvalSymlinks(p); err == nil {
		p = rp
	}
	h.Path = p
	if st, err := os.Stat(p); err == nil {
		h.Setuid = st.Mode()&os.ModeSetuid != 0 && st.Sys() != nil && ownerUID(st) == 0
	}
	if n, err := unix.Getxattr(p, "security.capability", make([]byte, 64)); err == nil && n > 0 {
		h.FileCaps = true
	}
	return h
}

// GatherFacts reads the machine's state for the caller. It does not
// fork and does not probe (see Probe).
func GatherFacts(m idmap.Mapping, user string) Facts {
	f := Facts{
		Root:    os.Geteuid() == 0 && os.Getenv("_CONTAINERS_USERNS_CONFIGURED") == "",
		Sysctl:  map[string]string{},
		Mapping: m,
		User:    user,
	}
	var uts unix.Utsname
	if unix.Uname(&uts) == nil {
		f.Kernel = unix.ByteSliceToString(uts.Release[:])
	}
	for _, s := range []string{SysctlMaxUserNS, SysctlUnprivClone, SysctlAppArmorUserNS} {
		if v, ok := readSysctl(s); ok {
			f.Sysctl[s] = v
		}
	}
	f.AppArmorLabel = appArmorLabel()
	if exe, err := os.Executable(); err == nil {
		// The full unroot runs from a copy the user-facing binary
		// installed; the profile belongs to the latter.
		if front := os.Getenv(EnvFront); front != "" {
			exe = front
		}
		if rp, err := filepath.EvalSymlinks(exe); err == nil {
			exe = rp
		}
		f.Binary = exe
	}
	f.Helpers = []Helper{FindHelper("newuidmap"), FindHelper("newgidmap")}
	f.SuggestRange = FreeSubRange(readFile(idmap.Files.SubUID), readFile(idmap.Files.SubGID))
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	f.Container = ContainerHints(exists, readFile, os.Getenv("container"))
	return f
}

// EnvFront holds the path of the user-facing binary (cmd/unroot-fast)
// when it executes the full unroot.
const EnvFront = "_UNROOT_FRONT"

// appArmorLabel is this process's AppArmor confinement ("" when AppArmor
// is not enabled).
func appArmorLabel() string {
	if strings.TrimSpace(readFile("/sys/module/apparmor/parameters/enabled")) != "Y" {
		return ""
	}
	for _, p := range []string{"/proc/self/attr/apparmor/current", "/proc/self/attr/current"} {
		if v := strings.TrimSpace(strings.TrimRight(readFile(p), "\x00")); v != "" {
			return v
		}
	}
	return ""
}

// StorageFS reports the network file system dir (or its nearest existing
// parent) is on, "" when local.
func StorageFS(dir string) string {
	for d := dir; ; d = filepath.Dir(d) {
		var st unix.Statfs_t
		if err := unix.Statfs(d, &st); err == nil {
			return NetworkFS(int64(st.Type))
		}
		if d == "/" || d == "." {
			return ""
		}
	}
}

// ---------------------------------------------------------------- run time

// Preflight refuses, before anything is created, a start that cannot work:
// user namespaces disabled, or the helpers a subordinate mapping needs
// missing or powerless. It reads a few files and forks nothing.
func Preflight(m idmap.Mapping) error {
	if quickPreflight(m) {
		return nil
	}
	f := GatherFacts(m, "")
	var blocking []Finding
	if u := f.userNamespaces(); u.Status == StatusMissing {
		blocking = append(blocking, u)
	}
	if m.Kind == idmap.KindSubordinate {
		for _, h := range f.Helpers {
			if c := f.helper(h); c.Status == StatusMissing {
				blocking = append(blocking, c)
			}
		}
	}
	if len(blocking) == 0 {
		return nil
	}
	return &PreflightError{Findings: blocking}
}

// quickPreflight checks, on every container's start, only what Preflight
// refuses on (a few files, not the whole of GatherFacts): true when all is
// well; false sends Preflight the long way, to the findings and their fixes.
func quickPreflight(m idmap.Mapping) bool {
	if v, ok := readSysctl(SysctlMaxUserNS); ok && v == "0" {
		return false
	}
	if v, ok := readSysctl(SysctlUnprivClone); ok && v == "0" && os.Geteuid() != 0 {
		return false
	}
	if m.Kind != idmap.KindSubordinate {
		return true
	}
	for _, name := range []string{"newuidmap", "newgidmap"} {
		p, err := exec.LookPath(name)
		if err != nil {
			return false
		}
		st, err := os.Stat(p)
		if err != nil || st.Mode()&os.ModeSetuid == 0 || ownerUID(st) != 0 {
			return false // file capabilities, or none: let FindHelper tell
		}
	}
	return true
}

// PreflightError lists what blocks running containers, with the fixes.
type PreflightError struct{ Findings []Finding }

func (e *PreflightError) Error() string {
	var b strings.Builder
	b.WriteString("cannot create unroot's user namespace")
	for _, f := range e.Findings {
		fmt.Fprintf(&b, "\n  %s: %s", f.Check, f.Detail)
		if f.Fix != "" {
			fmt.Fprintf(&b, "\n  fix: %s", f.Fix)
		}
	}
	b.WriteString("\n  (`unroot check` tests every prerequisite)")
	return b.String()
}

// Diagnose turns a failure to create a user namespace into an error that
// says why and what to do.
func Diagnose(err error) error {
	var errno unix.Errno
	if !errors.As(err, &errno) {
		return fmt.Errorf("creating the user namespace: %w", err)
	}
	f := GatherFacts(idmap.Mapping{}, "")
	detail, fix := f.CloneFailure(errno)
	return fmt.Errorf("creating the user namespace: %w: %s\n  fix: %s\n  (`unroot check` tests every prerequisite)", err, detail, fix)
}

// checkMounts runs first thing in a freshly mapped stage that has a mount
// namespace of its own: it must be allowed to mount there. Making the
// root a slave changes nothing (the kernel already turned our copy of the
// host's shared mounts into slaves) but needs CAP_SYS_ADMIN in the
// namespace, which AppArmor's restriction (Ubuntu 23.10+) or a container's
// policy take away although the namespace was created.
func checkMounts() error {
	err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, "")
	if err == nil {
		return nil
	}
	var errno unix.Errno
	if !errors.As(err, &errno) || (errno != unix.EPERM && errno != unix.EACCES) {
		return nil // not a permission problem: let the real mount report it
	}
	f := GatherFacts(idmap.Mapping{}, "")
	detail, fix := f.MountDenied(errno)
	return fmt.Errorf("no capabilities in the user namespace: %s\n  fix: %s\n  (`unroot check` tests every prerequisite)", detail, fix)
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,@+%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func ownerUID(st os.FileInfo) uint32 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Uid
	}
	return ^uint32(0)
}
