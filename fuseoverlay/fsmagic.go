package fuseoverlay

import (
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Filesystem magic numbers (statfs f_type) of shared or network file
// systems, where an image store is slow, where native overlay in a user
// namespace is refused, and where file locks and xattrs are unreliable.
const (
	MagicNFS     = 0x6969
	MagicSMB     = 0x517b
	MagicCIFS    = 0xff534d42
	MagicSMB2    = 0xfe534d42
	MagicLustre  = 0x0bd00bd0
	MagicGPFS    = 0x47504653
	MagicBeeGFS  = 0x19830326
	MagicCeph    = 0x00c36400
	MagicAFS     = 0x5346414f
	MagicPanFS   = 0xaad7aaea
	MagicOCFS2   = 0x7461636f
	MagicFUSE    = 0x65735546 // any FUSE file system: sshfs, GlusterFS, CVMFS... (see NetworkFUSE)
	MagicOverlay = 0x794c7630
	MagicTmpfs   = 0x01021994
	MagicVboxSF  = 0x786f4256
	Magic9P      = 0x01021997
)

var networkFS = map[int64]string{
	MagicNFS:    "NFS",
	MagicSMB:    "SMB",
	MagicCIFS:   "CIFS/SMB",
	MagicSMB2:   "SMB2",
	MagicLustre: "Lustre",
	MagicGPFS:   "GPFS (Spectrum Scale)",
	MagicBeeGFS: "BeeGFS",
	MagicCeph:   "CephFS",
	MagicAFS:    "AFS",
	MagicPanFS:  "PanFS",
	MagicOCFS2:  "OCFS2",
	MagicVboxSF: "vboxsf",
	Magic9P:     "9p",
}

// NetworkFS says whether a statfs f_type is a network or cluster file
// system, and its name. It is a pure function of the magic number (FUSE
// file systems are told apart by NetworkFUSE, from the mount table).
func NetworkFS(magic int64) (name string, network bool) {
	// f_type is a signed word on some architectures: compare the low 32 bits.
	name, ok := networkFS[magic&0xffffffff]
	return name, ok
}

// networkFUSE are the FUSE subtypes (fuse.NAME in /proc/self/mountinfo)
// that are network file systems.
var networkFUSE = map[string]bool{
	"sshfs": true, "glusterfs": true, "cvmfs2": true, "cvmfs": true, "s3fs": true,
	"gcsfuse": true, "rclone": true, "ceph-fuse": true, "lustre": true, "beegfs": true,
	"davfs": true, "juicefs": true, "weka": true, "objectivefs": true,
}

// NetworkFUSE says whether a mount table fstype such as "fuse.sshfs" is a
// network file system.
func NetworkFUSE(fstype string) bool {
	sub, ok := strings.CutPrefix(fstype, "fuse.")
	if !ok {
		sub, ok = strings.CutPrefix(fstype, "fuseblk.")
	}
	return ok && networkFUSE[sub]
}

// FS describes the file system holding a path.
type FS struct {
	Path    string // the path that was examined (the nearest existing parent)
	Magic   int64
	Type    string // mount table fstype, when found
	Network string // non-empty: the network file system's name
}

// Examine statfs's path, or its nearest existing parent.
func Examine(path string) (FS, error) {
	p := filepath.Clean(path)
	for {
		var st unix.Statfs_t
		err := unix.Statfs(p, &st)
		if err == nil {
			fs := FS{Path: p, Magic: int64(st.Type)}
			if name, ok := NetworkFS(fs.Magic); ok {
				fs.Network = name
			}
			if fs.Magic&0xffffffff == MagicFUSE {
				fs.Type = mountType(p)
				if NetworkFUSE(fs.Type) {
					fs.Network = fs.Type
				}
			}
			return fs, nil
		}
		if !os.IsNotExist(err) || p == "/" || p == "." {
			return FS{Path: p}, err
		}
		p = filepath.Dir(p)
	}
}

// mountType finds the fstype of the mount holding p in /proc/self/mountinfo
// (the longest mount point that is a prefix of p).
func mountType(p string) string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	best, typ := -1, ""
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 1 {
			continue
		}
		mp := unescapeMount(f[4])
		if (p == mp || mp == "/" || strings.HasPrefix(p, mp+"/")) && len(mp) > best {
			best, typ = len(mp), g[0]
		}
	}
	return typ
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			v := (int(s[i+1]-'0') << 6) | (int(s[i+2]-'0') << 3) | int(s[i+3]-'0')
			b.WriteByte(byte(v))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
