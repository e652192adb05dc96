package slirp

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"

	rkslirp "github.com/rootless-containers/rootlesskit/v3/pkg/network/slirp4netns"
)

// Driver names a user-mode network stack.
type Driver string

const (
	// DriverPasta is pasta from the passt project (helper binary, apt: passt).
	DriverPasta Driver = "pasta"
	// DriverSlirp4netns is slirp4netns (helper binary, apt: slirp4netns).
	DriverSlirp4netns Driver = "slirp4netns"
	// DriverGvisor is gvisor-tap-vsock, embedded in this binary (no helper).
	DriverGvisor Driver = "gvisor"
)

// pastaMinDate is the oldest passt release RootlessKit's pasta driver works
// with (older ones stay in the foreground when not started from a TTY).
const pastaMinDate = 20230625

// Choose resolves a --network mode to a driver. mode is "auto" (or ""),
// "pasta", "slirp4netns" or "gvisor" ("gvisor-tap-vsock" is accepted too).
//
// auto: pasta if installed and new enough, else slirp4netns if installed,
// else the embedded gvisor-tap-vsock. reason says why, for --debug output.
// A forced helper that is missing (or unusable) is an error naming the
// apt package to install.
func Choose(mode string) (Driver, string, error) {
	switch mode {
	case "", "auto":
		var why []string
		if err := checkPasta(); err == nil {
			return DriverPasta, "auto: pasta is installed", nil
		} else {
			why = append(why, err.Error())
		}
		if err := checkSlirp4netns(); err == nil {
			return DriverSlirp4netns, "auto: " + strings.Join(why, "; ") + "; using slirp4netns", nil
		} else {
			why = append(why, err.Error())
		}
		return DriverGvisor, "auto: " + strings.Join(why, "; ") + "; using the embedded gvisor-tap-vsock", nil
	case "pasta":
		if err := checkPasta(); err != nil {
			return "", "", fmt.Errorf("network mode pasta: %w", err)
		}
		return DriverPasta, "forced by --network=pasta", nil
	case "slirp4netns":
		if err := checkSlirp4netns(); err != nil {
			return "", "", fmt.Errorf("network mode slirp4netns: %w", err)
		}
		return DriverSlirp4netns, "forced by --network=slirp4netns", nil
	case "gvisor", "gvisor-tap-vsock":
		return DriverGvisor, "forced by --network=" + mode, nil
	default:
		return "", "", fmt.Errorf("unknown network mode %q (want auto, pasta, slirp4netns, gvisor, host or none)", mode)
	}
}

// slirpFeatures runs `slirp4netns --help` once per process and PATH: a
// run asks for it when choosing the driver and again when starting it.
func slirpFeatures() (*rkslirp.Features, error) {
	type result struct {
		f   *rkslirp.Features
		err error
	}
	key := os.Getenv("PATH")
	if v, ok := slirpFeaturesMemo.Load(key); ok {
		r := v.(result)
		return r.f, r.err
	}
	var f *rkslirp.Features
	bin, err := exec.LookPath("slirp4netns")
	if err == nil {
		if p, ok := cachedProbe(bin); ok {
			f, err = p.Features, probeErr(p)
		} else {
			f, err = rkslirp.DetectFeatures(bin)
			rememberProbe(bin, err, f)
		}
	}
	if err == nil && f == nil {
		err = errors.New("no features recorded")
	}
	slirpFeaturesMemo.Store(key, result{f, err})
	return f, err
}

var slirpFeaturesMemo sync.Map

func checkSlirp4netns() error {
	if _, err := exec.LookPath("slirp4netns"); err != nil {
		return errors.New("slirp4netns is not installed (apt-get install slirp4netns)")
	}
	if _, err := slirpFeatures(); err != nil {
		return fmt.Errorf("slirp4netns is unusable: %v (apt-get install slirp4netns, v0.4.0 or later)", err)
	}
	return nil
}

