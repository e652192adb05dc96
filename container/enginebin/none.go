//go:build !embedengine

package enginebin

var (
	embedded, embeddedLite, embeddedFastnet          []byte
	embeddedSum, embeddedLiteSum, embeddedFastnetSum string
)
