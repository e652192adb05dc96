package fuseoverlay

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestNetworkFS(t *testing.T) {
	for _, c := range []struct {
		magic   int64
		name    string
		network bool
	}{
		{0x6969, "NFS", true},
		{0x0bd00bd0, "Lustre", true},
		{0x47504653, "GPFS (Spectrum Scale)", true},
		{0x19830326, "BeeGFS", true},
		{0xff534d42, "CIFS/SMB", true},
		{-0xacb2be, "CIFS/SMB", true}, // 0xff534d42 as a signed 32-bit f_type
		{0xfe534d42, "SMB2", true},
		{0x517b, "SMB", true},
		{0x00c36400, "CephFS", true},
		{0xef53, "", false},     // ext4
		{0x58465342, "", false}, // xfs
		{0x9123683e, "", false}, // btrfs
		{0x01021994, "", false}, // tmpfs
		{0x794c7630, "", false}, // overlay
		{0x65735546, "", false}, // fuse: told apart by its subtype
	} {
		name, network := NetworkFS(c.magic)
		if name != c.name || network != c.network {
			t.Errorf("NetworkFS(%#x) = %q, %v; want %q, %v", c.magic, name, network, c.name, c.network)
		}
	}
}

func TestNetworkFUSE(t *testing.T) {
	for fstype, want := range map[string]bool{
		"fuse.sshfs": true, "fuse.glusterfs": true, "fuse.cvmfs2": true, "fuse.s3fs": true,
		"fuse.fuse-overlayfs": false, "fuse.gvfsd-fuse": false, "fuse": false, "ext4": false,
		"sshfs": false,
	} {
		if got := NetworkFUSE(fstype); got != want {
			t.Errorf("NetworkFUSE(%q) = %v, want %v", fstype, got, want)
		}
	}
}

func TestExamineNearestParent(t *testing.T) {
	dir := t.TempDir()
	fs, err := Examine(filepath.Join(dir, "not", "yet", "there"))
	if err != nil {
		t.Fatal(err)
	}
	if fs.Path != dir {
		t.Errorf("examined %s, want the nearest existing parent %s", fs.Path, dir)
	}
}

func TestOptions(t *testing.T) {
	in := []string{"overlay.ignore_chown_errors=true", "overlay.imagestore=/a,/b", "overlay.mount_program=/x"}
	for _, c := range []struct {
		d    Decision
		want []string
	}{
		{Decision{Strategy: Native}, []string{"overlay.ignore_chown_errors=true", "overlay.imagestore=/a,/b"}},
		{Decision{Strategy: Fuse, MountProgram: "/usr/bin/fuse-overlayfs"}, []string{"overlay.ignore_chown_errors=true", "overlay.imagestore=/a,/b", "overlay.mount_program=/usr/bin/fuse-overlayfs"}},
		{Decision{Strategy: VFS}, []string{"vfs.ignore_chown_errors=true", "vfs.imagestore=/a,/b"}},
	} {
		if got := c.d.Options(in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: Options = %q, want %q", c.d.Strategy, got, c.want)
		}
	}
}

func TestCachedAndSwitch(t *testing.T) {
	root := t.TempDir()
	if _, ok := Cached(root); ok {
		t.Fatal("empty store has a decision")
	}
	if err := save(root, Decision{Strategy: VFS, Kernel: Kernel()}); err != nil {
		t.Fatal(err)
	}
	// Cached + same kernel: Resolve answers without probing.
	d, err := Resolve(root, Auto, false)
	if err != nil || d.Strategy != VFS {
		t.Fatalf("Resolve = %+v, %v", d, err)
	}
	// A store with vfs layers refuses overlay.
	os.MkdirAll(filepath.Join(root, "vfs-layers"), 0o700)
	os.WriteFile(filepath.Join(root, "vfs-layers", "layers.json"), []byte(`[{"id":"x"}]`), 0o600)
	if s, _ := Existing(root); s != VFS {
		t.Fatalf("Existing = %q", s)
	}
	if err := canSwitch(root, VFS, Fuse, "test"); err == nil {
		t.Fatal("vfs -> fuse allowed on a store with layers")
	}
	if err := canSwitch(root, "", Fuse, ""); err != nil {
		t.Fatal(err)
	}
	if err := Valid("overlay2"); err == nil {
		t.Fatal("overlay2 accepted")
	}
}
