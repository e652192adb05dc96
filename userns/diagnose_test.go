package userns

import (
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/unroot/unroot/idmap"
)

var subMapping = idmap.Mapping{Kind: idmap.KindSubordinate, Source: "/etc/subuid and /etc/subgid",
	UIDs: idmap.Build(1000, []idmap.SubRange{{Start: 100000, Count: 65536}}), GIDs: idmap.Build(1000, []idmap.SubRange{{Start: 100000, Count: 65536}})}

func goodFacts() Facts {
	return Facts{
		Kernel:  "6.8.0",
		Sysctl:  map[string]string{SysctlMaxUserNS: "63000"},
		Binary:  "/opt/bin/unroot",
		Helpers: []Helper{{Name: "newuidmap", Path: "/usr/bin/newuidmap", Setuid: true}, {Name: "newgidmap", Path: "/usr/bin/newgidmap", FileCaps: true}},
		Mapping: subMapping, User: "alice", SuggestRange: "231072-296607",
		RunDir: "/run/user/1000/unroot", XDGRuntimeDir: "/run/user/1000",
		StorageDir: "/home/alice/.local/share/unroot/storage",
		Probe:      &ProbeResult{Mounts: map[string]int{MountPrivate: 0, MountTmpfs: 0, MountOverlay: 0, MountProc: 0}},
	}
}

func find(t *testing.T, fs []Finding, check string) Finding {
	t.Helper()
	for _, f := range fs {
		if f.Check == check {
			return f
		}
	}
	t.Fatalf("no finding %q in %+v", check, fs)
	return Finding{}
}

func TestEvaluateAllGood(t *testing.T) {
	fs := Evaluate(goodFacts())
	if b := Blocking(fs); len(b) != 0 {
		t.Fatalf("blocking: %+v", b)
	}
	for _, f := range fs {
		if f.Status != StatusOK {
			t.Errorf("%s: %s %s", f.Check, f.Status, f.Detail)
		}
	}
	if d := find(t, fs, "subordinate ids").Detail; !strings.Contains(d, "100000-165535 (65536)") {
		t.Errorf("subordinate detail: %s", d)
	}
}

func TestEvaluateUserNamespacesDisabled(t *testing.T) {
	f := goodFacts()
	f.Sysctl[SysctlMaxUserNS] = "0"
	c := find(t, Evaluate(f), "user namespaces")
	if c.Status != StatusMissing || !strings.Contains(c.Fix, "sysctl -w user.max_user_namespaces=") {
		t.Fatalf("%+v", c)
	}
	d, fix := f.CloneFailure(unix.ENOSPC)
	if !strings.Contains(d, "= 0") || !strings.Contains(fix, "max_user_namespaces") {
		t.Fatalf("clone failure: %s / %s", d, fix)
	}

	f = goodFacts()
	f.Sysctl[SysctlUnprivClone] = "0"
	c = find(t, Evaluate(f), "user namespaces")
	if c.Status != StatusMissing || !strings.Contains(c.Fix, "kernel.unprivileged_userns_clone=1") {
		t.Fatalf("%+v", c)
	}
	f.Root = true
	if c := find(t, Evaluate(f), "user namespaces"); c.Status != StatusOK {
		t.Fatalf("root is not bound by unprivileged_userns_clone: %+v", c)
	}
	// The limit reached, not disabled.
	f = goodFacts()
	if d, _ := f.CloneFailure(unix.ENOSPC); !strings.Contains(d, "limit") {
		t.Fatal(d)
	}
}

