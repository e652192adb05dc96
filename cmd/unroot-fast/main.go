// Command unroot-fast is the binary users run as `unroot` (make build
// installs it under that name). It does the commonest command itself, a
// foreground `run --rm` of an image already in the store (package
// fastrun), in a few milliseconds: it links none of containers/image,
// containers/storage or the user-mode network stack, whose package
// initialisation alone costs the full unroot tens of milliseconds per exec.
// Everything else it hands to the full unroot (cmd/unroot), embedded in it
// and exec'd with the same arguments.
package main

import (
	"fmt"
	"os"
	"syscall"

	"github.com/unroot/unroot/container/cinit"
	"github.com/unroot/unroot/container/enginebin"
	"github.com/unroot/unroot/container/fastrun"
	"github.com/unroot/unroot/image/paths"
	"github.com/unroot/unroot/internal/trace"
	"github.com/unroot/unroot/userns"
)

// envNoFast=1 sends every command to the full unroot (to compare, or to
// rule the fast path out when something looks wrong).
const envNoFast = "UNROOT_NO_FAST"

func main() {
	switch os.Getenv(userns.EnvStage) {
	case fastrun.StageMonitor:
		os.Exit(fastrun.MonitorMain())
	case cinit.StageInit, cinit.StageWait, cinit.StageDirect, cinit.StageFresh:
		// Only without an embedded unroot-init (a plain go build).
		os.Exit(cinit.Run())
	case "":
		userns.CloseInherited()
		if os.Getenv(envNoFast) != "1" {
			if code, ok := fastrun.Try(os.Args[1:]); ok {
				trace.Mark("front: exit")
				os.Exit(code)
			}
		}
	}
	runDir := paths.Default().Run
	err := paths.EnsureRunDir(runDir)
	if err == nil {
		var engine string
		if engine, err = enginebin.Path(runDir); err == nil {
			env := os.Environ()
			if os.Getenv(userns.EnvFront) == "" {
				if self, err := os.Executable(); err == nil {
					env = append(env, userns.EnvFront+"="+self)
				}
			}
			if fastrun.WantsNet() {
				// This build has no user-mode network: the one with it
				// runs it fast, or else execs the engine it is told of.
				if fastnet := enginebin.FastnetPath(runDir); fastnet != "" {
					env = append(env, enginebin.EnvEngine+"="+engine)
					if lite := enginebin.LitePath(runDir); lite != "" {
						env = append(env, enginebin.EnvLite+"="+lite)
					}
					err = syscall.Exec(fastnet, os.Args, env)
					fmt.Fprintf(os.Stderr, "unroot: %v\n", err)
					os.Exit(cinit.ExitSetup)
				}
			}
			if startsContainers(os.Args[1:]) && os.Getenv(enginebin.EnvLite) == "" {
				if lite := enginebin.LitePath(runDir); lite != "" {
					env = append(env, enginebin.EnvLite+"="+lite)
				}
			}
			err = syscall.Exec(engine, os.Args, env)
		}
	}
	fmt.Fprintf(os.Stderr, "unroot: %v\n", err)
	os.Exit(cinit.ExitSetup)
}

// startsContainers: the verbs that may start a detached container.
func startsContainers(args []string) bool {
	for _, a := range args {
		switch a {
		case "run", "start", "restart":
			return true
		}
	}
	return false
}
