package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/docker/go-units"
	flag "github.com/spf13/pflag"
	"go.podman.io/storage"
	"golang.org/x/sys/unix"

	"github.com/unroot/unroot/container"
	"github.com/unroot/unroot/idmap"
	"github.com/unroot/unroot/image"
	"github.com/unroot/unroot/slirp"
)

// registryFlags are Podman's spellings for registry access.
type registryFlags struct {
	tlsVerify bool
	o         image.RegistryOptions
}

func (r *registryFlags) add(fs *flag.FlagSet) {
	fs.BoolVar(&r.tlsVerify, "tls-verify", true, "require HTTPS and verify certificates when contacting registries")
	fs.StringVar(&r.o.CertDir, "cert-dir", "", "use certificates (*.crt, *.cert, *.key) at DIR to connect to the registry")
	fs.StringVar(&r.o.Creds, "creds", "", "`USERNAME:PASSWORD` to access the registry")
	fs.StringVar(&r.o.AuthFile, "authfile", "", "path of the authentication file")
}

func (r *registryFlags) options(fs *flag.FlagSet) image.RegistryOptions {
	o := r.o
	if fs.Changed("tls-verify") {
		v := r.tlsVerify
		o.TLSVerify = &v
	}
	return o
}

func cmdRun(g *globals, args []string) (err error) {
	fs := newFlags("run")
	fs.SetInterspersed(false)
	var (
		reg                       registryFlags
		s                         container.Spec
		entrypoint, network, pull string
		capAdd, capDrop           []string
	)
	reg.add(fs)
	fs.BoolVar(&s.Remove, "rm", false, "remove the container when it exits")
	detach := fs.BoolP("detach", "d", false, "run the container in the background and print its ID")
	volumes := fs.StringArrayP("volume", "v", nil, "bind mount a volume: HOST-DIR:CONTAINER-DIR[:ro|rw], NAME:CONTAINER-DIR (a named volume) or CONTAINER-DIR")
	tmpfs := fs.StringArray("tmpfs", nil, "mount a tmpfs: CONTAINER-DIR[:OPTIONS]")
	mounts := fs.StringArray("mount", nil, "attach a filesystem mount: type=bind,source=HOST-PATH,target=CONTAINER-PATH[,readonly], type=volume[,source=NAME],target=..., type=tmpfs,target=...[,tmpfs-size=64m][,tmpfs-mode=1777]")
	restart := fs.String("restart", "no", "restart policy of a detached container when its process exits: no, on-failure[:MAX-RETRIES], always, unless-stopped")
	labels := fs.StringArrayP("label", "l", nil, "set a label on the container (KEY=VALUE)")
	labelFiles := fs.StringArray("label-file", nil, "read labels from a file of KEY=VALUE lines")
	// unroot's own init is the container's PID 1 in every container (it
	// reaps orphans and forwards signals): --init has nothing to add.
	fs.Bool("init", false, "run an init inside the container (always the case with unroot: accepted for Docker compatibility)")
	fs.BoolVar(&s.ReadOnly, "read-only", false, "mount the container's root filesystem read-only")
	envFiles := fs.StringArray("env-file", nil, "read environment variables from a file")
	fs.StringVar(&s.StopSignal, "stop-signal", "", "signal to stop the container (default: the image's, else SIGTERM)")
	fs.BoolVarP(&s.Stdin, "interactive", "i", false, "keep STDIN open")
	fs.BoolVarP(&s.Tty, "tty", "t", false, "allocate a pseudo-TTY")
	fs.StringArrayVarP(&s.Env, "env", "e", nil, "set environment variables (KEY=VALUE, or KEY to pass the host's value)")
	fs.StringVarP(&s.Workdir, "workdir", "w", "", "working directory inside the container")
	fs.StringVar(&entrypoint, "entrypoint", "", "overwrite the default ENTRYPOINT of the image")
	fs.StringVarP(&s.User, "user", "u", "", "user name or UID, optionally with group (USER[:GROUP])")
	userNS := fs.String("userns", "", "user namespace mode: keep-id (your uid and gid inside, as the default user)")
	fs.StringVarP(&s.Hostname, "hostname", "h", "", "container host name")
	fs.StringVar(&s.Name, "name", "", "assign a name to the container")
	var publish []string
	fs.StringVar(&network, "net", "auto", "network: auto (user-mode: pasta, slirp4netns or the built-in stack), pasta, slirp4netns, gvisor, none or host; DRIVER:port_handler=native forwards -p through the driver itself (slirp4netns: keeps the client's address; slower)")
	fs.StringVar(&network, "network", "auto", "network (same as --net)")
	fs.StringArrayVarP(&publish, "publish", "p", nil, "publish a container's port to the host: [IP:][HOSTPORT:]CONTAINERPORT[/tcp|/udp]")
	fs.StringSliceVar(&s.DNS, "dns", nil, "set custom DNS servers")
	fs.StringArrayVar(&s.AddHosts, "add-host", nil, "add a custom host-to-IP mapping (HOST:IP)")
	fs.IntVar(&s.MTU, "mtu", 0, "MTU of the container's network interface (default 65520)")
	fs.BoolVar(&s.DisableHostLoopback, "disable-host-loopback", false, "do not let the container reach the host's 127.0.0.1 (host.containers.internal)")
	fs.StringVar(&pull, "pull", "missing", "pull the image: always, missing or never")
	fs.BoolVarP(&s.Quiet, "quiet", "q", false, "suppress pull progress")
	fs.StringSliceVar(&capAdd, "cap-add", nil, "add Linux capabilities")
	fs.StringSliceVar(&capDrop, "cap-drop", nil, "drop Linux capabilities")
	lim := addLimitFlags(fs)
	fs.StringVar(&s.Cgroups, "cgroups", "enabled", "enabled, or disabled to run without a cgroup of its own (no resource limits)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 1 {
		return usageError{"run", fmt.Errorf("requires at least 1 argument: IMAGE")}
	}
	if s.Limits, err = lim.parse(fs); err != nil {
		return usageError{"run", err}
	}
	if s.Cgroups != "enabled" && s.Cgroups != "disabled" {
		return usageError{"run", fmt.Errorf("--cgroups must be enabled or disabled")}
	}
	network, s.PortDriver, err = slirp.ParseNetwork(network)
	if err != nil {
		return usageError{"run", err}
	}
	for _, p := range publish {
		ps, err := slirp.ParsePublish(p)
		if err != nil {
			return usageError{"run", err}
		}
		s.Publish = append(s.Publish, ps...)
	}
	if len(s.Publish) > 0 && (network == "none" || network == "host") {
		return usageError{"run", fmt.Errorf("-p needs a user-mode network: with --net=%s there is nothing to publish through (with --net=host the container's ports already are the host's)", network)}
	}
	for _, h := range s.AddHosts {
		if name, ip, ok := strings.Cut(h, ":"); !ok || name == "" || ip == "" {
			return usageError{"run", fmt.Errorf("--add-host %q must be HOST:IP", h)}
		}
	}
	switch pull {
	case "always", "missing", "never":
	default:
		return usageError{"run", fmt.Errorf("--pull must be always, missing or never, not %q", pull)}
	}
	if fs.Changed("entrypoint") {
		s.Entrypoint = &entrypoint
	}
	if len(*envFiles) > 0 {
		var fromFiles []string
		for _, f := range *envFiles {
			env, err := readEnvFile(f)
			if err != nil {
				return usageError{"run", err}
			}
			fromFiles = append(fromFiles, env...)
		}
		s.Env = append(fromFiles, s.Env...)
	}
	for _, v := range *volumes {
		m, err := parseVolume(g, v)
		if err != nil {
			return usageError{"run", err}
		}
		s.Mounts = append(s.Mounts, m)
	}
	for _, v := range *mounts {
		mo, err := parseMount(v)
		if err != nil {
			return usageError{"run", err}
		}
		m, err := resolveMount(g, mo)
		if err != nil {
			return err
		}
		s.Mounts = append(s.Mounts, m)
	}
	if s.Restart, err = container.ParseRestart(*restart); err != nil {
		return usageError{"run", err}
	}
	if s.Restart.Any() && s.Remove {
		return usageError{"run", fmt.Errorf("conflicting options: --restart %s and --rm (a removed container cannot be restarted): drop one", *restart)}
	}
	if s.Restart.Any() && !*detach {
		return usageError{"run", fmt.Errorf("--restart %s needs -d: only a detached container has a process of its own to restart it", *restart)}
	}
	if s.Labels, err = parseLabels(*labelFiles, *labels); err != nil {
		return usageError{"run", err}
	}
	for _, v := range *tmpfs {
		dst, opts, _ := strings.Cut(v, ":")
		if !strings.HasPrefix(dst, "/") {
			return usageError{"run", fmt.Errorf("--tmpfs %q: the container path must be absolute", v)}
		}
		s.Mounts = append(s.Mounts, container.Mount{Type: "tmpfs", Destination: dst, Options: opts})
	}
	// -e KEY passes the host's value, as in Docker.
	for i, e := range s.Env {
		if !strings.Contains(e, "=") {
			if v, ok := os.LookupEnv(e); ok {
				s.Env[i] = e + "=" + v
			}
		}
	}
	if _, err := container.Capabilities(capAdd, capDrop); err != nil {
		return usageError{"run", err}
	}
	s.CapAdd, s.CapDrop = capAdd, capDrop
	s.Image = fs.Arg(0)
	s.Cmd = fs.Args()[1:]
	s.Net = network
	s.Pull = pull
	s.Registry = reg.options(fs)
	s.ID = container.NewID()
	s.Store = g.store
	s.RunDir = g.paths.Run
	s.Fast = g.fastTarget(s.Image)
	if err := image.EnsureRunDir(g.paths.Run); err != nil {
		return err
	}
	if err := setUserNS(&s, *userNS, fs.Changed("user")); err != nil {
		return err
	}
	if s.Mapping.Kind == idmap.KindSingle {
		s.Store.SquashOwnership()
	}
	if s.StopSignal != "" {
		if _, err := container.SignalByName(s.StopSignal); err != nil {
			return usageError{"run", err}
		}
	}
	if s.Remove && !*detach {
		// Nothing to record: the container is gone when run returns.
		code, err := container.Run(bg, &s)
		if err != nil {
			return err
		}
		if code != 0 {
			return exitError{code}
		}
		return nil
	}
	d := dirs(g)
	c, err := createContainer(d, &s)
	if err != nil {
		return err
	}
	if *detach {
		if err := container.StartDetached(d, c); err != nil {
			var se *container.StartError
			if errors.As(err, &se) {
				fmt.Fprintf(os.Stderr, "unroot: %s\n", se.Msg)
				return exitError{se.Code}
			}
			return err
		}
		fmt.Println(c.ID)
		return nil
	}
	code, err := container.RunAttached(bg, d, c, &container.RunIO{})
	if err != nil {
		return err
	}
	if code != 0 {
		return exitError{code}
	}
	return nil
}

