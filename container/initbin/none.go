//go:build !embedinit

package initbin

// Without the embedinit tag (a plain `go build`) there is no separate init
// binary: unroot re-executes itself for the container's init.
var (
	embedded    []byte
	embeddedSum string
)
