package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"

	"github.com/docker/go-units"
	"go.podman.io/storage"
	"golang.org/x/sys/unix"

	"github.com/unroot/unroot/container"
	"github.com/unroot/unroot/image"
)

func dirs(g *globals) container.Dirs {
	return container.Dirs{Data: g.paths.Data, Run: g.paths.Run}
}

// createContainer records a new container (config.json), with a unique
// name.
func createContainer(d container.Dirs, s *container.Spec) (*container.Config, error) {
	unlock, err := d.LockAll()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if s.Name == "" {
		s.Name = d.GenerateName()
	} else if d.NameInUse(s.Name) {
		return nil, fmt.Errorf("the container name %q is already in use: choose another --name or remove that container (unroot rm %s)", s.Name, s.Name)
	}
	c := &container.Config{ID: s.ID, Name: s.Name, Image: s.Image, Created: time.Now(), Spec: s}
	// Registry passwords are not kept: a recorded container no longer pulls.
	saved := *s
	saved.Registry.Creds = ""
	rec := *c
	rec.Spec = &saved
	if err := d.SaveConfig(&rec); err != nil {
		return nil, fmt.Errorf("recording the container: %w", err)
	}
	return c, nil
}

// psRow is what ps --format templates see.
type psRow struct {
	ID, Image, Command, CreatedAt, RunningFor, Status, State, Names, Ports, Labels string
	Pid                                                                            int
	ExitCode                                                                       int
}

// labelsOf are the container's labels: the image's merged with the
// user's once it has started, else the user's.
func labelsOf(c *container.Config) map[string]string {
	if c.Process != nil && c.Process.Labels != nil {
		return c.Process.Labels
	}
	return c.Spec.Labels
}