func cmdPull(g *globals, args []string) error {
	fs := newFlags("pull")
	var reg registryFlags
	reg.add(fs)
	quiet := fs.BoolP("quiet", "q", false, "suppress progress output")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"pull", fmt.Errorf("requires exactly 1 argument: IMAGE")}
	}
	if _, err := image.Normalize(fs.Arg(0)); err != nil {
		return usageError{"pull", err}
	}
	return withStore(g, func(store storage.Store) error {
		progress := io.Writer(os.Stderr)
		if *quiet {
			progress = nil
		}
		img, err := image.Pull(bg, store, fs.Arg(0), reg.options(fs), progress)
		if err != nil {
			return err
		}
		saveFastRecord(g, store, fs.Arg(0))
		fmt.Println(img.ID)
		return nil
	})
}

// saveFastRecord lets the next `run --rm` of ref take the fast path.
func saveFastRecord(g *globals, store storage.Store, ref string) {
	t := g.fastTarget(ref)
	stamps := container.FastStamps(g.store, t.ConfigDir)
	img, err := image.Lookup(store, ref)
	if err != nil {
		return
	}
	cfg, err := image.Config(bg, store, img)
	if err != nil {
		return
	}
	container.SaveFastRecord(t, stamps, g.paths.Run, g.store, store, img, cfg)
}

