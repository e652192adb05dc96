// Package idmap chooses the uid/gid mapping of a user namespace: the caller's
// subordinate ranges when it has them, a single-id mapping otherwise, and
// writes the chosen mapping for a child process.
package idmap

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
)

// Range is one line of a uid_map/gid_map: Size ids starting at ContainerID
// inside are HostID.. outside.
type Range struct {
	ContainerID uint32 `json:"container_id"`
	HostID      uint32 `json:"host_id"`
	Size        uint32 `json:"size"`
}

// SubRange is one entry of /etc/subuid or /etc/subgid.
type SubRange struct {
	Start uint32
	Count uint32
}

// ParseSubIDs reads subuid/subgid-format content ("name_or_id:start:count"
// per line) and returns the ranges owned by name or by the numeric id.
// Malformed lines are skipped: one bad line written by an admin must not lock
// every user out, and shadow's own tools skip them too.
func ParseSubIDs(r io.Reader, name string, id uint32) ([]SubRange, error) {
	var out []SubRange
	sid := strconv.FormatUint(uint64(id), 10)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) != 3 || (f[0] != name && f[0] != sid) || f[0] == "" {
			continue
		}
		start, err1 := strconv.ParseUint(f[1], 10, 32)
		count, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 != nil || err2 != nil || count == 0 || start+count > 1<<32 {
			continue
		}
		out = append(out, SubRange{Start: uint32(start), Count: uint32(count)})
	}
	return out, sc.Err()
}

// ParseGetsubids parses the output of shadow's `getsubids [-g] USER`:
// "0: user 100000 65536" per range.
func ParseGetsubids(out string) []SubRange {
	var rs []SubRange
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) != 4 {
			continue
		}
		start, err1 := strconv.ParseUint(f[2], 10, 32)
		count, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil || count == 0 {
			continue
		}
		rs = append(rs, SubRange{Start: uint32(start), Count: uint32(count)})
	}
	return rs
}

// Build turns the caller's id and subordinate ranges into a mapping: 0 is
// the caller, 1.. are the subordinate ranges laid end to end.
func Build(id uint32, subs []SubRange) []Range {
	m := []Range{{ContainerID: 0, HostID: id, Size: 1}}
	next := uint32(1)
	for _, s := range subs {
		if len(m) == 340 { // the kernel's limit on map lines
			break
		}
		m = append(m, Range{ContainerID: next, HostID: s.Start, Size: s.Count})
		next += s.Count
	}
	return m
}

// Size returns how many ids a mapping covers.
func Size(m []Range) uint64 {
	var n uint64
	for _, r := range m {
		n += uint64(r.Size)
	}
	return n
}

// Kind of mapping in use, for `unroot info` and diagnostics.
const (
	KindSubordinate = "subordinate"
	KindSingle      = "single"
)

// Mapping is the mapping chosen for the caller.
type Mapping struct {
	Kind   string  `json:"kind"`
	Reason string  `json:"reason"`
	UIDs   []Range `json:"uids"`
	GIDs   []Range `json:"gids"`
	// Source says where the ranges came from (getsubids, /etc/subuid).
	Source string `json:"source,omitempty"`
}

// Caller describes who is asking for a mapping.
type Caller struct {
	UID, GID uint32
	Name     string
}

// CurrentCaller returns the process's real ids and user name. A user unknown
// to NSS (an LDAP hiccup) still gets a numeric name so subuid lookups by id
// keep working.
func CurrentCaller() Caller {
	c := Caller{UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
	c.Name = strconv.FormatUint(uint64(c.UID), 10)
	if u, err := user.LookupId(c.Name); err == nil {
		c.Name = u.Username
	}
	return c
}

// Files are the subordinate id databases; a variable for tests.
var Files = struct{ SubUID, SubGID string }{"/etc/subuid", "/etc/subgid"}

// Choose picks the mapping for c: getsubids (which also covers `subid: sss`
// in nsswitch.conf), then /etc/subuid and /etc/subgid, then a single id.
func Choose(c Caller) Mapping {
	uids, gids, src := lookupGetsubids(c)
	if len(uids) == 0 || len(gids) == 0 {
		uids, gids, src = lookupFiles(c)
	}
	if len(uids) > 0 && len(gids) > 0 {
		return Mapping{
			Kind:   KindSubordinate,
			Reason: fmt.Sprintf("%s has subordinate ids in %s", c.Name, src),
			UIDs:   Build(c.UID, uids),
			GIDs:   Build(c.GID, gids),
			Source: src,
		}
	}
	return Single(c, fmt.Sprintf("no subordinate id range for %s in %s or %s (ask an admin for one: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 %s)", c.Name, Files.SubUID, Files.SubGID, c.Name))
}

// Single is the mapping that needs no helper: the caller alone, as root.
func Single(c Caller, reason string) Mapping {
	return Mapping{
		Kind:   KindSingle,
		Reason: reason,
		UIDs:   []Range{{0, c.UID, 1}},
		GIDs:   []Range{{0, c.GID, 1}},
	}
}

func lookupFiles(c Caller) (uids, gids []SubRange, src string) {
	read := func(path string, id uint32) []SubRange {
		f, err := os.Open(path)
		if err != nil {
			return nil
		}
		defer f.Close()
		rs, _ := ParseSubIDs(f, c.Name, id)
		return rs
	}
	// Both files are keyed by the user (name or uid), not by the group.
	return read(Files.SubUID, c.UID), read(Files.SubGID, c.UID), Files.SubUID + " and " + Files.SubGID
}

func lookupGetsubids(c Caller) (uids, gids []SubRange, src string) {
	// Only worth a fork when NSS is configured for subids; otherwise the
	// files are the source and reading them is cheaper.
	ns, err := os.ReadFile("/etc/nsswitch.conf")
	if err != nil || !strings.Contains(string(ns), "subid:") {
		return nil, nil, ""
	}
	path, err := exec.LookPath("getsubids")
	if err != nil {
		return nil, nil, ""
	}
	u, err1 := exec.Command(path, c.Name).Output()
	g, err2 := exec.Command(path, "-g", c.Name).Output()
	if err1 != nil || err2 != nil {
		return nil, nil, ""
	}
	return ParseGetsubids(string(u)), ParseGetsubids(string(g)), "getsubids (nsswitch subid)"
}

// Args renders ranges as newuidmap/newgidmap arguments.
func Args(m []Range) []string {
	var a []string
	for _, r := range m {
		a = append(a, strconv.FormatUint(uint64(r.ContainerID), 10), strconv.FormatUint(uint64(r.HostID), 10), strconv.FormatUint(uint64(r.Size), 10))
	}
	return a
}

// Format renders ranges in /proc/PID/uid_map format.
func Format(m []Range) string {
	var b strings.Builder
	for _, r := range m {
		fmt.Fprintf(&b, "%d %d %d\n", r.ContainerID, r.HostID, r.Size)
	}
	return b.String()
}
