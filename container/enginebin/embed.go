//go:build embedengine

package enginebin

import (
	_ "embed"
	"strings"
)

// Built by `make build` before the user-facing binary.
//
//go:embed unroot-engine
var embedded []byte

//go:embed unroot-engine.sha256
var embeddedSumFile string

var embeddedSum = strings.Fields(embeddedSumFile + " ")[0]

//go:embed unroot-engine-lite
var embeddedLite []byte

//go:embed unroot-engine-lite.sha256
var embeddedLiteSumFile string

var embeddedLiteSum = strings.Fields(embeddedLiteSumFile + " ")[0]

//go:embed unroot-fastnet
var embeddedFastnet []byte

//go:embed unroot-fastnet.sha256
var embeddedFastnetSumFile string

var embeddedFastnetSum = strings.Fields(embeddedFastnetSumFile + " ")[0]