// labelText is Docker's {{.Labels}}: k=v pairs, sorted, comma-separated.
func labelText(l map[string]string) string {
	var out []string
	for k, v := range l {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func statusText(st *container.State, now time.Time) string {
	switch st.Status {
	case container.StatusRunning:
		return "Up " + units.HumanDuration(now.Sub(st.StartedAt))
	case container.StatusCreated:
		return "Created"
	case container.StatusRestarting:
		return fmt.Sprintf("Restarting (%d) %s ago", st.ExitCode, units.HumanDuration(now.Sub(st.FinishedAt)))
	}
	if st.Unknown {
		return "Exited (unknown)"
	}
	ago := ""
	if !st.FinishedAt.IsZero() {
		ago = " " + units.HumanDuration(now.Sub(st.FinishedAt)) + " ago"
	}
	return fmt.Sprintf("Exited (%d)%s", st.ExitCode, ago)
}

func commandOf(c *container.Config) string {
	if c.Process != nil {
		return strings.Join(c.Process.Args, " ")
	}
	s := c.Spec
	var a []string
	if s.Entrypoint != nil && *s.Entrypoint != "" {
		a = append(a, *s.Entrypoint)
	}
	a = append(a, s.Cmd...)
	return strings.Join(a, " ")
}

func portsOf(s *container.Spec) string {
	var out []string
	for _, p := range s.Publish {
		ip := p.HostIP
		if ip == "" {
			ip = "0.0.0.0"
		}
		out = append(out, fmt.Sprintf("%s:%d->%d/%s", ip, p.HostPort, p.ContainerPort, p.Proto))
	}
	return strings.Join(out, ", ")
}

func cmdPs(g *globals, args []string) error {
	fs := newFlags("ps")
	all := fs.BoolP("all", "a", false, "show all containers (default shows just running)")
	quiet := fs.BoolP("quiet", "q", false, "only display container IDs")
	noTrunc := fs.Bool("no-trunc", false, "do not truncate output")
	format := fs.String("format", "", "format the output with a Go template, e.g. '{{.ID}} {{.Names}} {{.Status}}'")
	filters := fs.StringArrayP("filter", "f", nil, "filter output: name=REGEX, status=STATUS, id=PREFIX, label=KEY or label=KEY=VALUE")
	last := fs.IntP("last", "n", -1, "show n last created containers (includes all states)")
	latest := fs.BoolP("latest", "l", false, "show the latest created container (includes all states)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *latest {
		*last = 1
	}
	type filter struct{ key, val string }
	var fl []filter
	for _, f := range *filters {
		k, v, ok := strings.Cut(f, "=")
		switch {
		case !ok:
			return usageError{"ps", fmt.Errorf("bad filter %q: use KEY=VALUE", f)}
		case k == "name":
			if _, err := regexp.Compile(v); err != nil {
				return usageError{"ps", fmt.Errorf("filter name=%s: %v", v, err)}
			}
		case k == "status":
			switch v {
			case "created", "running", "exited", "paused", "restarting", "removing", "dead":
			default:
				return usageError{"ps", fmt.Errorf("filter status=%s: use created, running or exited", v)}
			}
			*all = true
		case k == "id", k == "label":
		default:
			return usageError{"ps", fmt.Errorf("unsupported filter %q: use name, status, id or label", k)}
		}
		fl = append(fl, filter{k, v})
	}
	var tmpl *template.Template
	header := ""
	if *format != "" {
		f, isTable := strings.CutPrefix(*format, "table ")
		if isTable {
			header = psHeader(f)
		}
		var err error
		tmpl, err = template.New("ps").Funcs(template.FuncMap{"json": func(v any) string { b, _ := json.Marshal(v); return string(b) }}).Parse(f)
		if err != nil {
			return usageError{"ps", fmt.Errorf("--format: %v", err)}
		}
	}
	d := dirs(g)
	list, err := d.List()
	if err != nil {
		return err
	}
	if *last >= 0 && *last < len(list) {
		list = list[:*last]
		*all = true
	}
	now := time.Now()
	var rows []psRow
next:
	for _, c := range list {
		st := d.LoadState(c.ID)
		if !*all && !st.Active() {
			continue
		}
		for _, f := range fl {
			switch f.key {
			case "name":
				if !regexp.MustCompile(f.val).MatchString(c.Name) {
					continue next
				}
			case "status":
				if st.Status != f.val {
					continue next
				}
			case "id":
				if !strings.HasPrefix(c.ID, f.val) {
					continue next
				}
			case "label":
				k, v, withVal := strings.Cut(f.val, "=")
				got, ok := labelsOf(c)[k]
				if !ok || withVal && got != v {
					continue next
				}
			}
		}
		id, cmd := c.ID, commandOf(c)
		if !*noTrunc {
			id = id[:12]
			if r := []rune(cmd); len(r) > 20 {
				cmd = string(r[:19]) + "…"
			}
		}
		rows = append(rows, psRow{
			ID: id, Image: c.Image, Command: strconv.Quote(cmd),
			CreatedAt:  c.Created.Format("2006-01-02 15:04:05 -0700 MST"),
			RunningFor: units.HumanDuration(now.Sub(c.Created)) + " ago",
			Status:     statusText(st, now), State: st.Status, Names: c.Name,
			Ports: portsOf(c.Spec), Pid: st.InitPid, ExitCode: st.ExitCode, Labels: labelText(labelsOf(c)),
		})
	}
	switch {
	case *quiet:
		for _, r := range rows {
			fmt.Println(r.ID)
		}
	case tmpl != nil:
		if header != "" {
			fmt.Println(header)
		}
		for _, r := range rows {
			if err := tmpl.Execute(os.Stdout, r); err != nil {
				return fmt.Errorf("--format: %w", err)
			}
			fmt.Println()
		}
	default:
		w := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
		fmt.Fprintln(w, "CONTAINER ID\tIMAGE\tCOMMAND\tCREATED\tSTATUS\tPORTS\tNAMES")
		for _, r := range rows {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Image, r.Command, r.RunningFor, r.Status, r.Ports, r.Names)
		}
		return w.Flush()
	}
	return nil
}

// psHeader is the header line of a `table` format: each {{.Field}}
// replaced by Docker's column name.
func psHeader(f string) string {
	names := map[string]string{"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
		"RunningFor": "CREATED", "Status": "STATUS", "State": "STATE", "Names": "NAMES", "Ports": "PORTS", "Pid": "PID", "ExitCode": "EXIT CODE", "Labels": "LABELS"}
	return regexp.MustCompile(`\{\{\s*\.(\w+)\s*\}\}`).ReplaceAllStringFunc(f, func(m string) string {
		k := regexp.MustCompile(`\w+`).FindString(m)
		if n, ok := names[k]; ok {
			return n
		}
		return strings.ToUpper(k)
	})
}

// eachContainer runs f for every CONTAINER argument, reporting errors the
// way Docker does (and exit status 1 if any failed).
func eachContainer(g *globals, verb string, refs []string, f func(d container.Dirs, c *container.Config) error) error {
	if len(refs) == 0 {
		return usageError{verb, fmt.Errorf("requires at least 1 argument: CONTAINER")}
	}
	d := dirs(g)
	return eachArg(verb, refs, func(ref string) error {
		c, err := d.Find(ref)
		if err != nil {
			return err
		}
		return f(d, c)
	})
}

// eachArg runs f for every argument; a failure is reported, with the
// argument, and the others are still done (exit status 1 at the end).
func eachArg(verb string, args []string, f func(arg string) error) error {
	failed := false
	for _, a := range args {
		if err := f(a); err != nil {
			fmt.Fprintf(os.Stderr, "unroot %s: %s: %v\n", verb, a, err)
			failed = true
		}
	}
	if failed {
		return exitError{1}
	}
	return nil
}

func stopSignal(c *container.Config, st *container.State) string {
	if c.Spec.StopSignal != "" {
		return c.Spec.StopSignal
	}
	return st.StopSignal
}

// stopContainer sends the stop signal, then SIGKILL after timeout. A
// container waiting to be restarted gets it in its detached process,
// which then ends the wait.
func stopContainer(d container.Dirs, c *container.Config, timeout time.Duration) error {
	if !d.LoadState(c.ID).Active() {
		return nil
	}
	d.MarkStopped(c.ID)
	st := d.LoadState(c.ID)
	sig, err := container.SignalByName(stopSignal(c, st))
	if err != nil {
		sig = 15
	}
	if err := container.Signal(st, sig); err == nil {
		if _, done := d.WaitExit(c.ID, timeout); done {
			return nil
		}
	}
	return killWait(d, c)
}

func killWait(d container.Dirs, c *container.Config) error {
	if !d.LoadState(c.ID).Active() {
		return nil
	}
	d.MarkStopped(c.ID)
	st := d.LoadState(c.ID)
	sig := unix.SIGKILL
	if st.Status == container.StatusRestarting {
		// Only the detached process is left: let it record the end.
		sig = unix.SIGTERM
	}
	_ = container.Signal(st, sig)
	if _, done := d.WaitExit(c.ID, 10*time.Second); !done {
		// The host-side process itself does not answer.
		_ = container.Signal(&container.State{Status: container.StatusRunning, Pid: st.Pid}, 9)
		if _, done := d.WaitExit(c.ID, 5*time.Second); !done {
			return fmt.Errorf("the container does not stop (pid %d)", st.Pid)
		}
	}
	return nil
}

func cmdStop(g *globals, args []string) error {
	fs := newFlags("stop")
	secs := fs.IntP("time", "t", 10, "seconds to wait for the container to stop before killing it")
	if err := parse(fs, args); err != nil {
		return err
	}
	return eachContainer(g, "stop", fs.Args(), func(d container.Dirs, c *container.Config) error {
		if err := stopContainer(d, c, time.Duration(*secs)*time.Second); err != nil {
			return err
		}
		fmt.Println(fsArgOr(c))
		return nil
	})
}

// fsArgOr is what Docker prints for a container acted on.
func fsArgOr(c *container.Config) string { return c.Name }

func cmdKill(g *globals, args []string) error {
	fs := newFlags("kill")
	sigName := fs.StringP("signal", "s", "KILL", "signal to send to the container")
	if err := parse(fs, args); err != nil {
		return err
	}
	sig, err := container.SignalByName(*sigName)
	if err != nil {
		return usageError{"kill", err}
	}
	return eachContainer(g, "kill", fs.Args(), func(d container.Dirs, c *container.Config) error {
		if !d.LoadState(c.ID).Active() {
			return fmt.Errorf("container %s is not running", c.Name)
		}
		// A kill by the user, whatever the signal, counts as a stop for
		// the restart policy: it must not bring back what was killed.
		d.MarkStopped(c.ID)
		if err := container.Signal(d.LoadState(c.ID), sig); err != nil {
			return err
		}
		fmt.Println(fsArgOr(c))
		return nil
	})
}

func cmdStart(g *globals, args []string) error {
	fs := newFlags("start")
	attach := fs.BoolP("attach", "a", false, "attach stdout/stderr and forward signals (runs in the foreground)")
	interactive := fs.BoolP("interactive", "i", false, "attach the container's stdin")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *attach || *interactive {
		if fs.NArg() != 1 {
			return usageError{"start", fmt.Errorf("you cannot start and attach multiple containers at once")}
		}
		d := dirs(g)
		c, err := d.Find(fs.Arg(0))
		if err != nil {
			return err
		}
		if st := d.LoadState(c.ID); st.Active() {
			return fmt.Errorf("container %s is already running", c.Name)
		}
		c.Spec.Stdin = *interactive
		c.Spec.Remove = false
		code, err := container.RunAttached(bg, d, c, &container.RunIO{})
		if err != nil {
			return err
		}
		if code != 0 {
			return exitError{code}
		}
		return nil
	}
	return eachContainer(g, "start", fs.Args(), func(d container.Dirs, c *container.Config) error {
		if d.LoadState(c.ID).Active() {
			fmt.Println(fsArgOr(c))
			return nil
		}
		if err := container.StartDetached(d, c); err != nil {
			return err
		}
		fmt.Println(fsArgOr(c))
		return nil
	})
}

func cmdRestart(g *globals, args []string) error {
	fs := newFlags("restart")
	secs := fs.IntP("time", "t", 10, "seconds to wait for the container to stop before killing it")
	if err := parse(fs, args); err != nil {
		return err
	}
	return eachContainer(g, "restart", fs.Args(), func(d container.Dirs, c *container.Config) error {
		if err := stopContainer(d, c, time.Duration(*secs)*time.Second); err != nil {
			return err
		}
		if err := container.StartDetached(d, c); err != nil {
			return err
		}
		fmt.Println(fsArgOr(c))
		return nil
	})
}

func cmdWait(g *globals, args []string) error {
	fs := newFlags("wait")
	if err := parse(fs, args); err != nil {
		return err
	}
	return eachContainer(g, "wait", fs.Args(), func(d container.Dirs, c *container.Config) error {
		st, _ := d.WaitExit(c.ID, 0)
		fmt.Println(st.ExitCode)
		return nil
	})
}

func cmdRm(g *globals, args []string) error {
	fs := newFlags("rm")
	force := fs.BoolP("force", "f", false, "kill a running container first")
	volumes := fs.BoolP("volumes", "v", false, "remove the anonymous volumes of the container")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageError{"rm", fmt.Errorf("requires at least 1 argument: CONTAINER")}
	}
	// The container's layer belongs to ids of the user namespace.
	if done, err := inUserNS(g); done {
		return err
	}
	var store storage.Store
	defer func() {
		if store != nil {
			store.Shutdown(false)
		}
	}()
	return eachContainer(g, "rm", fs.Args(), func(d container.Dirs, c *container.Config) error {
		if d.LoadState(c.ID).Active() {
			if !*force {
				return fmt.Errorf("container %s is running: stop it first, or use rm -f", c.Name)
			}
			if err := killWait(d, c); err != nil {
				return err
			}
		}
		unlock, err := d.Lock(c.ID)
		if err != nil {
			return err
		}
		defer unlock()
		if store == nil {
			if store, err = image.Open(g.store); err != nil {
				return err
			}
		}
		if _, err := store.Container(c.ID); err == nil {
			_, _ = store.Unmount(c.ID, true)
			if err := store.DeleteContainer(c.ID); err != nil {
				return fmt.Errorf("removing the container's layer: %w", err)
			}
		}
		if *volumes {
			if err := removeAnonymousVolumes(g, c); err != nil {
				return err
			}
		}
		if err := d.Remove(c.ID); err != nil {
			return err
		}
		fmt.Println(fsArgOr(c))
		return nil
	})
}

