package main

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/docker/go-units"

	"github.com/unroot/unroot/container"
	"github.com/unroot/unroot/userns"
)

// Named volumes are directories of the user's: VOLUMES/NAME/_data is
// mounted, VOLUMES/NAME/volume.json records when and why it was made.
func volumesDir(g *globals) string { return filepath.Join(g.paths.Data, "volumes") }

type volumeMeta struct {
	CreatedAt time.Time `json:"created_at"`
	Anonymous bool      `json:"anonymous,omitempty"`
}

// volumeJSON is `volume inspect`'s shape (Docker's, as far as it applies).
type volumeJSON struct {
	CreatedAt  string
	Driver     string
	Labels     map[string]string
	Mountpoint string
	Name       string
	Options    map[string]string
	Scope      string
	Anonymous  bool `json:",omitempty"`
}

// ensureVolume returns the data directory of volume name, creating the
// volume if it does not exist yet.
func ensureVolume(g *globals, name string, anonymous bool) (string, error) {
	if !volumeName.MatchString(name) {
		return "", fmt.Errorf("%q is not a valid volume name: use letters, digits and _.- (not first)", name)
	}
	dir := filepath.Join(volumesDir(g), name)
	data := filepath.Join(dir, "_data")
	if _, err := os.Stat(data); err == nil {
		return data, nil
	}
	if err := os.MkdirAll(data, 0o755); err != nil {
		return "", fmt.Errorf("creating volume %s: %w", name, err)
	}
	b, _ := json.Marshal(volumeMeta{CreatedAt: time.Now(), Anonymous: anonymous})
	if err := os.WriteFile(filepath.Join(dir, "volume.json"), b, 0o600); err != nil {
		return "", fmt.Errorf("creating volume %s: %w", name, err)
	}
	return data, nil
}

func loadVolume(g *globals, name string) (volumeJSON, error) {
	dir := filepath.Join(volumesDir(g), name)
	st, err := os.Stat(filepath.Join(dir, "_data"))
	if err != nil || !volumeName.MatchString(name) {
		return volumeJSON{}, errors.New("no such volume (unroot volume ls lists them)")
	}
	var m volumeMeta
	if b, err := os.ReadFile(filepath.Join(dir, "volume.json")); err == nil {
		_ = json.Unmarshal(b, &m)
	}
	if m.CreatedAt.IsZero() {
		// Made by an unroot that kept no record.
		m.CreatedAt = st.ModTime()
	}
	return volumeJSON{CreatedAt: m.CreatedAt.Format(time.RFC3339), Driver: "local", Labels: map[string]string{},
		Mountpoint: filepath.Join(dir, "_data"), Name: name, Options: map[string]string{}, Scope: "local", Anonymous: m.Anonymous}, nil
}