func cmdImages(g *globals, args []string) error {
	fs := newFlags("images")
	quiet := fs.BoolP("quiet", "q", false, "show only image IDs")
	noTrunc := fs.Bool("no-trunc", false, "do not truncate IDs")
	if err := parse(fs, args); err != nil {
		return err
	}
	return withStore(g, func(store storage.Store) error {
		list, err := image.List(store)
		if err != nil {
			return err
		}
		if *quiet {
			seen := map[string]bool{}
			for _, s := range list {
				id := s.ID
				if !*noTrunc {
					id = image.ShortID(id)
				}
				if !seen[id] {
					seen[id] = true
					fmt.Println(id)
				}
			}
			return nil
		}
		w := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
		fmt.Fprintln(w, "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE")
		for _, s := range list {
			id := s.ID
			if !*noTrunc {
				id = image.ShortID(id)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", s.Repository, s.Tag, id,
				units.HumanDuration(time.Since(time.Unix(s.Created, 0)))+" ago", units.HumanSizeWithPrecision(float64(s.Size), 3))
		}
		return w.Flush()
	})
}

func cmdRmi(g *globals, args []string) error {
	fs := newFlags("rmi")
	force := fs.BoolP("force", "f", false, "remove containers using the image too")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 1 {
		return usageError{"rmi", fmt.Errorf("requires at least 1 argument: IMAGE")}
	}
	return withStore(g, func(store storage.Store) error {
		failed := false
		for _, name := range fs.Args() {
			untagged, deleted, err := image.Remove(store, name, *force)
			if err != nil {
				fmt.Fprintf(os.Stderr, "unroot: %v\n", err)
				failed = true
				continue
			}
			for _, u := range untagged {
				fmt.Printf("Untagged: %s\n", u)
			}
			if deleted != "" {
				fmt.Printf("Deleted: %s\n", deleted)
			}
		}
		if failed {
			return exitError{1}
		}
		return nil
	})
}