// inspectJSON is Docker's shape, as far as unroot has the facts.
type inspectJSON struct {
	ID      string `json:"Id"`
	Created string
	Path    string
	Args    []string
	State   struct {
		Status     string
		Running    bool
		Restarting bool
		Pid        int
		ExitCode   int
		OOMKilled  bool
		Error      string
		StartedAt  string
		FinishedAt string
	}
	Image        string
	Name         string
	RestartCount int
	LogPath      string
	Config       struct {
		Hostname   string
		User       string
		Tty        bool
		OpenStdin  bool
		Env        []string
		Cmd        []string
		Image      string
		WorkingDir string
		Entrypoint []string
		Labels     map[string]string
		StopSignal string `json:",omitempty"`
	}
	Mounts          []any
	NetworkSettings struct {
		Ports map[string][]map[string]string
	}
	HostConfig struct {
		NetworkMode   string
		AutoRemove    bool
		CapAdd        []string
		CapDrop       []string
		RestartPolicy struct {
			Name              string
			MaximumRetryCount int
		}
	}
}

func timeOrZero(t time.Time) string {
	if t.IsZero() {
		return "0001-01-01T00:00:00Z"
	}
	return t.Format(time.RFC3339Nano)
}

func cmdInspect(g *globals, args []string) error {
	fs := newFlags("inspect")
	format := fs.StringP("format", "f", "", "format the output with a Go template")
	if err := parse(fs, args); err != nil {
		return err
	}
	var tmpl *template.Template
	if *format != "" {
		var err error
		tmpl, err = template.New("inspect").Funcs(template.FuncMap{"json": func(v any) string { b, _ := json.Marshal(v); return string(b) }}).Parse(*format)
		if err != nil {
			return usageError{"inspect", fmt.Errorf("--format: %v", err)}
		}
	}
	var out []inspectJSON
	err := eachContainer(g, "inspect", fs.Args(), func(d container.Dirs, c *container.Config) error {
		st := d.LoadState(c.ID)
		var j inspectJSON
		j.ID, j.Name, j.Image, j.Created = c.ID, "/"+c.Name, c.Image, c.Created.Format(time.RFC3339Nano)
		s := c.Spec
		if s.Entrypoint != nil && *s.Entrypoint != "" {
			j.Config.Entrypoint = []string{*s.Entrypoint}
		}
		all := append(append([]string{}, j.Config.Entrypoint...), s.Cmd...)
		j.Config.Env, j.Config.Cmd, j.Config.User, j.Config.WorkingDir = s.Env, s.Cmd, s.User, s.Workdir
		if c.Process != nil {
			all = c.Process.Args
			j.Config.Env, j.Config.User, j.Config.WorkingDir = c.Process.Env, c.Process.User, c.Process.Cwd
			if len(s.Cmd) == 0 && s.Entrypoint == nil {
				j.Config.Cmd = c.Process.Args
			}
		}
		if len(all) > 0 {
			j.Path, j.Args = all[0], all[1:]
		}
		j.State.Status = st.Status
		j.State.Running = st.Status == container.StatusRunning
		j.State.Restarting = st.Status == container.StatusRestarting
		j.RestartCount = st.RestartCount
		j.Config.Labels = labelsOf(c)
		j.HostConfig.RestartPolicy.Name = s.Restart.Name
		if j.HostConfig.RestartPolicy.Name == "" {
			j.HostConfig.RestartPolicy.Name = "no"
		}
		j.HostConfig.RestartPolicy.MaximumRetryCount = s.Restart.MaxRetries
		j.State.Pid = st.InitPid
		j.State.ExitCode = st.ExitCode
		j.State.OOMKilled = st.OOMKilled
		j.State.Error = st.Error
		j.State.StartedAt, j.State.FinishedAt = timeOrZero(st.StartedAt), timeOrZero(st.FinishedAt)
		j.LogPath = d.LogPath(c.ID)
		j.Config.Hostname, j.Config.Tty, j.Config.OpenStdin, j.Config.Image = s.Hostname, s.Tty, s.Stdin, c.Image
		j.Config.StopSignal = stopSignal(c, st)
		j.Mounts = []any{}
		for _, m := range s.Mounts {
			jm := map[string]any{"Type": m.Type, "Source": m.Source, "Destination": m.Destination, "RW": !m.ReadOnly, "Options": m.Options}
			if m.Volume != "" {
				jm["Type"], jm["Name"], jm["Driver"] = "volume", m.Volume, "local"
			}
			j.Mounts = append(j.Mounts, jm)
		}
		j.NetworkSettings.Ports = map[string][]map[string]string{}
		for _, p := range s.Publish {
			key := fmt.Sprintf("%d/%s", p.ContainerPort, p.Proto)
			j.NetworkSettings.Ports[key] = append(j.NetworkSettings.Ports[key], map[string]string{"HostIp": p.HostIP, "HostPort": strconv.Itoa(p.HostPort)})
		}
		j.HostConfig.NetworkMode, j.HostConfig.AutoRemove = s.Net, s.Remove
		j.HostConfig.CapAdd, j.HostConfig.CapDrop = s.CapAdd, s.CapDrop
		out = append(out, j)
		return nil
	})
	if tmpl != nil {
		for _, j := range out {
			// Templates see the JSON names (.State.Status, .Id).
			b, _ := json.Marshal(j)
			var m map[string]any
			_ = json.Unmarshal(b, &m)
			if err := tmpl.Execute(os.Stdout, m); err != nil {
				return fmt.Errorf("--format: %w", err)
			}
			fmt.Println()
		}
		return err
	}
	if out == nil {
		out = []inspectJSON{}
	}
	b, _ := json.MarshalIndent(out, "", "    ")
	fmt.Println(string(b))
	return err
}

