package cinit

import (
	"bytes"
	"errors"
	"strconv"
	"unsafe"
)

// The fresh init (fresh.go) gets the part of the Process it still needs
// in this small encoding rather than in JSON: encoding/json's type caches
// alone would stay ~100 kB in every idle container. Records are
// "key\x00value\x00"; a list is its key repeated. freshspec_test.go
// checks that every field of Process is either here or set-up only.

// Keys of the fresh spec.
const (
	fkArg, fkEnv, fkCwd, fkUser, fkCap    = "arg", "env", "cwd", "user", "cap"
	fkTty, fkSingleID, fkOOM, fkNetBypass = "tty", "single-id", "oom", "net-bypass"
	fkOwnLog, fkLogMax, fkMemEvents       = "own-log", "log-max", "mem-events"
	fkNetExit, fkForward, fkExecFD        = "net-exit", "forward", "exec-fd"
	fkMemLimit                            = "mem-limit"
	// The process as the setup found it (Process.resolved).
	fkPath, fkUID, fkGID, fkGroup, fkHome = "path", "uid", "gid", "group", "home"
)

func encodeFresh(p *Process) []byte {
	var b bytes.Buffer
	put := func(k, v string) {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(v)
		b.WriteByte(0)
	}
	flag := func(k string, v bool) {
		if v {
			put(k, "1")
		}
	}
	for _, a := range p.Args {
		put(fkArg, a)
	}
	for _, e := range p.Env {
		put(fkEnv, e)
	}
	put(fkCwd, p.Cwd)
	put(fkUser, p.User)
	for _, c := range p.Caps {
		put(fkCap, c)
	}
	flag(fkTty, p.Tty)
	flag(fkSingleID, p.SingleID)
	if p.OOMScoreAdj != nil {
		put(fkOOM, strconv.Itoa(*p.OOMScoreAdj))
	}
	flag(fkNetBypass, p.NetBypass)
	flag(fkOwnLog, p.OwnLog)
	put(fkLogMax, strconv.FormatInt(p.LogMax, 10))
	flag(fkMemEvents, p.MemEvents)
	flag(fkNetExit, p.NetExit)
	for _, f := range p.Forward {
		put(fkForward, f.Addr)
	}
	put(fkExecFD, strconv.Itoa(p.ExecFD))
	put(fkMemLimit, strconv.FormatInt(p.MemLimit, 10))
	if r := p.resolved; r != nil {
		put(fkPath, r.path)
		put(fkUID, strconv.Itoa(r.uid))
		put(fkGID, strconv.Itoa(r.gid))
		for _, g := range r.groups {
			put(fkGroup, strconv.Itoa(g))
		}
		put(fkHome, r.home)
	}
	return b.Bytes()
}

func decodeFresh(b []byte) (*Process, error) {
	// One allocation for the process and what the setup resolved, and
	// one for its lists, rounded up to a power of two: every size class
	// the fresh init allocates from keeps a span, and the span's pointer
	// bitmap, touched for good (~8 kB each in every idle container), and
	// those are the classes the runtime's own objects already use.
	pr := &struct {
		p Process
		r resolvedProcess
	}{}
	p := &pr.p
	// The strings share b: every allocation of a distinct size stays
	// touched in the idle init (see fresh.go).
	next := func() (string, bool) {
		v, rest, ok := bytes.Cut(b, []byte{0})
		b = rest
		if len(v) == 0 {
			return "", ok
		}
		return unsafe.String(&v[0], len(v)), ok
	}
	// The lists share one array too.
	var nArg, nEnv, nCap int
	for rest := b; len(rest) > 0; {
		k, r, _ := bytes.Cut(rest, []byte{0})
		_, rest, _ = bytes.Cut(r, []byte{0})
		switch string(k) {
		case fkArg:
			nArg++
		case fkEnv:
			nEnv++
		case fkCap:
			nCap++
		}
	}
	c := 16
	for c < nArg+nEnv+nCap {
		c *= 2
	}
	lists := make([]string, nArg+nEnv+nCap, c)
	list := func(n int) []string {
		if n == 0 {
			return nil
		}
		l := lists[:0:n]
		lists = lists[n:]
		return l
	}
	p.Args, p.Env, p.Caps = list(nArg), list(nEnv), list(nCap)
	res := func() *resolvedProcess {
		p.resolved = &pr.r
		return p.resolved
	}
	for len(b) > 0 {
		k, ok := next()
		s, ok2 := next()
		if !ok || !ok2 {
			return nil, errors.New("truncated spec")
		}
		var err error
		switch k {
		case fkArg:
			p.Args = append(p.Args, s)
		case fkEnv:
			p.Env = append(p.Env, s)
		case fkCwd:
			p.Cwd = s
		case fkUser:
			p.User = s
		case fkCap:
			p.Caps = append(p.Caps, s)
		case fkTty:
			p.Tty = true
		case fkSingleID:
			p.SingleID = true
		case fkOOM:
			n, e := strconv.Atoi(s)
			p.OOMScoreAdj, err = &n, e
		case fkNetBypass:
			p.NetBypass = true
		case fkOwnLog:
			p.OwnLog = true
		case fkLogMax:
			p.LogMax, err = strconv.ParseInt(s, 10, 64)
		case fkMemEvents:
			p.MemEvents = true
		case fkNetExit:
			p.NetExit = true
		case fkForward:
			p.Forward = append(p.Forward, Forward{Addr: s})
		case fkExecFD:
			p.ExecFD, err = strconv.Atoi(s)
		case fkMemLimit:
			p.MemLimit, err = strconv.ParseInt(s, 10, 64)
		case fkPath:
			res().path = s
		case fkUID:
			res().uid, err = strconv.Atoi(s)
		case fkGID:
			res().gid, err = strconv.Atoi(s)
		case fkGroup:
			var g int
			g, err = strconv.Atoi(s)
			res().groups = append(res().groups, g)
		case fkHome:
			res().home = s
		default:
			return nil, errors.New("unknown key " + strconv.Quote(k))
		}
		if err != nil {
			return nil, err
		}
	}
	return p, nil
}
