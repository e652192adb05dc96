// Command unroot-init is the container's PID 1 (package cinit), built on
// its own so that it starts in a few milliseconds: unroot embeds it (see
// container/initbin) and falls back to re-executing itself without it.
package main

import (
	"os"
	"runtime"

	"github.com/unroot/unroot/container/cinit"
)

// The main goroutine runs on the main thread, the one the monitor forked:
// the init's parent-death signal is that thread's, and the init of a
// container it keeps alone drops it from there (cinit's detached.go).
func init() { runtime.LockOSThread() }

func main() { os.Exit(cinit.Run()) }
