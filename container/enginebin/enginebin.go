// Package enginebin provides the full unroot (cmd/unroot), embedded at
// build time (make build) into the small user-facing binary (cmd/unroot-fast)
// and installed once per user and build under the run directory.
package enginebin

import (
	"errors"

	"github.com/unroot/unroot/container/embedbin"
)

// Path returns the full unroot to exec.
func Path(runDir string) (string, error) {
	if len(embedded) == 0 {
		return "", errors.New("this unroot was built without its engine (a plain go build of cmd/unroot-fast): build it with make build, or use go build ./cmd/unroot")
	}
	return embedbin.Path(embedded, embeddedSum, runDir, "unroot-engine")
}