func cmdLogin(g *globals, args []string) error {
	fs := newFlags("login")
	var reg registryFlags
	reg.add(fs)
	user := fs.StringP("username", "u", "", "username")
	pass := fs.StringP("password", "p", "", "password")
	passStdin := fs.Bool("password-stdin", false, "read the password from stdin")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"login", fmt.Errorf("requires exactly 1 argument: REGISTRY")}
	}
	if *passStdin {
		b, err := readAll(os.Stdin)
		if err != nil {
			return err
		}
		*pass = strings.TrimRight(string(b), "\r\n")
	}
	if *user == "" || *pass == "" {
		return usageError{"login", fmt.Errorf("give --username and --password (or --password-stdin)")}
	}
	path, err := image.Login(bg, fs.Arg(0), reg.options(fs), *user, *pass)
	if err != nil {
		return err
	}
	fmt.Printf("Login Succeeded! (credentials stored in %s)\n", path)
	return nil
}

func cmdInfo(g *globals, args []string) error {
	fs := newFlags("info")
	if err := parse(fs, args); err != nil {
		return err
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	m := mapping()
	fmt.Printf("unroot version: %s\n", version)
	fmt.Printf("kernel: %s\n", unix.ByteSliceToString(uts.Release[:]))
	fmt.Printf("user: uid %d, gid %d\n", os.Getuid(), os.Getgid())
	fmt.Printf("id mapping: %s (%s)\n", m.Kind, m.Reason)
	fmt.Printf("  uid_map: %s\n", strings.ReplaceAll(strings.TrimSpace(idmap.Format(m.UIDs)), "\n", "; "))
	fmt.Printf("  gid_map: %s\n", strings.ReplaceAll(strings.TrimSpace(idmap.Format(m.GIDs)), "\n", "; "))
	for _, h := range []string{"newuidmap", "newgidmap"} {
		fmt.Printf("%s: %s\n", h, helperState(h))
	}
	fmt.Printf("storage: driver %s, root %s\n", g.store.Driver, g.store.GraphRoot)
	fmt.Printf("overlay: %s\n", overlayInfo(g))
	fmt.Printf("run directory: %s\n", g.paths.Run)
	if d, reason, err := slirp.Choose("auto"); err == nil {
		fmt.Printf("network: %s (%s); also none, host\n", d, reason)
	} else {
		fmt.Printf("network: none, host (user-mode network unavailable: %v)\n", err)
	}
	for _, s := range []string{"user/max_user_namespaces", "kernel/unprivileged_userns_clone", "kernel/apparmor_restrict_unprivileged_userns"} {
		if b, err := os.ReadFile("/proc/sys/" + s); err == nil {
			fmt.Printf("sysctl %s: %s\n", strings.ReplaceAll(s, "/", "."), strings.TrimSpace(string(b)))
		}
	}
	return nil
}

func helperState(name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		return "not found (install the uidmap package)"
	}
	st, err := os.Stat(p)
	if err != nil {
		return p
	}
	if st.Mode()&os.ModeSetuid != 0 {
		return p + " (setuid)"
	}
	return p + " (not setuid: needs file capabilities)"
}

