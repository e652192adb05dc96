package cinit

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// DefaultCaps is Docker's default capability set.
var DefaultCaps = []string{
	"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID",
	"SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL",
	"AUDIT_WRITE",
}

// capNames are the capabilities by number: an array, not a map, which
// would be built in every init process at start-up (see fresh.go on why
// each allocation of the init counts).
var capNames = [...]string{
	unix.CAP_CHOWN:              "CHOWN",
	unix.CAP_DAC_OVERRIDE:       "DAC_OVERRIDE",
	unix.CAP_DAC_READ_SEARCH:    "DAC_READ_SEARCH",
	unix.CAP_FOWNER:             "FOWNER",
	unix.CAP_FSETID:             "FSETID",
	unix.CAP_KILL:               "KILL",
	unix.CAP_SETGID:             "SETGID",
	unix.CAP_SETUID:             "SETUID",
	unix.CAP_SETPCAP:            "SETPCAP",
	unix.CAP_LINUX_IMMUTABLE:    "LINUX_IMMUTABLE",
	unix.CAP_NET_BIND_SERVICE:   "NET_BIND_SERVICE",
	unix.CAP_NET_BROADCAST:      "NET_BROADCAST",
	unix.CAP_NET_ADMIN:          "NET_ADMIN",
	unix.CAP_NET_RAW:            "NET_RAW",
	unix.CAP_IPC_LOCK:           "IPC_LOCK",
	unix.CAP_IPC_OWNER:          "IPC_OWNER",
	unix.CAP_SYS_MODULE:         "SYS_MODULE",
	unix.CAP_SYS_RAWIO:          "SYS_RAWIO",
	unix.CAP_SYS_CHROOT:         "SYS_CHROOT",
	unix.CAP_SYS_PTRACE:         "SYS_PTRACE",
	unix.CAP_SYS_PACCT:          "SYS_PACCT",
	unix.CAP_SYS_ADMIN:          "SYS_ADMIN",
	unix.CAP_SYS_BOOT:           "SYS_BOOT",
	unix.CAP_SYS_NICE:           "SYS_NICE",
	unix.CAP_SYS_RESOURCE:       "SYS_RESOURCE",
	unix.CAP_SYS_TIME:           "SYS_TIME",
	unix.CAP_SYS_TTY_CONFIG:     "SYS_TTY_CONFIG",
	unix.CAP_MKNOD:              "MKNOD",
	unix.CAP_LEASE:              "LEASE",
	unix.CAP_AUDIT_WRITE:        "AUDIT_WRITE",
	unix.CAP_AUDIT_CONTROL:      "AUDIT_CONTROL",
	unix.CAP_SETFCAP:            "SETFCAP",
	unix.CAP_MAC_OVERRIDE:       "MAC_OVERRIDE",
	unix.CAP_MAC_ADMIN:          "MAC_ADMIN",
	unix.CAP_SYSLOG:             "SYSLOG",
	unix.CAP_WAKE_ALARM:         "WAKE_ALARM",
	unix.CAP_BLOCK_SUSPEND:      "BLOCK_SUSPEND",
	unix.CAP_AUDIT_READ:         "AUDIT_READ",
	unix.CAP_PERFMON:            "PERFMON",
	unix.CAP_BPF:                "BPF",
	unix.CAP_CHECKPOINT_RESTORE: "CHECKPOINT_RESTORE",
}

// capNumber is the number of the capability named c, or -1.
func capNumber(c string) int {
	for n, name := range capNames {
		if name == c {
			return n
		}
	}
	return -1
}

func canonCap(c string) (string, error) {
	c = strings.TrimPrefix(strings.ToUpper(c), "CAP_")
	if c == "ALL" {
		return c, nil
	}
	if capNumber(c) < 0 {
		return "", fmt.Errorf("unknown capability %q (names as in capabilities(7), e.g. NET_ADMIN or CAP_NET_ADMIN)", c)
	}
	return c, nil
}

// Capabilities applies --cap-add/--cap-drop to Docker's default set.
func Capabilities(add, drop []string) ([]string, error) {
	set := map[string]bool{}
	for _, c := range DefaultCaps {
		set[c] = true
	}
	for _, d := range drop {
		c, err := canonCap(d)
		if err != nil {
			return nil, err
		}
		if c == "ALL" {
			set = map[string]bool{}
			continue
		}
		delete(set, c)
	}
	for _, a := range add {
		c, err := canonCap(a)
		if err != nil {
			return nil, err
		}
		if c == "ALL" {
			for _, k := range capNames {
				if k != "" {
					set[k] = true
				}
			}
			continue
		}
		set[c] = true
	}
	var out []string
	for _, k := range capNames {
		if k != "" && set[k] {
			out = append(out, k)
		}
	}
	return out, nil
}

// restrictCaps sets the calling thread's permitted and effective sets to
// permitted and its inheritable set to inheritable (the bounding set is
// dropped earlier, by dropBounding). Capabilities are per thread (see
// threads.go): the process is forked from a thread that has them; a root
// process's exec then yields inheritable | bounding, exactly the
// container's set.
func restrictCaps(permitted, inheritable []string) error {
	var data [2]unix.CapUserData
	for _, c := range permitted {
		if n := capNumber(c); n >= 0 {
			data[n/32].Permitted |= 1 << uint(n%32)
		}
	}
	for _, c := range inheritable {
		if n := capNumber(c); n >= 0 {
			data[n/32].Inheritable |= 1 << uint(n%32)
		}
	}
	for i := range data {
		data[i].Effective = data[i].Permitted
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	if err := capsetThreads(&hdr, &data[0]); err != nil {
		return fmt.Errorf("setting capabilities: %w", err)
	}
	// Ambient capabilities would survive into a non-root exec; Docker gives
	// non-root processes none.
	_ = threadsSyscall(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0)
	return nil
}