func cmdLogs(g *globals, args []string) error {
	fs := newFlags("logs")
	follow := fs.BoolP("follow", "f", false, "follow log output")
	tail := fs.StringP("tail", "n", "all", "number of lines to show from the end of the logs")
	stamps := fs.BoolP("timestamps", "t", false, "show timestamps")
	since := fs.String("since", "", "show logs since a timestamp (2013-01-02T13:23:37Z) or a relative time (42m)")
	until := fs.String("until", "", "show logs before a timestamp or a relative time")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"logs", fmt.Errorf("requires exactly 1 argument: CONTAINER")}
	}
	n := -1
	if *tail != "all" && *tail != "" {
		v, err := strconv.Atoi(*tail)
		if err != nil {
			return usageError{"logs", fmt.Errorf("--tail must be a number or all")}
		}
		n = v
	}
	var sinceT, untilT time.Time
	for _, p := range []struct {
		s string
		t *time.Time
	}{{*since, &sinceT}, {*until, &untilT}} {
		if p.s == "" {
			continue
		}
		t, err := parseTime(p.s)
		if err != nil {
			return usageError{"logs", err}
		}
		*p.t = t
	}
	d := dirs(g)
	c, err := d.Find(fs.Arg(0))
	if err != nil {
		return err
	}
	path := d.LogPath(c.ID)
	var lines []string
	for _, p := range []string{path + ".1", path} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		lines = append(lines, strings.SplitAfter(string(b), "\n")...)
	}
	// The part of the last line not yet terminated is left for -f.
	var offset int64
	if st, err := os.Stat(path); err == nil {
		offset = st.Size()
	}
	if len(lines) > 0 && !strings.HasSuffix(lines[len(lines)-1], "\n") {
		offset -= int64(len(lines[len(lines)-1]))
		lines = lines[:len(lines)-1]
	}
	var parsed []container.LogLine
	for _, l := range lines {
		ll, ok := container.ParseLogLine(strings.TrimSuffix(l, "\n"))
		if !ok {
			continue
		}
		if !sinceT.IsZero() && ll.Time.Before(sinceT) || !untilT.IsZero() && ll.Time.After(untilT) {
			continue
		}
		parsed = append(parsed, ll)
	}
	if n >= 0 {
		// Count whole lines: a P line continues into the next.
		full := 0
		i := len(parsed)
		for i > 0 && full < n {
			i--
			if !parsed[i].Partial {
				full++
			}
		}
		if full == n && i > 0 && n > 0 {
			for i > 0 && parsed[i-1].Partial {
				i--
			}
		}
		if n == 0 {
			i = len(parsed)
		}
		parsed = parsed[i:]
	}
	emit, flush := logPrinter(*stamps)
	for _, ll := range parsed {
		emit(ll)
	}
	flush()
	if !*follow {
		return nil
	}
	return followLog(d, c, path, offset, emit, flush)
}

