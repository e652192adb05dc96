package image

import (
	"errors"
	"strings"
	"testing"
)

func TestExplainIDs(t *testing.T) {
	raw := errors.New(`unpacking failed (error: exit status 1; output: potentially insufficient UIDs or GIDs available in user namespace (requested 70000:70000 for /bigfile): Check /etc/subuid and /etc/subgid if configured locally and run "podman system migrate": lchown /bigfile: invalid argument)`)
	e := explainIDs(raw)
	if e == nil {
		t.Fatal("not recognised")
	}
	for _, want := range []string{"/bigfile", "uid 70000", "at least 70001 ids", "usermod --add-subuids"} {
		if !strings.Contains(e.Error(), want) {
			t.Errorf("missing %q in %q", want, e)
		}
	}
	if explainIDs(errors.New("connection refused")) != nil {
		t.Error("unrelated error explained")
	}
}
