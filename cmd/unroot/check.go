package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/unroot/unroot/idmap"
	"github.com/unroot/unroot/userns"
)

// cmdCheck tests every prerequisite of running containers as this user,
// says what is missing and how to fix it, and exits 1 when something
// blocks `unroot run`.
func cmdCheck(g *globals, args []string) error {
	fs := newFlags("check")
	noProbe := fs.Bool("no-probe", false, "only read the configuration; do not try a user namespace")
	asJSON := fs.Bool("json", false, "print the findings as JSON")
	profile := fs.Bool("apparmor-profile", false, "print the AppArmor profile for this binary (to install in /etc/apparmor.d/unroot) and exit")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError{"check", fmt.Errorf("takes no arguments")}
	}
	facts := userns.GatherFacts(mapping(), idmap.CurrentCaller().Name)
	if *profile {
		fmt.Print(userns.AppArmorProfile(facts.Binary))
		return nil
	}
	facts.XDGRuntimeDir = os.Getenv("XDG_RUNTIME_DIR")
	facts.RunDir = g.paths.Run
	facts.StorageDir = g.store.GraphRoot
	facts.StorageFS = userns.StorageFS(g.store.GraphRoot)
	if !*noProbe {
		facts.Probe = userns.Probe(facts.Mapping)
	}
	findings := userns.Evaluate(facts)
	blocking := userns.Blocking(findings)
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			Ready    bool             `json:"ready"`
			Findings []userns.Finding `json:"findings"`
		}{len(blocking) == 0, findings}); err != nil {
			return err
		}
	} else {
		c := idmap.CurrentCaller()
		fmt.Printf("unroot %s: checking what user %s (uid %d) needs to run containers (kernel %s)\n\n", version, c.Name, c.UID, facts.Kernel)
		width := 0
		for _, f := range findings {
			if len(f.Check) > width {
				width = len(f.Check)
			}
		}
		warns := 0
		for _, f := range findings {
			fmt.Printf("%-8s %-*s  %s\n", f.Status, width, f.Check, f.Detail)
			if f.Fix != "" {
				fmt.Printf("%-8s %-*s  fix: %s\n", "", width, "", f.Fix)
			}
			if f.Status == userns.StatusWarn {
				warns++
			}
		}
		fmt.Println()
		switch {
		case len(blocking) > 0:
			var names []string
			for _, b := range blocking {
				names = append(names, b.Check)
			}
			fmt.Printf("NOT READY: %s must be fixed before `unroot run` works.\n", strings.Join(names, ", "))
		case warns > 0:
			fmt.Printf("ready, with %d warning(s).\n", warns)
		default:
			fmt.Println("ready.")
		}
	}
	if len(blocking) > 0 {
		return exitError{1}
	}
	return nil
}