func listVolumes(g *globals) ([]volumeJSON, error) {
	ents, err := os.ReadDir(volumesDir(g))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var out []volumeJSON
	for _, e := range ents {
		if v, err := loadVolume(g, e.Name()); err == nil {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// volumeUsers maps each volume name to the containers that mount it.
func volumeUsers(g *globals) (map[string][]string, error) {
	list, err := dirs(g).List()
	if err != nil {
		return nil, err
	}
	users := map[string][]string{}
	for _, c := range list {
		for _, m := range c.Spec.Mounts {
			if m.Volume != "" {
				users[m.Volume] = append(users[m.Volume], c.Name)
			}
		}
	}
	return users, nil
}

// removeVolume deletes a volume's directory; it runs in unroot's user
// namespace, where files of the container's other users are removable.
func removeVolume(g *globals, name string) error {
	if err := os.RemoveAll(filepath.Join(volumesDir(g), name)); err != nil {
		return fmt.Errorf("removing volume %s: %w", name, err)
	}
	return nil
}

func cmdVolume(g *globals, args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "--help" || args[0] == "-h") {
			fmt.Fprint(os.Stderr, `Usage: unroot volume COMMAND [flags]

Manage named volumes (directories under $XDG_DATA_HOME/unroot/volumes)

Commands:
  create [NAME]       Create a volume (a random name without NAME)
  inspect VOLUME...   Display detailed information on volumes
  ls [-q]             List volumes
  prune [-a] [-f]     Remove unused anonymous volumes (-a: every unused volume)
  rm [-f] VOLUME...   Remove volumes (-f: even if a container uses them)
`)
			return nil
		}
		return usageError{"volume", fmt.Errorf("requires a subcommand: create, ls, rm, inspect or prune")}
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "create":
		return volumeCreate(g, rest)
	case "ls", "list":
		return volumeLs(g, rest)
	case "rm", "remove":
		return volumeRm(g, rest)
	case "inspect":
		return volumeInspect(g, rest)
	case "prune":
		return volumePrune(g, rest)
	}
	return usageError{"volume", fmt.Errorf("unknown subcommand %q: use create, ls, rm, inspect or prune", sub)}
}

func volumeCreate(g *globals, args []string) error {
	fs := newFlags("volume")
	driver := fs.StringP("driver", "d", "local", "volume driver (only local)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *driver != "local" {
		return usageError{"volume", fmt.Errorf("volume driver %q: unroot has only the local driver (a directory of yours)", *driver)}
	}
	if fs.NArg() > 1 {
		return usageError{"volume", fmt.Errorf("create takes at most 1 argument: [NAME]")}
	}
	name := fs.Arg(0)
	if name == "" {
		name = container.NewID()
	}
	if _, err := ensureVolume(g, name, false); err != nil {
		return err
	}
	fmt.Println(name)
	return nil
}

func volumeLs(g *globals, args []string) error {
	fs := newFlags("volume")
	quiet := fs.BoolP("quiet", "q", false, "only display volume names")
	if err := parse(fs, args); err != nil {
		return err
	}
	list, err := listVolumes(g)
	if err != nil {
		return err
	}
	if *quiet {
		for _, v := range list {
			fmt.Println(v.Name)
		}
		return nil
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintln(w, "DRIVER\tVOLUME NAME")
	for _, v := range list {
		fmt.Fprintf(w, "%s\t%s\n", v.Driver, v.Name)
	}
	return w.Flush()
}

func volumeInspect(g *globals, args []string) error {
	fs := newFlags("volume")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageError{"volume", fmt.Errorf("inspect requires at least 1 argument: VOLUME")}
	}
	out := []volumeJSON{}
	err := eachArg("volume inspect", fs.Args(), func(name string) error {
		v, err := loadVolume(g, name)
		if err == nil {
			out = append(out, v)
		}
		return err
	})
	b, _ := json.MarshalIndent(out, "", "    ")
	fmt.Println(string(b))
	return err
}

func volumeRm(g *globals, args []string) error {
	fs := newFlags("volume")
	force := fs.BoolP("force", "f", false, "remove the volume even if a container uses it")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageError{"volume", fmt.Errorf("rm requires at least 1 argument: VOLUME")}
	}
	if done, err := inUserNS(g); done {
		return err
	}
	users, err := volumeUsers(g)
	if err != nil {
		return err
	}
	return eachArg("volume rm", fs.Args(), func(name string) error {
		if _, err := loadVolume(g, name); err != nil {
			return err
		}
		if u := users[name]; len(u) > 0 && !*force {
			return fmt.Errorf("volume %s is in use by container %s: remove the container first (unroot rm %s), or use volume rm -f", name, strings.Join(u, ", "), u[0])
		}
		if err := removeVolume(g, name); err != nil {
			return err
		}
		fmt.Println(name)
		return nil
	})
}

func volumePrune(g *globals, args []string) error {
	fs := newFlags("volume")
	all := fs.BoolP("all", "a", false, "remove all unused volumes, not just anonymous ones")
	force := fs.BoolP("force", "f", false, "do not prompt for confirmation")
	if err := parse(fs, args); err != nil {
		return err
	}
	// Asked once, before the command runs again in the user namespace.
	if !*force && userns.Stage() != stageStore {
		what := "all anonymous volumes"
		if *all {
			what = "all volumes"
		}
		fmt.Fprintf(os.Stderr, "WARNING! This will remove %s not used by at least one container.\nAre you sure you want to continue? [y/N] ", what)
		line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
			return nil
		}
	}
	if done, err := inUserNS(g); done {
		return err
	}
	users, err := volumeUsers(g)
	if err != nil {
		return err
	}
	list, err := listVolumes(g)
	if err != nil {
		return err
	}
	var freed int64
	fmt.Println("Deleted Volumes:")
	for _, v := range list {
		if len(users[v.Name]) > 0 || !v.Anonymous && !*all {
			continue
		}
		freed += dirSize(v.Mountpoint)
		if err := removeVolume(g, v.Name); err != nil {
			return err
		}
		fmt.Println(v.Name)
	}
	fmt.Printf("\nTotal reclaimed space: %s\n", units.HumanSize(float64(freed)))
	return nil
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, e os.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			if info, err := e.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// removeAnonymousVolumes is rm -v: the container's anonymous volumes, but
// not one another container also mounts (--volumes-from, one day).
func removeAnonymousVolumes(g *globals, c *container.Config) error {
	var users map[string][]string
	for _, m := range c.Spec.Mounts {
		if !m.Anonymous || m.Volume == "" {
			continue
		}
		if users == nil {
			var err error
			if users, err = volumeUsers(g); err != nil {
				return err
			}
		}
		if u := users[m.Volume]; len(u) > 1 || len(u) == 1 && u[0] != c.Name {
			continue
		}
		if err := removeVolume(g, m.Volume); err != nil {
			return err
		}
	}
	return nil
}

// mountOpt is one --mount, parsed (pure: nothing touched yet).
type mountOpt struct {
	Type, Source, Target string
	ReadOnly             bool
	TmpfsSize            int64
	TmpfsMode            os.FileMode
}

