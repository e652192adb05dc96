// Package trace prints the start-up milestones of a container when
// UNROOT_TRACE=1, in milliseconds since the user's command started, across
// the processes it goes through (each passes the origin on in its
// environment): how the start-up benchmark's time is spent.
package trace

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// Env holds the origin, in Unix nanoseconds; "" when tracing is off.
const Env = "UNROOT_TRACE"

var origin = func() int64 {
	v := os.Getenv(Env)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 1 {
		return n
	}
	// The first process: its own start is the origin (the exec itself,
	// before the runtime's start, is not counted).
	n := time.Now().UnixNano()
	os.Setenv(Env, strconv.FormatInt(n, 10))
	return n
}()

// On reports whether tracing is on.
func On() bool { return origin != 0 }

// Mark prints what happened, and when.
func Mark(what string) {
	if origin != 0 {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		fmt.Fprintf(os.Stderr, "trace %7.2f ms [%d, cpu %5.2f ms] %s\n", float64(time.Now().UnixNano()-origin)/1e6, os.Getpid(), float64(cpu)/1e6, what)
	}
}

// Pass returns the environment entry that carries the origin on ("" when
// off), for a process started with an environment of its own.
func Pass() string {
	if origin == 0 {
		return ""
	}
	return Env + "=" + strconv.FormatInt(origin, 10)
}