func TestEvaluateAppArmor(t *testing.T) {
	f := goodFacts()
	f.Sysctl[SysctlAppArmorUserNS] = "1"
	f.AppArmorLabel = "unconfined"
	f.Probe.Mounts[MountPrivate] = int(unix.EPERM)
	fs := Evaluate(f)
	c := find(t, fs, "AppArmor")
	if c.Status != StatusMissing {
		t.Fatalf("%+v", c)
	}
	for _, want := range []string{"/opt/bin/unroot check --apparmor-profile | sudo tee /etc/apparmor.d/unroot", "apparmor_parser -r", "s|/usr/local/bin/unroot|/opt/bin/unroot|", "apparmor_restrict_unprivileged_userns=0"} {
		if !strings.Contains(c.Fix, want) {
			t.Errorf("fix lacks %q: %s", want, c.Fix)
		}
	}
	p := find(t, fs, "namespace probe")
	if p.Status != StatusMissing || !strings.Contains(p.Detail, "AppArmor") || !strings.Contains(p.Fix, "apparmor_parser") {
		t.Fatalf("probe: %+v", p)
	}
	// The B-side check says the same.
	if d, fix := f.MountDenied(unix.EPERM); !strings.Contains(d, "AppArmor") || !strings.Contains(fix, "apparmor_parser -r") {
		t.Fatalf("%s / %s", d, fix)
	}
	// With the profile loaded all is well.
	f.AppArmorLabel = "unroot (unconfined)"
	f.Probe.Mounts[MountPrivate] = 0
	if c := find(t, Evaluate(f), "AppArmor"); c.Status != StatusOK {
		t.Fatalf("%+v", c)
	}
	// Sysctl 0: fine; absent: no finding at all.
	f.Sysctl[SysctlAppArmorUserNS] = "0"
	if c := find(t, Evaluate(f), "AppArmor"); c.Status != StatusOK {
		t.Fatalf("%+v", c)
	}
	delete(f.Sysctl, SysctlAppArmorUserNS)
	for _, c := range Evaluate(f) {
		if c.Check == "AppArmor" {
			t.Fatal("AppArmor finding without the sysctl")
		}
	}
}

func TestEvaluateHelpers(t *testing.T) {
	f := goodFacts()
	f.Helpers[0] = Helper{Name: "newuidmap"}
	c := find(t, Evaluate(f), "newuidmap")
	if c.Status != StatusMissing || !strings.Contains(c.Fix, "apt-get install uidmap") {
		t.Fatalf("%+v", c)
	}
	f.Helpers[0] = Helper{Name: "newuidmap", Path: "/usr/bin/newuidmap"}
	c = find(t, Evaluate(f), "newuidmap")
	if c.Status != StatusMissing || !strings.Contains(c.Fix, "chmod u+s /usr/bin/newuidmap") || !strings.Contains(c.Fix, "setcap cap_setuid+ep") {
		t.Fatalf("%+v", c)
	}
	// Not needed in single-id mode: only a warning.
	f.Mapping = idmap.Single(idmap.Caller{UID: 1000, GID: 1000, Name: "alice"}, "none")
	f.Helpers[0] = Helper{Name: "newuidmap"}
	if c := find(t, Evaluate(f), "newuidmap"); c.Status != StatusWarn {
		t.Fatalf("%+v", c)
	}
	s := find(t, Evaluate(f), "subordinate ids")
	if s.Status != StatusWarn || !strings.Contains(s.Fix, "sudo usermod --add-subuids 231072-296607 --add-subgids 231072-296607 alice") || !strings.Contains(s.Detail, "single-id") {
		t.Fatalf("%+v", s)
	}
}

func TestEvaluateProbeFailures(t *testing.T) {
	f := goodFacts()
	f.Container = []string{"Docker: /.dockerenv"}
	f.Probe = &ProbeResult{StartErr: "fork/exec /proc/self/exe: operation not permitted", StartErrno: unix.EPERM}
	fs := Evaluate(f)
	p := find(t, fs, "namespace probe")
	if p.Status != StatusMissing || !strings.Contains(p.Detail, "inside a container") || !strings.Contains(p.Fix, "seccomp=unconfined") {
		t.Fatalf("%+v", p)
	}
	if c := find(t, fs, "container"); c.Status != StatusWarn {
		t.Fatalf("%+v", c)
	}
	// Masked /proc: tmpfs works, proc does not.
	f.Probe = &ProbeResult{Mounts: map[string]int{MountPrivate: 0, MountTmpfs: 0, MountOverlay: 0, MountProc: int(unix.EPERM)}}
	p = find(t, Evaluate(f), "namespace probe")
	if p.Status != StatusMissing || !strings.Contains(p.Fix, "systempaths=unconfined") {
		t.Fatalf("%+v", p)
	}
	f.Probe = &ProbeResult{Mounts: map[string]int{MountPrivate: 0, MountTmpfs: 0, MountOverlay: int(unix.EINVAL), MountProc: 0}}
	if p = find(t, Evaluate(f), "namespace probe"); !strings.Contains(p.Detail, "5.11") {
		t.Fatalf("%+v", p)
	}
	f.Probe = &ProbeResult{MapErr: "newuidmap failed (exit status 1): write to uid_map failed\n  fix: make it setuid"}
	if p = find(t, Evaluate(f), "namespace probe"); p.Fix != "make it setuid" || strings.Contains(p.Detail, "fix:") {
		t.Fatalf("%+v", p)
	}
	// Generic EPERM outside containers.
	f = goodFacts()
	if d, fix := f.CloneFailure(unix.EPERM); !strings.Contains(d, "security policy") || !strings.Contains(fix, "unshare --user") {
		t.Fatalf("%s / %s", d, fix)
	}
}

