package idmap

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/unroot/unroot/internal/trace"
)

// Write installs m for the process pid, which must be in a fresh user
// namespace created by the caller. A subordinate mapping goes through the
// setuid helpers newuidmap/newgidmap; a single-id mapping is written
// directly, which the kernel allows for one's own id.
func Write(pid int, m Mapping) error {
	if m.Kind == KindSingle {
		return writeSingle(pid, m)
	}
	// The two helpers touch different files: run them side by side, which
	// takes one setuid exec off every container's start.
	gidErr := make(chan error, 1)
	go func() { gidErr <- runHelper("newgidmap", pid, m.GIDs) }()
	uidErr := runHelper("newuidmap", pid, m.UIDs)
	if err := <-gidErr; uidErr == nil {
		return err
	}
	return uidErr
}

func writeSingle(pid int, m Mapping) error {
	p := "/proc/" + strconv.Itoa(pid)
	if err := os.WriteFile(p+"/uid_map", []byte(Format(m.UIDs)), 0); err != nil {
		return fmt.Errorf("writing uid_map: %w", err)
	}
	// Without a helper the kernel demands setgroups be denied before an
	// unprivileged process may write gid_map.
	if err := os.WriteFile(p+"/setgroups", []byte("deny"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("writing setgroups: %w", err)
	}
	if err := os.WriteFile(p+"/gid_map", []byte(Format(m.GIDs)), 0); err != nil {
		return fmt.Errorf("writing gid_map: %w", err)
	}
	return nil
}

// HelperError is a failed newuidmap/newgidmap, with the fix.
type HelperError struct {
	Helper string
	Output string
	Err    error
}

func (e *HelperError) Error() string {
	var fix string
	switch {
	case errors.Is(e.Err, exec.ErrNotFound):
		fix = fmt.Sprintf("%s is not installed or not in PATH: install the package `uidmap` (Debian/Ubuntu: sudo apt-get install uidmap; Fedora/RHEL: sudo dnf install shadow-utils)", e.Helper)
	case strings.Contains(e.Output, "Operation not permitted") || strings.Contains(e.Output, "write to uid_map failed") || strings.Contains(e.Output, "write to gid_map failed"):
		fix = fmt.Sprintf("%s could not write the mapping: it must be setuid root or have file capabilities (sudo chmod u+s $(command -v %s), or sudo setcap cap_setuid+ep for newuidmap / cap_setgid+ep for newgidmap), and your ranges in /etc/subuid and /etc/subgid must not overlap another user's", e.Helper, e.Helper)
	default:
		fix = "check your ranges in /etc/subuid and /etc/subgid (unroot info shows the mapping in use)"
	}
	out := strings.TrimSpace(e.Output)
	if out != "" {
		out = ": " + out
	}
	return fmt.Sprintf("%s failed (%v)%s\n  fix: %s", e.Helper, e.Err, out, fix)
}

func (e *HelperError) Unwrap() error { return e.Err }

func runHelper(name string, pid int, m []Range) error {
	path, err := exec.LookPath(name)
	if err != nil {
		return &HelperError{Helper: name, Err: exec.ErrNotFound}
	}
	args := append([]string{strconv.Itoa(pid)}, Args(m)...)
	// Its output goes into a pipe read only on failure: CombinedOutput
	// would copy it with a goroutine of its own, on every start.
	r, w, err := os.Pipe()
	if err != nil {
		return &HelperError{Helper: name, Err: err}
	}
	defer r.Close()
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = w, w
	trace.Mark(name + " start")
	err = cmd.Run()
	trace.Mark(name + " done")
	w.Close()
	if err != nil {
		// What a helper prints fits the pipe's buffer; it has exited.
		out, _ := io.ReadAll(io.LimitReader(r, 64<<10))
		return &HelperError{Helper: name, Output: string(out), Err: err}
	}
	return nil
}
