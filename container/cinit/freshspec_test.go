package cinit

import (
	"reflect"
	"testing"
)

// Fields of Process the fresh init does not need: the set-up's.
var setupOnly = map[string]bool{
	"Hostname": true, "Net": true, "Rootfs": true, "EtcFiles": true, "EtcWrite": true,
	"Cgroup": true, "ExecSocket": true, "ExecSocketUID": true, "ExecSocketGID": true,
	"Mounts": true, "ReadOnly": true, "Scratch": true, "Link": true,
}

func TestFreshSpecRoundTrip(t *testing.T) {
	oom := -500
	p := &Process{
		Args: []string{"sh", "-c", "a\nb", ""}, Env: []string{"A=1", "B="}, Cwd: "/w", User: "101:102",
		Caps: []string{"CHOWN", "KILL"}, Tty: true, SingleID: true, OOMScoreAdj: &oom, NetBypass: true,
		OwnLog: true, LogMax: 10 << 20, MemEvents: true, NetExit: true,
		Forward: []Forward{{Addr: "10.0.2.100:80"}, {Addr: "10.0.2.100:5432"}}, ExecFD: 14, MemLimit: 9 << 20,
	}
	p.resolved = &resolvedProcess{path: "/bin/sh", uid: 101, gid: 102, groups: []int{5, 6}, home: "/home/x"}
	// Every field is carried, or set-up only: a new field must be sorted
	// into one or the other.
	v := reflect.ValueOf(p).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		if !f.IsExported() || setupOnly[f.Name] {
			continue
		}
		if v.Field(i).IsZero() {
			t.Errorf("field %s: neither set in this test nor set-up only (add it to encodeFresh or setupOnly)", f.Name)
		}
	}
	got, err := decodeFresh(encodeFresh(p))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, p) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, p)
	}
	empty, err := decodeFresh(encodeFresh(&Process{}))
	if err != nil || empty.OOMScoreAdj != nil || empty.Args != nil || empty.Tty {
		t.Errorf("empty: %+v %v", empty, err)
	}
	if _, err := decodeFresh([]byte("cwd\x00/")); err == nil {
		t.Error("a truncated spec decodes")
	}
	if _, err := decodeFresh([]byte("new-field\x00x\x00")); err == nil {
		t.Error("an unknown key decodes")
	}
}
