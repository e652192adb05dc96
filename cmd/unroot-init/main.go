// Command unroot-init is the container's PID 1 (package cinit), built on
// its own so that it starts in a few milliseconds: unroot embeds it (see
// container/initbin) and falls back to re-executing itself without it.
package main

import (
	"os"
	"runtime"

	"github.com/unroot/unroot/container/cinit"
	"github.com/unroot/unroot/userns"
)

// The main goroutine runs on the main thread, the one the monitor forked:
// the init's parent-death signal is that thread's, and the init of a
// container it keeps alone drops it from there (cinit's detached.go).
// The fresh init does not lock it: it changes that and the other
// per-thread state on every thread (cinit's threads.go).
func init() {
	if os.Getenv(userns.EnvStage) != cinit.StageFresh {
		runtime.LockOSThread()
	}
}

func main() { os.Exit(cinit.Run()) }
