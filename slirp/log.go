package slirp

import (
	"bytes"
	"io"
	"strings"
	"sync"
)

// tailLog keeps the last few KiB the helpers wrote, so that a failing
// Setup can say why without making a successful run noisy.
type tailLog struct {
	mu  sync.Mutex
	buf []byte
	fw  io.Writer // optional copy (Options.Log)
}

const tailMax = 4096

func (t *tailLog) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailMax {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-tailMax:]...)
	}
	fw := t.fw
	t.mu.Unlock()
	if fw != nil {
		fw.Write(p)
	}
	return len(p), nil
}

func (t *tailLog) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var keep []string
	for _, l := range strings.Split(string(bytes.TrimSpace(t.buf)), "\n") {
		// slirp4netns API chatter is noise in an error message
		if l == "" || l == "apifd event" || strings.HasPrefix(l, "api_handler:") {
			continue
		}
		keep = append(keep, l)
	}
	if len(keep) > 15 {
		keep = keep[len(keep)-15:]
	}
	return strings.Join(keep, "\n")
}