func TestRunDirAndStorage(t *testing.T) {
	f := goodFacts()
	f.XDGRuntimeDir, f.RunDir = "", "/tmp/unroot-1000"
	c := find(t, Evaluate(f), "run directory")
	if c.Status != StatusOK || !strings.Contains(c.Detail, "/tmp/unroot-1000") || !strings.Contains(c.Detail, "unset") {
		t.Fatalf("%+v", c)
	}
	f.StorageFS = NetworkFS(0x6969)
	c = find(t, Evaluate(f), "storage")
	if c.Status != StatusWarn || !strings.Contains(c.Detail, "NFS") || !strings.Contains(c.Detail, "#4") {
		t.Fatalf("%+v", c)
	}
	for m, want := range map[int64]string{0x0BD00BD0: "Lustre", 0x47504653: "GPFS (Spectrum Scale)", 0xEF53: "", 0x01021994: ""} {
		if got := NetworkFS(m); got != want {
			t.Errorf("NetworkFS(%#x) = %q, want %q", m, got, want)
		}
	}
}

func TestContainerHints(t *testing.T) {
	files := map[string]string{"/.dockerenv": "", "/proc/1/cgroup": "0::/kubepods/besteffort/pod1\n"}
	exists := func(p string) bool { _, ok := files[p]; return ok }
	read := func(p string) string { return files[p] }
	h := ContainerHints(exists, read, "")
	if len(h) != 2 || !strings.Contains(h[0], "Docker") || !strings.Contains(h[1], "kubepods") {
		t.Fatalf("%q", h)
	}
	if h := ContainerHints(func(string) bool { return false }, func(p string) string {
		if p == "/proc/1/cgroup" {
			return "0::/user.slice\n"
		}
		return ""
	}, ""); len(h) != 0 {
		t.Fatalf("%q", h)
	}
	if h := ContainerHints(func(string) bool { return false }, func(string) string { return "" }, "podman"); len(h) != 1 {
		t.Fatalf("%q", h)
	}
}

func TestFreeSubRange(t *testing.T) {
	if got := FreeSubRange("", ""); got != "100000-165535" {
		t.Fatal(got)
	}
	if got := FreeSubRange("alice:100000:65536\nbob:165536:65536\n", "alice:100000:65536\n"); got != "231072-296607" {
		t.Fatal(got)
	}
}

// contrib/apparmor/unroot is the template with the default install path.
func TestAppArmorProfileMatchesContrib(t *testing.T) {
	b, err := os.ReadFile("../contrib/apparmor/unroot")
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != AppArmorProfile("/usr/local/bin/unroot") {
		t.Fatalf("contrib/apparmor/unroot and apparmorTemplate differ:\n%s", b)
	}
	for _, want := range []string{"abi <abi/4.0>,", "include <tunables/global>", "profile unroot /opt/x/unroot flags=(unconfined) {", "  userns,", "include if exists <local/unroot>"} {
		if !strings.Contains(AppArmorProfile("/opt/x/unroot"), want) {
			t.Errorf("profile lacks %q", want)
		}
	}
	if !strings.Contains(AppArmorProfile("/opt/my bin/unroot"), `profile unroot "/opt/my bin/unroot" flags`) {
		t.Error("a path with a space must be quoted")
	}
}

func TestPreflightErrorFormat(t *testing.T) {
	e := &PreflightError{Findings: []Finding{{Check: "newuidmap", Status: StatusMissing, Detail: "not found", Fix: "sudo apt-get install uidmap"}}}
	if s := e.Error(); !strings.Contains(s, "newuidmap: not found") || !strings.Contains(s, "fix: sudo apt-get install uidmap") {
		t.Fatal(s)
	}
}