// logPrinter prints log lines to our stdout and stderr, as they were
// written by the container.
func logPrinter(stamps bool) (emit func(container.LogLine), flush func()) {
	out := bufio.NewWriter(os.Stdout)
	errOut := bufio.NewWriter(os.Stderr)
	emit = func(ll container.LogLine) {
		w := out
		if ll.Stream == "stderr" {
			w = errOut
		}
		if stamps {
			w.WriteString(ll.Time.Format(time.RFC3339Nano) + " ")
		}
		w.WriteString(ll.Text)
		if !ll.Partial {
			w.WriteString("\n")
		}
	}
	return emit, func() { out.Flush(); errOut.Flush() }
}

// followLog prints what is appended to the log from offset on until the
// container stops; a rotation starts again at the new file's beginning.
func followLog(d container.Dirs, c *container.Config, path string, offset int64, emit func(container.LogLine), flush func()) error {
	f, err := os.Open(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var pending string
	stoppedOnce := false
	for {
		if f == nil {
			f, _ = os.Open(path)
			offset = 0
		}
		if f != nil {
			if st, err := os.Stat(path); err == nil && st.Size() < offset {
				f.Close()
				f, _ = os.Open(path)
				offset = 0
			}
		}
		if f != nil {
			b := make([]byte, 64<<10)
			for {
				m, err := f.ReadAt(b, offset)
				if m > 0 {
					offset += int64(m)
					pending += string(b[:m])
					for {
						i := strings.IndexByte(pending, '\n')
						if i < 0 {
							break
						}
						if ll, ok := container.ParseLogLine(pending[:i]); ok {
							emit(ll)
						}
						pending = pending[i+1:]
					}
				}
				if err == io.EOF || m == 0 {
					break
				}
			}
			flush()
		}
		if !d.LoadState(c.ID).Active() {
			if stoppedOnce {
				return nil
			}
			// One more pass for what was written last.
			stoppedOnce = true
			continue
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func parseTime(s string) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return time.Now().Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	if v, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Unix(0, int64(v*1e9)), nil
	}
	return time.Time{}, fmt.Errorf("cannot parse time %q: use RFC 3339 (2006-01-02T15:04:05Z), a Unix time or a duration (10m)", s)
}

func cmdExec(g *globals, args []string) error {
	fs := newFlags("exec")
	fs.SetInterspersed(false)
	var req container.ExecRequest
	interactive := fs.BoolP("interactive", "i", false, "keep STDIN open")
	fs.BoolVarP(&req.Tty, "tty", "t", false, "allocate a pseudo-TTY")
	fs.BoolVarP(&req.Detach, "detach", "d", false, "run the command in the background")
	fs.StringArrayVarP(&req.Env, "env", "e", nil, "set environment variables (KEY=VALUE, or KEY to pass the host's value)")
	fs.StringVarP(&req.Cwd, "workdir", "w", "", "working directory inside the container")
	fs.StringVarP(&req.User, "user", "u", "", "user name or UID, optionally with group (USER[:GROUP])")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 2 {
		return usageError{"exec", fmt.Errorf("requires at least 2 arguments: CONTAINER COMMAND [ARG...]")}
	}
	if req.Tty && *interactive && !isTerminal(os.Stdin) {
		return fmt.Errorf("the input device is not a TTY: drop -t, or run from a terminal")
	}
	var env []string
	for _, e := range req.Env {
		if !strings.Contains(e, "=") {
			v, ok := os.LookupEnv(e)
			if !ok {
				continue
			}
			e += "=" + v
		}
		env = append(env, e)
	}
	req.Env = env
	req.Args = fs.Args()[1:]
	d := dirs(g)
	c, err := d.Find(fs.Arg(0))
	if err != nil {
		return err
	}
	if d.LoadState(c.ID).Status != container.StatusRunning {
		return fmt.Errorf("container %s is not running: start it first (unroot start %s)", c.Name, c.Name)
	}
	code, err := container.Exec(d, c.ID, req, *interactive)
	if err != nil {
		if errors.Is(err, container.ErrReported) {
			return exitError{code}
		}
		return err
	}
	if code != 0 {
		return exitError{code}
	}
	return nil
}

var volumeName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// parseVolume parses -v: HOST:CTR[:OPTS], NAME:CTR[:OPTS] (a named volume
// under the data directory) or CTR (an anonymous one).
func parseVolume(g *globals, v string) (container.Mount, error) {
	parts := strings.Split(v, ":")
	var src, dst, opts string
	switch len(parts) {
	case 1:
		dst = parts[0]
	case 2:
		if strings.HasPrefix(parts[1], "/") {
			src, dst = parts[0], parts[1]
		} else {
			dst, opts = parts[0], parts[1]
		}
	case 3:
		src, dst, opts = parts[0], parts[1], parts[2]
	default:
		return container.Mount{}, fmt.Errorf("-v %q: use HOST-DIR:CONTAINER-DIR[:ro]", v)
	}
	if !strings.HasPrefix(dst, "/") {
		return container.Mount{}, fmt.Errorf("-v %q: the container path must be absolute", v)
	}
	m := container.Mount{Type: "bind", Destination: dst}
	for _, o := range strings.Split(opts, ",") {
		switch o {
		case "", "rw", "z", "Z", "bind", "rbind", "private", "rprivate", "delegated", "cached", "consistent":
		case "ro", "readonly":
			m.ReadOnly = true
		default:
			return container.Mount{}, fmt.Errorf("-v %q: unknown option %q (use ro or rw)", v, o)
		}
	}
	switch {
	case src == "" || !strings.HasPrefix(src, "/") && !strings.HasPrefix(src, "."):
		if src != "" && !volumeName.MatchString(src) {
			return m, fmt.Errorf("-v %q: %q is neither an absolute host path nor a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)", v, src)
		}
		// A volume: a directory of the user's, root's inside; without a
		// name an anonymous one, as in Docker, which rm -v removes.
		m.Volume, m.Anonymous = src, src == ""
		if m.Anonymous {
			m.Volume = container.NewID()
		}
		dir, err := ensureVolume(g, m.Volume, m.Anonymous)
		if err != nil {
			return m, fmt.Errorf("-v %q: %w", v, err)
		}
		m.Source = dir
	default:
		abs, err := filepath.Abs(src)
		if err != nil {
			return m, err
		}
		if _, err := os.Stat(abs); err != nil {
			return m, fmt.Errorf("-v %q: %w (unroot does not create host directories)", v, err)
		}
		m.Source = abs
	}
	return m, nil
}

// readEnvFile reads Docker's --env-file: KEY=VALUE lines, # comments, KEY
// alone for the host's value.
func readEnvFile(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--env-file: %w", err)
	}
	var env []string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		line = strings.TrimLeft(line, " \t")
		if !strings.Contains(line, "=") {
			v, ok := os.LookupEnv(line)
			if !ok {
				continue
			}
			line += "=" + v
		}
		env = append(env, line)
	}
	return env, nil
}

