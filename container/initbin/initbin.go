// Package initbin provides the executable the container's init runs from:
// the small unroot-init binary embedded at build time (make build), cached
// once per user under the run directory, or else unroot itself.
package initbin

import (
	"github.com/unroot/unroot/container/embedbin"
)

// Path returns the program to exec for the container's init. runDir is the
// user's private run directory; self is unroot's own path, the fallback
// when no init binary is embedded (a plain `go build`).
func Path(runDir, self string) string {
	if len(embedded) == 0 {
		return self
	}
	p, err := embedbin.Path(embedded, embeddedSum, runDir, "unroot-init")
	if err != nil {
		return self
	}
	return p
}
