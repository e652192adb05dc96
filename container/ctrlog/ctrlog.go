// Package ctrlog writes and reads a container's log in the k8s-file format
// (what Podman and CRI-O write): "2006-01-02T15:04:05.999999999Z07:00
// stdout F text", P for a partial line. The detached host process and the
// container's init (which keeps the log itself when it is the container's
// only unroot process) both write it, so it imports nothing but the
// standard library: the init binary must stay small.
package ctrlog

import (
	"bufio"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// MaxSize is the size at which the log is rotated (one old file kept).
const MaxSize int64 = 10 << 20

// Writer appends lines to a log file and rotates it at its maximum size,
// keeping one old file (PATH.1).
type Writer struct {
	mu   sync.Mutex
	f    *os.File
	old  *os.File // copy-and-truncate rotation: the old file, open
	path string   // rename rotation: the log's path
	size int64
	max  int64
	errs []string // the last lines on stderr
	buf  []byte   // the line being written
}

// Open opens the log at path for appending; rotation renames it to
// path.1 and starts a new file.
func Open(path string, max int64) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Writer{path: path, f: f, size: st.Size(), max: max}, nil
}

// OpenFiles is where the container's init finds its log: cur is the log
// (opened read-write and append), old the rotated file (read-write).
// Rotation copies cur into old and truncates cur, so that no directory
// needs to be held open (a directory descriptor in the container's PID 1
// would be a way out of the container for a process that can ptrace it).
func OpenFiles(cur, old *os.File, max int64) (*Writer, error) {
	// Seek, not Stat: an idle container's init keeps no FileInfo's size
	// class (see cinit's fresh.go).
	size, err := cur.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, err
	}
	return &Writer{f: cur, old: old, size: size, max: max}, nil
}

// Close closes the files.
func (l *Writer) Close() {
	l.mu.Lock()
	l.f.Close()
	if l.old != nil {
		l.old.Close()
	}
	l.mu.Unlock()
}

// LastErrors are the last lines written on stderr, joined by "; ".
func (l *Writer) LastErrors() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.errs, "; ")
}

// Copy writes the lines read from r as stream ("stdout" or "stderr")
// until r ends, then closes r. bufSize bounds a line: longer ones are
// written in partial pieces.
func (l *Writer) Copy(stream string, r io.ReadCloser, bufSize int) {
	defer r.Close()
	br := bufio.NewReaderSize(r, bufSize)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			full := line[len(line)-1] == '\n'
			if full {
				line = line[:len(line)-1]
			}
			l.Write(stream, line, !full)
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// Write appends one line (partial: not terminated yet).
func (l *Writer) Write(stream string, line []byte, partial bool) {
	tag := "F"
	if partial {
		tag = "P"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	// One buffer for every line (no garbage per line), up to a long line.
	b := l.buf[:0]
	b = time.Now().AppendFormat(b, time.RFC3339Nano)
	b = append(b, ' ')
	b = append(b, stream...)
	b = append(b, ' ')
	b = append(b, tag...)
	b = append(b, ' ')
	b = append(b, line...)
	b = append(b, '\n')
	if cap(b) <= 64<<10 {
		l.buf = b
	}
	if stream == "stderr" {
		l.errs = append(l.errs, string(line))
		if len(l.errs) > 3 {
			l.errs = l.errs[1:]
		}
	}
	if l.size+int64(len(b)) > l.max && l.size > 0 {
		l.rotate()
	}
	n, _ := l.f.Write(b)
	l.size += int64(n)
}

// rotate: ctr.log -> ctr.log.1, one old file kept.
func (l *Writer) rotate() {
	if l.old == nil {
		if err := os.Rename(l.path, l.path+".1"); err == nil {
			if f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600); err == nil {
				l.f.Close()
				l.f, l.size = f, 0
			}
		}
		return
	}
	// Copy, then truncate: a reader sees the lines in the old file before
	// they leave the current one.
	if l.old.Truncate(0) != nil {
		return
	}
	if _, err := io.Copy(&offsetWriter{f: l.old}, io.NewSectionReader(l.f, 0, l.size)); err != nil {
		return
	}
	if l.f.Truncate(0) == nil {
		l.size = 0
	}
}

// offsetWriter writes at increasing offsets from 0 (the file may have been
// opened with O_APPEND or not: WriteAt does not care about the position).
type offsetWriter struct {
	f   *os.File
	off int64
}

func (w *offsetWriter) Write(p []byte) (int, error) {
	n, err := w.f.WriteAt(p, w.off)
	w.off += int64(n)
	return n, err
}

// Line is one line of a container's log.
type Line struct {
	Time    time.Time
	Stream  string
	Partial bool
	Text    string
}

// Parse parses one k8s-file log line.
func Parse(s string) (Line, bool) {
	ts, rest, ok := strings.Cut(s, " ")
	if !ok {
		return Line{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return Line{}, false
	}
	stream, rest, ok := strings.Cut(rest, " ")
	if !ok {
		return Line{}, false
	}
	tag, text, _ := strings.Cut(rest, " ")
	return Line{Time: t, Stream: stream, Partial: tag == "P", Text: text}, true
}