func cmdCp(g *globals, args []string) error {
	fs := newFlags("cp")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return usageError{"cp", fmt.Errorf("requires exactly 2 arguments: CONTAINER:SRC_PATH DEST_PATH, or SRC_PATH CONTAINER:DEST_PATH")}
	}
	split := func(a string) (string, string, bool) {
		if strings.HasPrefix(a, "/") || strings.HasPrefix(a, ".") {
			return "", a, false
		}
		ref, p, ok := strings.Cut(a, ":")
		if !ok {
			return "", a, false
		}
		return ref, p, true
	}
	srcRef, srcPath, srcCtr := split(fs.Arg(0))
	dstRef, dstPath, dstCtr := split(fs.Arg(1))
	if srcCtr == dstCtr {
		return usageError{"cp", fmt.Errorf("exactly one of the paths must be CONTAINER:PATH")}
	}
	ref := srcRef
	if dstCtr {
		ref = dstRef
	}
	d := dirs(g)
	c, err := d.Find(ref)
	if err != nil {
		return err
	}
	if d.LoadState(c.ID).Status != container.StatusRunning {
		return fmt.Errorf("container %s is not running: unroot cp needs a running container (start it first)", c.Name)
	}
	if srcCtr {
		return container.CopyFrom(d, c.ID, srcPath, dstPath)
	}
	return container.CopyTo(d, c.ID, srcPath, dstPath)
}

