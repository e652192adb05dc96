package e2e

import (
	"os"
	"strings"
	"testing"
)

// On a machine without usable cgroup v2 delegation (this CI machine runs
// hybrid cgroups and no systemd), a requested limit is refused before
// anything starts, with the reason and the fix; without limits, containers
// run without a word about cgroups. (The limits themselves are proven in
// the VM stage, tests/vm.)
func TestCgroupLimitRefusedClearlyWithoutDelegation(t *testing.T) {
	t.Parallel()
	if b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil && strings.Contains(string(b), "memory") {
		t.Skip("this machine has a cgroup v2 hierarchy with controllers: the VM stage covers it")
	}
	s := sandboxFor(t, nil)
	s.pull(busybox())
	before := s.containerCount(t)
	s.run("run", "--rm", "--tls-verify=false", "-m", "64M", busybox(), "true").
		wantCode(t, 125).wantStderr(t, "--memory", "fix:", "systemd.unified_cgroup_hierarchy=1")
	s.run("run", "--rm", "--tls-verify=false", "--pids-limit", "10", busybox(), "true").wantCode(t, 125)
	if n := s.containerCount(t); n != before {
		t.Errorf("a refused run left containers behind: %d before, %d after", before, n)
	}
	r := s.run("run", "--rm", "--tls-verify=false", busybox(), "echo", "quiet").ok(t)
	if strings.TrimSpace(r.stderr) != "" {
		t.Errorf("a run without limits printed something on stderr:\n%s", r)
	}
	s.run("run", "--rm", "--tls-verify=false", "--cgroups=disabled", "-m", "64M", busybox(), "true").
		wantCode(t, 125).wantStderr(t, "--cgroups=disabled")
}
