//go:build !embedengine

package enginebin

var (
	embedded, embeddedLite       []byte
	embeddedSum, embeddedLiteSum string
)