var pastaDateRE = regexp.MustCompile(`(20[0-9]{2})[_.-]?([01][0-9])[_.-]?([0-3][0-9])`)

// checkPasta runs pasta's --version (and --help) once per process and
// PATH, and once per pasta binary and boot (probe.go).
func checkPasta() error {
	key := os.Getenv("PATH")
	if v, ok := pastaMemo.Load(key); ok {
		err, _ := v.(error)
		return err
	}
	var err error
	bin, lerr := exec.LookPath("pasta")
	if lerr != nil {
		err = errors.New("pasta is not installed (apt-get install passt)")
	} else if p, ok := cachedProbe(bin); ok {
		err = probeErr(p)
	} else {
		err = checkPastaNow(bin)
		rememberProbe(bin, err, nil)
	}
	pastaMemo.Store(key, err)
	return err
}

var pastaMemo sync.Map

func checkPastaNow(bin string) error {
	out, _ := exec.Command(bin, "--version").CombinedOutput()
	first, _, _ := strings.Cut(string(out), "\n")
	if m := pastaDateRE.FindStringSubmatch(first); m != nil {
		d, _ := strconv.Atoi(m[1] + m[2] + m[3])
		if d < pastaMinDate {
			return fmt.Errorf("pasta is too old (%q; need passt 2023_06_25 or later: upgrade the passt package)", strings.TrimSpace(first))
		}
		return nil
	}
	// No date in the version (Debian 12 prints "pasta unknown version").
	// Releases before 2023_06_25 stay in the foreground unless started from
	// a TTY, which RootlessKit's driver cannot handle; their --help says so.
	help, _ := exec.Command(bin, "--help").CombinedOutput()
	if strings.Contains(string(help), "background if started from a TTY") {
		return fmt.Errorf("pasta is too old (%q; need passt 2023_06_25 or later: upgrade the passt package)", strings.TrimSpace(first))
	}
	return nil
}

// ParseNetwork parses the value of --net/--network:
//
//	MODE[:OPTION[,OPTION...]]
//
// MODE is auto (aliases: "", bridge, default, slirp, private), pasta,
// slirp4netns, gvisor, none or host. The only OPTION is Podman's
// port_handler=HANDLER: rootlesskit or builtin (RootlessKit's builtin
// driver, the default), or the network driver's own forwarding: native,
// slirp4netns (keeps the client's source address) or gvisor. It returns
// the mode and the port driver for Options.PortDriver ("" = default).
func ParseNetwork(s string) (mode, portDriver string, err error) {
	mode, opts, hasOpts := strings.Cut(s, ":")
	switch mode {
	case "", "auto", "bridge", "default", "slirp", "private":
		mode = "auto"
	case "none", "host", "pasta", "slirp4netns", "gvisor":
	default:
		return "", "", fmt.Errorf("unknown network %q: use auto, pasta, slirp4netns, gvisor, none or host", mode)
	}
	if !hasOpts {
		return mode, "", nil
	}
	if mode == "none" || mode == "host" {
		return "", "", fmt.Errorf("network %q takes no options", mode)
	}
	for _, o := range strings.Split(opts, ",") {
		k, v, _ := strings.Cut(o, "=")
		if k != "port_handler" {
			return "", "", fmt.Errorf("unknown network option %q (the only one is port_handler=builtin|native)", o)
		}
		switch v {
		case "rootlesskit", PortBuiltin:
			portDriver = PortBuiltin
		case PortNative, string(DriverSlirp4netns), string(DriverGvisor):
			if mode == string(DriverPasta) || (v != PortNative && v != mode) {
				return "", "", fmt.Errorf("port_handler=%s does not go with --network=%s", v, mode)
			}
			portDriver = PortNative
		default:
			return "", "", fmt.Errorf("unknown port_handler %q (want builtin or native)", v)
		}
	}
	return mode, portDriver, nil
}