func readAll(f *os.File) ([]byte, error) {
	var b []byte
	buf := make([]byte, 4096)
	for {
		n, err := f.Read(buf)
		b = append(b, buf[:n]...)
		if err != nil {
			return b, nil
		}
	}
}

func cmdLoad(g *globals, args []string) error {
	fs := newFlags("load")
	input := fs.StringP("input", "i", "", "read from a tar archive file (docker-archive or oci-archive) or an OCI layout directory, instead of STDIN")
	quiet := fs.BoolP("quiet", "q", false, "suppress progress output")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"load", fmt.Errorf("takes no arguments: use -i FILE")}
	}
	return withStore(g, func(store storage.Store) error {
		path := *input
		if path == "" {
			// docker load reads the archive from stdin.
			tmp, err := os.CreateTemp(store.GraphRoot(), "stdin-")
			if err != nil {
				return err
			}
			defer os.Remove(tmp.Name())
			if _, err := io.Copy(tmp, os.Stdin); err != nil {
				tmp.Close()
				return fmt.Errorf("reading the archive from stdin: %w", err)
			}
			tmp.Close()
			path = tmp.Name()
		}
		var progress io.Writer = os.Stderr
		if *quiet {
			progress = nil
		}
		names, err := image.Load(bg, store, path, progress)
		for _, n := range names {
			fmt.Printf("Loaded image: %s\n", n)
		}
		return err
	})
}

func cmdSave(g *globals, args []string) error {
	fs := newFlags("save")
	output := fs.StringP("output", "o", "", "write to a file, instead of STDOUT")
	format := fs.String("format", "docker-archive", "docker-archive or oci-archive")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"save", fmt.Errorf("requires exactly 1 argument: IMAGE")}
	}
	if *output == "" && isTerminal(os.Stdout) {
		return usageError{"save", fmt.Errorf("refusing to write an archive to a terminal: use -o FILE or redirect stdout")}
	}
	return withStore(g, func(store storage.Store) error {
		path := *output
		if path == "" {
			tmp, err := os.CreateTemp(store.GraphRoot(), "save-")
			if err != nil {
				return err
			}
			tmp.Close()
			os.Remove(tmp.Name())
			path = tmp.Name()
			defer os.Remove(path)
		}
		if err := image.Save(bg, store, fs.Arg(0), path, *format); err != nil {
			return err
		}
		if *output == "" {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(os.Stdout, f)
			return err
		}
		return nil
	})
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// withStore runs f with the image store open, as root in unroot's user
// namespace (the command re-executes itself there first).
func withStore(g *globals, f func(storage.Store) error) error {
	if done, err := inUserNS(g); done {
		return err
	}
	store, err := image.Open(g.store)
	if err != nil {
		return err
	}
	defer store.Shutdown(false)
	return f(store)
}
