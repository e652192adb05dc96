// Command unroot-init is the container's PID 1 (package cinit), built on
// its own so that it starts in a few milliseconds: unroot embeds it (see
// container/initbin) and falls back to re-executing itself without it.
package main

import (
	"os"

	"github.com/unroot/unroot/container/cinit"
)

func main() { os.Exit(cinit.Run()) }
