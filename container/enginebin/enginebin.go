// Package enginebin provides the full unroot (cmd/unroot), embedded at
// build time (make build) into the small user-facing binary (cmd/unroot-fast)
// and installed once per user and build under the run directory. A second
// build of it without the embedded gvisor stack (tag unroot_nogvisor), the
// "lite" engine, is the detached host process of containers that do not
// use that stack: gvisor-tap-vsock pulls in gopacket, whose lookup tables,
// filled at start-up, are ~7 MB of every process's memory.
//
// The user-facing binary itself comes in two builds: the one users run,
// as small as it can be (no user-mode network: tag unroot_tiny), and
// "fastnet", with the network, which the first embeds and execs for a
// `run --rm` with a user-mode network; fastnet finds the engines the first
// installed through EnvEngine and EnvLite.
package enginebin

import (
	"errors"
	"os"

	"github.com/unroot/unroot/container/embedbin"
)

// EnvLite holds the path of the installed lite engine, for the full
// unroot to start detached containers with.
const EnvLite = "_UNROOT_ENGINE_LITE"

// EnvEngine holds the path of the installed full unroot, for fastnet.
const EnvEngine = "_UNROOT_ENGINE"

// Path returns the full unroot to exec.
func Path(runDir string) (string, error) {
	if len(embedded) == 0 {
		if p := os.Getenv(EnvEngine); p != "" {
			return p, nil
		}
		return "", errors.New("this unroot was built without its engine (a plain go build of cmd/unroot-fast): build it with make build, or use go build ./cmd/unroot")
	}
	return embedbin.Path(embedded, embeddedSum, runDir, "unroot-engine")
}

// LitePath returns the full unroot without gvisor, "" when there is none.
func LitePath(runDir string) string {
	if len(embeddedLite) == 0 {
		return os.Getenv(EnvLite)
	}
	p, err := embedbin.Path(embeddedLite, embeddedLiteSum, runDir, "unroot-engine-lite")
	if err != nil {
		return ""
	}
	return p
}

// FastnetPath returns the user-facing binary with the user-mode network,
// "" when there is none.
func FastnetPath(runDir string) string {
	if len(embeddedFastnet) == 0 {
		return ""
	}
	p, err := embedbin.Path(embeddedFastnet, embeddedFastnetSum, runDir, "unroot-fastnet")
	if err != nil {
		return ""
	}
	return p
}
