package container

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"go.podman.io/storage"
	"go.podman.io/storage/pkg/idtools"
	"golang.org/x/sys/unix"

	"github.com/unroot/unroot/idmap"
)

// KeepID is --userns=keep-id: the caller's uid and gid are the same inside
// the container as outside. The store keeps living in unroot's namespace
// (0 = the caller, 1.. = subordinate ids); the container's init runs in a
// user namespace nested in it, mapped with UIDMap/GIDMap (idmap.KeepID),
// and containers/storage gives the container an id-shifted copy of the
// image (made once per image, reused after). Composed, container id UID is
// the caller's host uid and every other id a subordinate one, Podman's
// layout; what the process writes belongs to the caller on the host.
type KeepID struct {
	UID    uint32        `json:"uid"`
	GID    uint32        `json:"gid"`
	Name   string        `json:"name"`
	UIDMap []idmap.Range `json:"uid_map"` // container ids -> ids of unroot's namespace
	GIDMap []idmap.Range `json:"gid_map"`
}

// NewKeepID prepares keep-id for caller c in mapping m (unroot's
// namespace). It needs subordinate ids: the container's root must be
// someone other than the caller.
func NewKeepID(c idmap.Caller, m idmap.Mapping) (*KeepID, error) {
	if m.Kind != idmap.KindSubordinate {
		return nil, fmt.Errorf("--userns=keep-id needs a subordinate id range (the container's root and other users must be ids other than yours), and %s has none: an admin adds one with `sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 %s` (pick a range no other user has; `unroot check` suggests one)", c.Name, c.Name)
	}
	k := &KeepID{
		UID: c.UID, GID: c.GID, Name: passwdName(c.Name, c.UID),
		UIDMap: idmap.KeepID(c.UID, idmap.Size(m.UIDs)),
		GIDMap: idmap.KeepID(c.GID, idmap.Size(m.GIDs)),
	}
	return k, nil
}

// User is the default user of a keep-id container: the caller.
func (k *KeepID) User() string { return fmt.Sprintf("%d:%d", k.UID, k.GID) }

// Home is the caller's home directory inside the container.
func (k *KeepID) Home() string { return "/home/" + k.Name }

// passwdName makes a host user name safe for a passwd line.
func passwdName(name string, uid uint32) string {
	ok := name != "" && len(name) <= 32 && strings.IndexFunc(name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.')
	}) < 0 && name[0] != '-' && name[0] != '.'
	if ok {
		if _, err := strconv.Atoi(name); err != nil {
			return name
		}
	}
	return fmt.Sprintf("user%d", uid)
}

func storageMap(m []idmap.Range) []idtools.IDMap {
	out := make([]idtools.IDMap, len(m))
	for i, r := range m {
		out[i] = idtools.IDMap{ContainerID: int(r.ContainerID), HostID: int(r.HostID), Size: int(r.Size)}
	}
	return out
}

func procMap(m []idmap.Range) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(m))
	for i, r := range m {
		out[i] = syscall.SysProcIDMap{ContainerID: int(r.ContainerID), HostID: int(r.HostID), Size: int(r.Size)}
	}
	return out
}

// containerOptions are the store options of the container: nil (the
// store's own ids) without keep-id.
func (k *KeepID) containerOptions() *storage.ContainerOptions {
	if k == nil {
		return nil
	}
	o := &storage.ContainerOptions{}
	o.IDMappingOptions.UIDMap = storageMap(k.UIDMap)
	o.IDMappingOptions.GIDMap = storageMap(k.GIDMap)
	return o
}

// nest makes the container's init start in a user namespace of its own,
// mapped with k, as root there (it needs its capabilities to mount and
// pivot_root; it drops to the caller's ids right before exec).
func (k *KeepID) nest(a *syscall.SysProcAttr) {
	if k == nil {
		return
	}
	a.Cloneflags |= unix.CLONE_NEWUSER
	a.UidMappings = procMap(k.UIDMap)
	a.GidMappings = procMap(k.GIDMap)
	a.GidMappingsEnableSetgroups = true
	a.Credential = &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{}}
}

