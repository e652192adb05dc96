//go:build embedinit

package initbin

import (
	_ "embed"
	"strings"
)

// Built by `make build` before unroot itself.
//
//go:embed unroot-init
var embedded []byte

//go:embed unroot-init.sha256
var embeddedSumFile string

var embeddedSum = strings.Fields(embeddedSumFile + " ")[0]
