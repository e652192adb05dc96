package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/docker/go-units"

	"github.com/unroot/unroot/cgroupv2"
	"github.com/unroot/unroot/container"
)

// runningCgroup finds a running container and its own cgroup.
func runningCgroup(d container.Dirs, ref string) (*container.Config, *cgroupv2.Cgroup, error) {
	c, err := d.Find(ref)
	if err != nil {
		return nil, nil, err
	}
	st := d.LoadState(c.ID)
	if st == nil || st.Status != "running" || st.InitPid == 0 || !container.Alive(st.Pid, st.PidStart) {
		return c, nil, fmt.Errorf("container %s is not running", c.Name)
	}
	cg, err := cgroupv2.Of(st.InitPid)
	if err != nil {
		return c, nil, fmt.Errorf("container %s: %w", c.Name, err)
	}
	return c, cg, nil
}

func cmdStats(g *globals, args []string) error {
	fs := newFlags("stats")
	noStream := fs.Bool("no-stream", false, "print one sample and exit")
	if err := parse(fs, args); err != nil {
		return err
	}
	d := dirs(g)
	refs := fs.Args()
	if len(refs) == 0 {
		cs, err := d.List()
		if err != nil {
			return err
		}
		for _, c := range cs {
			if st := d.LoadState(c.ID); st != nil && st.Status == "running" {
				refs = append(refs, c.ID)
			}
		}
	}
	type target struct {
		name, id string
		cg       *cgroupv2.Cgroup
		prev     uint64
	}
	var ts []*target
	for _, r := range refs {
		c, cg, err := runningCgroup(d, r)
		if err != nil {
			if len(fs.Args()) > 0 {
				return err
			}
			continue // listing all: skip the ones without a cgroup
		}
		ts = append(ts, &target{name: c.Name, id: c.ID, cg: cg})
	}
	if len(ts) == 0 && len(fs.Args()) == 0 {
		fmt.Println("no running container with a cgroup of its own (unroot gives one to containers started with a resource limit)")
		return nil
	}
	sample := func() {
		for _, t := range ts {
			if s, err := t.cg.Stats(); err == nil {
				t.prev = s.CPUUsageUsec
			}
		}
	}
	sample()
	interval := time.Second
	for {
		time.Sleep(interval)
		w := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
		fmt.Fprintln(w, "CONTAINER ID\tNAME\tCPU %\tMEM USAGE / LIMIT\tMEM %\tPIDS\tBLOCK I/O")
		for _, t := range ts {
			s, err := t.cg.Stats()
			if err != nil {
				fmt.Fprintf(w, "%s\t%s\t--\t--\t--\t--\t--\n", t.id[:12], t.name)
				continue
			}
			cpu := float64(s.CPUUsageUsec-t.prev) / float64(interval.Microseconds()) * 100
			t.prev = s.CPUUsageUsec
			limit := t.cg.Limit("memory.max")
			lim, pct := "unlimited", "--"
			if limit > 0 {
				lim = units.BytesSize(float64(limit))
				pct = fmt.Sprintf("%.2f%%", float64(s.MemoryCurrent)/float64(limit)*100)
			}
			var rb, wb uint64
			for _, io := range s.IO {
				rb += io["rbytes"]
				wb += io["wbytes"]
			}
			fmt.Fprintf(w, "%s\t%s\t%.2f%%\t%s / %s\t%s\t%d\t%s / %s\n", t.id[:12], t.name, cpu,
				units.BytesSize(float64(s.MemoryCurrent)), lim, pct, s.PidsCurrent,
				units.HumanSize(float64(rb)), units.HumanSize(float64(wb)))
		}
		w.Flush()
		if *noStream {
			return nil
		}
		fmt.Println()
	}
}

func cmdUpdate(g *globals, args []string) error {
	fs := newFlags("update")
	lim := addLimitFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 1 {
		return usageError{"update", fmt.Errorf("requires at least 1 argument: CONTAINER")}
	}
	l, err := lim.parse(fs)
	if err != nil {
		return usageError{"update", err}
	}
	if !l.Any() {
		return usageError{"update", errors.New("give at least one limit to change (--memory, --cpus, --pids-limit, ...)")}
	}
	d := dirs(g)
	var failed []string
	for _, ref := range fs.Args() {
		c, cg, err := runningCgroup(d, ref)
		if err == nil {
			err = cg.Update(l)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "unroot: %v\n", err)
			failed = append(failed, ref)
			continue
		}
		fmt.Println(c.ID)
	}
	if len(failed) > 0 {
		return fmt.Errorf("not updated: %s", strings.Join(failed, ", "))
	}
	return nil
}
