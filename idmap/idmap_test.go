package idmap

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseSubIDs(t *testing.T) {
	in := `# comment
alice:100000:65536
1001:300000:1000
bob:165536:65536
alice:500000:10
alice:bad:10
alice:1:0
alice:1
:5:5
alice:4294967295:2
`
	got, err := ParseSubIDs(strings.NewReader(in), "alice", 1001)
	if err != nil {
		t.Fatal(err)
	}
	want := []SubRange{{100000, 65536}, {300000, 1000}, {500000, 10}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v want %v", got, want)
	}
	none, _ := ParseSubIDs(strings.NewReader(in), "carol", 2000)
	if len(none) != 0 {
		t.Fatalf("carol: got %v", none)
	}
}

func TestParseGetsubids(t *testing.T) {
	got := ParseGetsubids("0: alice 100000 65536\n1: alice 300000 10\ngarbage\n")
	want := []SubRange{{100000, 65536}, {300000, 10}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v", got)
	}
}

func TestBuild(t *testing.T) {
	m := Build(1000, []SubRange{{100000, 65536}, {300000, 10}})
	want := []Range{{0, 1000, 1}, {1, 100000, 65536}, {65537, 300000, 10}}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("got %v", m)
	}
	if Size(m) != 65547 {
		t.Fatalf("size %d", Size(m))
	}
	if got := strings.Join(Args(m), " "); got != "0 1000 1 1 100000 65536 65537 300000 10" {
		t.Fatalf("args %q", got)
	}
	if got := Format(m[:1]); got != "0 1000 1\n" {
		t.Fatalf("format %q", got)
	}
}

func TestChooseFallsBackToSingle(t *testing.T) {
	dir := t.TempDir()
	old := Files
	defer func() { Files = old }()
	Files.SubUID, Files.SubGID = dir+"/subuid", dir+"/subgid"
	m := Choose(Caller{UID: 4242, GID: 4242, Name: "nobody-here"})
	if m.Kind != KindSingle || len(m.UIDs) != 1 || m.UIDs[0] != (Range{0, 4242, 1}) {
		t.Fatalf("got %+v", m)
	}
	if !strings.Contains(m.Reason, "usermod --add-subuids") {
		t.Fatalf("reason lacks the fix: %s", m.Reason)
	}
}
