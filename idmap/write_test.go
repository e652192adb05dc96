package idmap

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A helper that fails is reported with what it printed, and the fix.
func TestHelperFailureKeepsOutput(t *testing.T) {
	dir := t.TempDir()
	script := "#!/bin/sh\necho \"newuidmap: write to uid_map failed: Operation not permitted\" >&2\necho out\nexit 1\n"
	if err := os.WriteFile(filepath.Join(dir, "newuidmap"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	err := runHelper("newuidmap", 1, []Range{{ContainerID: 0, HostID: 1000, Size: 1}})
	var he *HelperError
	if !errors.As(err, &he) {
		t.Fatalf("want a HelperError, got %v", err)
	}
	if !strings.Contains(he.Output, "write to uid_map failed") || !strings.Contains(he.Output, "out") {
		t.Errorf("output lost: %q", he.Output)
	}
	if !strings.Contains(err.Error(), "setuid root or have file capabilities") {
		t.Errorf("no fix in %q", err)
	}
}
