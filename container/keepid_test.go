package container

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/unroot/unroot/idmap"
)

func TestNewKeepID(t *testing.T) {
	c := idmap.Caller{UID: 1001, GID: 1002, Name: "alice"}
	if _, err := NewKeepID(c, idmap.Single(c, "none")); err == nil || !strings.Contains(err.Error(), "usermod --add-subuids") {
		t.Fatalf("single-id mapping: want an error with the fix, got %v", err)
	}
	subs := []idmap.SubRange{{Start: 100000, Count: 65536}}
	m := idmap.Mapping{Kind: idmap.KindSubordinate, UIDs: idmap.Build(1001, subs), GIDs: idmap.Build(1002, subs)}
	k, err := NewKeepID(c, m)
	if err != nil {
		t.Fatal(err)
	}
	if nsID(k.UIDMap, 0) != 1 || nsID(k.UIDMap, 1001) != 0 || nsID(k.UIDMap, 1002) != 1002 || nsID(k.UIDMap, 70000) != -1 {
		t.Fatalf("nsID: %v", k.UIDMap)
	}
	if k.User() != "1001:1002" || k.Home() != "/home/alice" {
		t.Fatalf("%+v", k)
	}
	host, _ := idmap.Compose(k.UIDMap, m.UIDs)
	if got := idmap.Format(host); got != "0 100000 1001\n1001 1001 1\n1002 101001 64535\n" {
		t.Fatalf("uids: %q", got)
	}
	var a syscall.SysProcAttr
	k.nest(&a)
	if a.Cloneflags&syscall.CLONE_NEWUSER == 0 || len(a.UidMappings) != 3 || a.UidMappings[1] != (syscall.SysProcIDMap{ContainerID: 1001, HostID: 0, Size: 1}) || a.Credential.Uid != 0 {
		t.Fatalf("%+v", a)
	}
	o := k.containerOptions()
	if len(o.UIDMap) != 3 || o.GIDMap[1].ContainerID != 1002 {
		t.Fatalf("%+v", o)
	}
	var nilK *KeepID
	nilK.nest(&a) // no-op
	if nilK.containerOptions() != nil || nilK.addEtcFiles("", "", nil) != nil {
		t.Fatal("nil KeepID must do nothing")
	}
}

func TestPasswdName(t *testing.T) {
	for in, want := range map[string]string{"alice": "alice", "a.b-c_d": "a.b-c_d", "1001": "user1001", "": "user1001", "bad:name": "user1001", "-x": "user1001", "DOMAIN\\bob": "user1001"} {
		if got := passwdName(in, 1001); got != want {
			t.Errorf("passwdName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestKeepIDEtcFiles(t *testing.T) {
	root, run := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh"), 0o644)
	// A malicious image: /etc/group points at a host file.
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("host-secret\n"), 0o644)
	os.Symlink(secret, filepath.Join(root, "etc", "group"))
	k := &KeepID{UID: 1001, GID: 1001, Name: "alice"}
	files := map[string]string{}
	if err := k.addEtcFiles(run, root, files); err != nil {
		t.Fatal(err)
	}
	p, _ := os.ReadFile(files["/etc/passwd"])
	if want := "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nalice:x:1001:1001:alice:/home/alice:/bin/sh\n"; string(p) != want {
		t.Fatalf("passwd:\n%s", p)
	}
	g, _ := os.ReadFile(files["/etc/group"])
	if string(g) != "alice:x:1001:\n" {
		t.Fatalf("group (must not contain the host file):\n%s", g)
	}
	if st, err := os.Stat(filepath.Join(root, "home", "alice")); err != nil || !st.IsDir() {
		t.Fatalf("home: %v", err)
	}
	// An image that already has the uid keeps its own entry.
	k = &KeepID{UID: 1000, GID: 1000, Name: "alice"}
	files = map[string]string{}
	if err := k.addEtcFiles(run, root, files); err != nil {
		t.Fatal(err)
	}
	p, _ = os.ReadFile(files["/etc/passwd"])
	if strings.Contains(string(p), "alice") {
		t.Fatalf("uid 1000 exists: no line to add:\n%s", p)
	}
	// A home path through a symlink that points out of the rootfs stays inside.
	root2 := t.TempDir()
	outside := t.TempDir()
	os.Symlink(outside, filepath.Join(root2, "home"))
	_ = mkdirInRoot(mustOpen(t, root2), "/home/bob") // ENOENT: /tmp/... inside root2
	if _, err := os.Stat(filepath.Join(outside, "bob")); err == nil {
		t.Fatal("mkdirInRoot escaped the rootfs")
	}
}

func mustOpen(t *testing.T, p string) *os.File {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
