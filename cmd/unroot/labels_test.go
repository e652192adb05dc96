package main

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseLabels(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "labels")
	if err := os.WriteFile(f, []byte("# comment\n\n  file=1\nboth=file\nk=v=w\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := parseLabels([]string{f}, []string{"both=flag", "bare", "e="})
	want := map[string]string{"file": "1", "both": "flag", "k": "v=w", "bare": "", "e": ""}
	if err != nil || !maps.Equal(got, want) {
		t.Errorf("parseLabels = %v, %v; want %v", got, err, want)
	}
	if got, err := parseLabels(nil, nil); got != nil || err != nil {
		t.Errorf("no labels: %v, %v", got, err)
	}
	if _, err := parseLabels(nil, []string{"=v"}); err == nil || !strings.Contains(err.Error(), "KEY=VALUE") {
		t.Errorf("a label without a key: %v", err)
	}
	if _, err := parseLabels([]string{filepath.Join(dir, "missing")}, nil); err == nil || !strings.Contains(err.Error(), "--label-file") {
		t.Errorf("a missing label file: %v", err)
	}
}