// addEtcFiles gives the caller an /etc/passwd and /etc/group entry (unless
// the image has one for those ids) and a home directory, so that `id`,
// `whoami` and $HOME work: copies of the image's files with one more
// line, written to runDir and bind-mounted by init like /etc/hosts.
func (k *KeepID) addEtcFiles(runDir, rootfs string, files map[string]string) error {
	if k == nil {
		return nil
	}
	root, err := os.Open(rootfs)
	if err != nil {
		return err
	}
	defer root.Close()
	passwd, err := readInRoot(root, "etc/passwd")
	if err != nil {
		return err
	}
	group, err := readInRoot(root, "etc/group")
	if err != nil {
		return err
	}
	if !hasID(passwd, 2, k.UID) {
		passwd = withNewline(passwd) + fmt.Sprintf("%s:x:%d:%d:%s:%s:/bin/sh\n", k.Name, k.UID, k.GID, k.Name, k.Home())
		// Best effort: an image whose /home leads nowhere still runs,
		// with a $HOME that does not exist.
		_ = mkdirInRoot(root, k.Home())
	}
	if !hasID(group, 2, k.GID) {
		group = withNewline(group) + fmt.Sprintf("%s:x:%d:\n", k.Name, k.GID)
	}
	for ctrPath, content := range map[string]string{"/etc/passwd": passwd, "/etc/group": group} {
		host := filepath.Join(runDir, filepath.Base(ctrPath))
		if err := os.WriteFile(host, []byte(content), 0o644); err != nil {
			return err
		}
		// Root's inside, like the image's file (best effort).
		_ = os.Chown(host, nsID(k.UIDMap, 0), nsID(k.GIDMap, 0))
		files[ctrPath] = host
	}
	return nil
}

// readInRoot reads a file of the container's rootfs, resolving symlinks
// inside it (an image's /etc/passwd -> /host/secret must not reach the
// host's files); a missing file reads as empty.
func readInRoot(root *os.File, rel string) (string, error) {
	fd, err := unix.Openat2(int(root.Fd()), rel, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ENOENT) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading /%s of the image: %w", rel, err)
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 16<<20))
	return string(b), err
}

// mkdirInRoot creates dir (absolute, inside the rootfs) and its parents
// without leaving the rootfs. The monitor creates it, as the caller.
func mkdirInRoot(root *os.File, dir string) error {
	cur := int(root.Fd())
	for _, part := range strings.Split(strings.Trim(dir, "/"), "/") {
		if err := unix.Mkdirat(cur, part, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			return err
		}
		fd, err := unix.Openat2(cur, part, &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
		})
		if cur != int(root.Fd()) {
			unix.Close(cur)
		}
		if err != nil {
			return err
		}
		cur = fd
	}
	if cur != int(root.Fd()) {
		unix.Close(cur)
	}
	return nil
}

// nsID is the id of unroot's namespace that container id id maps to
// (-1, i.e. unchanged, when unmapped).
func nsID(m []idmap.Range, id uint32) int {
	for _, r := range m {
		if id >= r.ContainerID && uint64(id) < uint64(r.ContainerID)+uint64(r.Size) {
			return int(r.HostID + (id - r.ContainerID))
		}
	}
	return -1
}

// hasID reports whether a passwd/group file has a line whose field n
// (0-based) is id.
func hasID(content string, n int, id uint32) bool {
	sc := bufio.NewScanner(strings.NewReader(content))
	want := strconv.FormatUint(uint64(id), 10)
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) > n && f[n] == want {
			return true
		}
	}
	return false
}

func withNewline(s string) string {
	if s != "" && !strings.HasSuffix(s, "\n") {
		return s + "\n"
	}
	return s
}
