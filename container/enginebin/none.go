//go:build !embedengine

package enginebin

var (
	embedded    []byte
	embeddedSum string
)
