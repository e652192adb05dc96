package ctrlog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readLines(t *testing.T, paths ...string) []string {
	t.Helper()
	var out []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			if l == "" {
				continue
			}
			ll, ok := Parse(l)
			if !ok {
				t.Fatalf("unparsable line %q in %s", l, p)
			}
			out = append(out, ll.Stream+":"+ll.Text)
		}
	}
	return out
}

// The init's log: rotation copies the log into the old file and truncates
// it, through the two descriptors only.
func TestRotateByCopy(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ctr.log")
	if err := os.WriteFile(path, []byte(""), 0o600); err != nil {
		t.Fatal(err)
	}
	cur, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	old, err := os.OpenFile(path+".1", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	// The init gets them as bare descriptors (no O_APPEND bookkeeping in
	// os.File), as here.
	cur = os.NewFile(cur.Fd(), "log")
	old = os.NewFile(old.Fd(), "log.1")
	l, err := OpenFiles(cur, old, 200)
	if err != nil {
		t.Fatal(err)
	}
	// A writer of the old file that left more than the copy will hold.
	if _, err := old.WriteAt([]byte(strings.Repeat("junk\n", 100)), 0); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := 0; i < 12; i++ {
		line := strings.Repeat(string(rune('a'+i)), 20)
		l.Write("stdout", []byte(line), false)
		want = append(want, "stdout:"+line)
	}
	l.Write("stderr", []byte("err"), false)
	want = append(want, "stderr:err")
	if got := l.LastErrors(); got != "err" {
		t.Errorf("LastErrors: %q", got)
	}
	got := readLines(t, path+".1", path)
	// Each file holds at most 200 bytes; together they end with the last
	// lines written, in order.
	for _, p := range []string{path, path + ".1"} {
		if st, _ := os.Stat(p); st.Size() > 200 || st.Size() == 0 {
			t.Errorf("%s: %d bytes", p, st.Size())
		}
	}
	if len(got) == 0 || len(got) >= len(want) {
		t.Fatalf("no rotation? %d lines: %q", len(got), got)
	}
	if strings.Join(got, " ") != strings.Join(want[len(want)-len(got):], " ") {
		t.Errorf("lines after rotation:\n%q\nwant the end of\n%q", got, want)
	}
	l.Close()
}

func TestRotateByRename(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctr.log")
	l, err := Open(path, 100)
	if err != nil {
		t.Fatal(err)
	}
	l.Write("stdout", []byte(strings.Repeat("x", 60)), false)
	l.Write("stdout", []byte("second"), true)
	l.Close()
	got := readLines(t, path+".1", path)
	if strings.Join(got, " ") != "stdout:"+strings.Repeat("x", 60)+" stdout:second" {
		t.Errorf("lines: %q", got)
	}
}