func cmdPort(g *globals, args []string) error {
	fs := newFlags("port")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		return usageError{"port", fmt.Errorf("requires 1 or 2 arguments: CONTAINER [PRIVATE_PORT[/PROTO]]")}
	}
	d := dirs(g)
	c, err := d.Find(fs.Arg(0))
	if err != nil {
		return err
	}
	st := d.LoadState(c.ID)
	if st.Status != container.StatusRunning {
		return fmt.Errorf("container %s is not running", c.Name)
	}
	ports := st.Ports
	if ports == nil {
		ports = c.Spec.Publish
	}
	want := ""
	if fs.NArg() == 2 {
		want = fs.Arg(1)
		if !strings.Contains(want, "/") {
			want += "/tcp"
		}
	}
	found := false
	for _, p := range ports {
		key := fmt.Sprintf("%d/%s", p.ContainerPort, p.Proto)
		if want != "" && key != want {
			continue
		}
		ip := p.HostIP
		if ip == "" {
			ip = "0.0.0.0"
		}
		found = true
		if want != "" {
			fmt.Printf("%s:%d\n", ip, p.HostPort)
		} else {
			fmt.Printf("%s -> %s:%d\n", key, ip, p.HostPort)
		}
	}
	if want != "" && !found {
		return fmt.Errorf("no public port %s published for %s", want, c.Name)
	}
	return nil
}

// cmdTop lists the container's processes: its init and every descendant,
// as the host sees them.
func cmdTop(g *globals, args []string) error {
	fs := newFlags("top")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 1 {
		return usageError{"top", fmt.Errorf("requires at least 1 argument: CONTAINER")}
	}
	d := dirs(g)
	c, err := d.Find(fs.Arg(0))
	if err != nil {
		return err
	}
	st := d.LoadState(c.ID)
	if st.Status != container.StatusRunning || st.InitPid == 0 {
		return fmt.Errorf("container %s is not running", c.Name)
	}
	procs := container.Descendants(st.InitPid)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintln(w, "UID\tPID\tPPID\tSTIME\tTIME\tCMD")
	for _, p := range procs {
		fmt.Fprintf(w, "%d\t%d\t%d\t%s\t%s\t%s\n", p.UID, p.Pid, p.PPid, p.Start.Format("15:04"), p.CPU.Round(time.Second), p.Cmd)
	}
	return w.Flush()
}