// parseMount parses Docker's --mount: comma-separated KEY=VALUE (CSV, so
// values may be quoted), type bind, volume (the default) or tmpfs.
func parseMount(v string) (mountOpt, error) {
	bad := func(format string, a ...any) (mountOpt, error) {
		return mountOpt{}, fmt.Errorf("--mount %q: %s", v, fmt.Sprintf(format, a...))
	}
	fields, err := csv.NewReader(strings.NewReader(v)).Read()
	if err != nil {
		return bad("%v", err)
	}
	m := mountOpt{Type: "volume"}
	hasSize, hasMode := false, false
	for _, f := range fields {
		key, val, hasVal := strings.Cut(f, "=")
		key = strings.ToLower(strings.TrimSpace(key))
		switch key {
		case "type":
			m.Type = val
		case "source", "src":
			m.Source = val
		case "target", "destination", "dst":
			m.Target = val
		case "readonly", "ro":
			if !hasVal {
				m.ReadOnly = true
				continue
			}
			b, err := strconv.ParseBool(val)
			if err != nil {
				return bad("readonly=%s: use readonly, readonly=true or readonly=false", val)
			}
			m.ReadOnly = b
		case "bind-propagation":
			// Every mount of the container is private already.
			if val != "rprivate" && val != "private" {
				return bad("bind-propagation=%s: unroot's mounts are private (rprivate); drop the option", val)
			}
		case "consistency", "volume-nocopy":
			// macOS-only, and unroot never copies image files into a volume.
		case "volume-driver":
			if val != "local" {
				return bad("volume-driver=%s: unroot has only the local driver; drop the option", val)
			}
		case "tmpfs-size":
			n, err := units.RAMInBytes(val)
			if err != nil || n <= 0 {
				return bad("tmpfs-size=%s: give a size such as 64m or 1g", val)
			}
			m.TmpfsSize, hasSize = n, true
		case "tmpfs-mode":
			n, err := strconv.ParseUint(val, 8, 32)
			if err != nil || n > 0o7777 {
				return bad("tmpfs-mode=%s: give octal permissions such as 1777", val)
			}
			m.TmpfsMode, hasMode = os.FileMode(n), true
		case "":
			return bad("empty field: separate KEY=VALUE pairs with single commas")
		default:
			return bad("unknown key %q: use type, source, target, readonly, tmpfs-size or tmpfs-mode", key)
		}
	}
	switch m.Type {
	case "bind", "volume", "tmpfs":
	default:
		return bad("unknown type %q: use type=bind, type=volume or type=tmpfs", m.Type)
	}
	if m.Target == "" {
		return bad("no target: add target=/path/in/container")
	}
	if !strings.HasPrefix(m.Target, "/") {
		return bad("target %q must be an absolute path in the container", m.Target)
	}
	if (hasSize || hasMode) && m.Type != "tmpfs" {
		return bad("tmpfs-size and tmpfs-mode go only with type=tmpfs")
	}
	switch m.Type {
	case "bind":
		if m.Source == "" {
			return bad("type=bind needs source=HOST-PATH")
		}
	case "tmpfs":
		if m.Source != "" {
			return bad("type=tmpfs takes no source: drop source=%s", m.Source)
		}
	case "volume":
		if m.Source != "" && !volumeName.MatchString(m.Source) {
			return bad("source=%s is not a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]*): for a host directory use type=bind", m.Source)
		}
	}
	return m, nil
}

// resolveMount turns a parsed --mount into the container's mount: host
// paths made absolute and checked, volumes created.
func resolveMount(g *globals, m mountOpt) (container.Mount, error) {
	out := container.Mount{Type: "bind", Destination: m.Target, ReadOnly: m.ReadOnly}
	switch m.Type {
	case "bind":
		abs, err := filepath.Abs(m.Source)
		if err != nil {
			return out, err
		}
		if _, err := os.Stat(abs); err != nil {
			return out, fmt.Errorf("--mount: bind source %s: %w (create it first: unroot does not create host paths)", m.Source, err)
		}
		out.Source = abs
	case "tmpfs":
		out.Type = "tmpfs"
		var o []string
		if m.TmpfsSize > 0 {
			o = append(o, "size="+strconv.FormatInt(m.TmpfsSize, 10))
		}
		if m.TmpfsMode != 0 {
			o = append(o, fmt.Sprintf("mode=%o", m.TmpfsMode))
		}
		out.Options = strings.Join(o, ",")
	case "volume":
		name, anon := m.Source, m.Source == ""
		if anon {
			name = container.NewID()
		}
		dir, err := ensureVolume(g, name, anon)
		if err != nil {
			return out, fmt.Errorf("--mount: %w", err)
		}
		out.Source, out.Volume, out.Anonymous = dir, name, anon
	}
	return out, nil
}
