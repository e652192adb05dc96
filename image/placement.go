package image

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/sirupsen/logrus"
	"go.podman.io/storage"

	"github.com/unroot/unroot/fuseoverlay"
	"github.com/unroot/unroot/image/paths"
)

// UserConfig is the user's storage configuration, ~/.config/unroot/storage.conf
// (or unroot.conf), TOML:
//
//	root = "/scratch/me/unroot"       # the image store (graph root)
//	runroot = "/run/user/1000/unroot"   # run-time state
//	overlay = "auto"                    # auto, native, fuse or vfs
//	image_stores = ["/shared/images"]   # read-only image stores to use too
//
// Command-line flags win over the file.
type UserConfig struct {
	Root        string   `toml:"root"`
	RunRoot     string   `toml:"runroot"`
	Overlay     string   `toml:"overlay"`
	ImageStores []string `toml:"image_stores"`
	File        string   `toml:"-"` // where it was read from
}

// ConfigFiles are the names tried in the config directory, in order.
var ConfigFiles = []string{"storage.conf", "unroot.conf"}

// LoadConfig reads the first config file of dir; none is no error.
func LoadConfig(dir string) (UserConfig, error) {
	var c UserConfig
	for _, name := range ConfigFiles {
		f := filepath.Join(dir, name)
		md, err := toml.DecodeFile(f, &c)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return c, fmt.Errorf("reading %s: %w", f, err)
		}
		if und := md.Undecoded(); len(und) > 0 {
			keys := make([]string, len(und))
			for i, k := range und {
				keys[i] = k.String()
			}
			return c, fmt.Errorf("%s: unknown keys %s (known: root, runroot, overlay, image_stores)", f, strings.Join(keys, ", "))
		}
		if err := fuseoverlay.Valid(c.Overlay); err != nil {
			return c, fmt.Errorf("%s: overlay: %w", f, err)
		}
		c.File = f
		for _, s := range c.ImageStores {
			if !filepath.IsAbs(s) {
				return c, fmt.Errorf("%s: image_stores: %q is not an absolute path", f, s)
			}
		}
		return c, nil
	}
	return c, nil
}

// Settings are the storage flags of the command line ("" / nil: not given).
type Settings struct {
	Root, RunRoot, Overlay string
	ImageStores            []string
}

// Configure merges flags, the config file and the defaults into the store
// options (and p.Run), and moves a default store off a network file system.
func Configure(p *Paths, flags Settings) (StoreOptions, error) {
	cfg, err := LoadConfig(p.Config)
	if err != nil {
		return StoreOptions{}, err
	}
	if err := fuseoverlay.Valid(flags.Overlay); err != nil {
		return StoreOptions{}, fmt.Errorf("--overlay: %w", err)
	}
	switch {
	case flags.RunRoot != "":
		p.Run = flags.RunRoot
	case cfg.RunRoot != "":
		p.Run = expand(cfg.RunRoot)
	}
	o := DefaultStoreOptions(*p)
	o.Overlay = first(flags.Overlay, cfg.Overlay, fuseoverlay.Auto)
	o.ImageStores = cfg.ImageStores
	if len(flags.ImageStores) > 0 {
		o.ImageStores = flags.ImageStores
	}
	for i, s := range o.ImageStores {
		abs, err := filepath.Abs(expand(s))
		if err != nil {
			return o, err
		}
		o.ImageStores[i] = abs
	}
	switch {
	case flags.Root != "":
		o.GraphRoot, _ = filepath.Abs(flags.Root)
	case cfg.Root != "":
		o.GraphRoot = expand(cfg.Root)
	default:
		if err := placeDefault(&o, cfg); err != nil {
			return o, err
		}
	}
	if d, ok := fuseoverlay.Cached(o.GraphRoot); ok {
		o.Driver = d.Driver() // for display; Open settles it
	}
	return o, nil
}

// placeDefault keeps the default store off network file systems (NFS home
// directories on HPC clusters): overlay in a user namespace is refused
// there, locking and xattrs are unreliable, and every layer would cross the
// network. The store goes to node-local /var/tmp/unroot-$UID/storage and
// the user is told once.
func placeDefault(o *StoreOptions, cfg UserConfig) error {
	fsi, err := fuseoverlay.Examine(o.GraphRoot)
	if err != nil || fsi.Network == "" {
		return nil
	}
	if hasStore(o.GraphRoot) {
		// An existing store stays where it is: moving it would hide its images.
		notifyOnce(filepath.Join(o.GraphRoot, ".unroot-network-fs-notice"), fmt.Sprintf(
			"unroot: note: the image store %s is on %s, which is slow and does not allow native overlay.\n"+
				"  To use a local directory put  root = \"%s\"  in %s (this message is shown once).",
			o.GraphRoot, fsi.Network, localRoot(), configPath(cfg)))
		return nil
	}
	local := localRoot()
	parent := filepath.Dir(local)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return fmt.Errorf("the default image store %s is on %s; creating a local one at %s: %w\n  fix: set root = \"DIR\" in %s, or pass --root DIR", o.GraphRoot, fsi.Network, local, err, configPath(cfg))
	}
	if st, err := os.Lstat(parent); err != nil || !st.IsDir() || (paths.OwnerOf(st) != os.Getuid() && os.Getuid() != 0) {
		return fmt.Errorf("%s is not a directory owned by you: remove it, or set root = \"DIR\" in %s", parent, configPath(cfg))
	}
	notifyOnce(filepath.Join(parent, ".network-fs-notice"), fmt.Sprintf(
		"unroot: note: %s is on %s; keeping the image store on this machine's local disk instead: %s\n"+
			"  To choose another place put  root = \"DIR\"  in %s (or pass --root DIR). This message is shown once.",
		o.GraphRoot, fsi.Network, local, configPath(cfg)))
	o.GraphRoot = local
	return nil
}

// localRoot is the node-local store: /var/tmp survives reboots, /tmp may not.
func localRoot() string {
	return filepath.Join("/var/tmp", "unroot-"+strconv.Itoa(HostUID()), "storage")
}

func configPath(cfg UserConfig) string {
	if cfg.File != "" {
		return cfg.File
	}
	return "~/.config/unroot/storage.conf"
}

func hasStore(root string) bool {
	for _, d := range []string{"overlay-images", "vfs-images", "overlay-layers", "vfs-layers"} {
		if _, err := os.Stat(filepath.Join(root, d)); err == nil {
			return true
		}
	}
	return false
}

// notifyOnce prints msg to stderr the first time marker is missing. The
// user-namespace stages re-run the same set-up: they stay quiet.
func notifyOnce(marker, msg string) {
	if os.Getenv("_CONTAINERS_ROOTLESS_UID") != "" {
		return
	}
	if _, err := os.Stat(marker); err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, msg)
	_ = os.WriteFile(marker, []byte(msg+"\n"), 0o600)
}

func expand(s string) string {
	if rest, ok := strings.CutPrefix(s, "~/"); ok {
		return filepath.Join(os.Getenv("HOME"), rest)
	}
	return os.ExpandEnv(s)
}

func first(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// applyStrategy settles the driver and its options before the store is
// opened (as root in the user namespace): the overlay strategy (a recorded
// decision, probed once per store and kernel) and the read-only image stores.
func applyStrategy(o StoreOptions) (StoreOptions, fuseoverlay.Decision, error) {
	foreign := ""
	for _, s := range o.ImageStores {
		if st, err := os.Stat(s); err == nil && paths.OwnerOf(st) != os.Getuid() {
			foreign = s // another user's (unmapped ids show as the overflow uid)
		}
	}
	d, err := fuseoverlay.Resolve(o.GraphRoot, o.Overlay, foreign != "")
	if err != nil {
		return o, d, err
	}
	opts := append([]string(nil), o.DriverOptions...)
	if len(o.ImageStores) > 0 {
		for _, s := range o.ImageStores {
			if err := sharedStoreUsable(s, d); err != nil {
				return o, d, err
			}
		}
		opts = append(opts, "overlay.imagestore="+strings.Join(o.ImageStores, ","))
	}
	if foreign != "" {
		switch d.Strategy {
		case fuseoverlay.Native:
			return o, d, fmt.Errorf("the image store %s belongs to another user, and this store (%s) uses the kernel's overlay, which cannot copy up files of ids outside your user namespace.\n"+
				"  fix: use a store of its own for it, which will use fuse-overlayfs: add --root DIR (e.g. --root ~/.local/share/unroot/shared-storage), or set root in ~/.config/unroot/storage.conf", foreign, o.GraphRoot)
		case fuseoverlay.Fuse:
			// The shared layers were squashed to their creator (root in
			// the image): show them so, whatever our mapping.
			opts = append(opts, "overlay.mountopt=squash_to_root")
		}
	}
	fuseoverlay.Prepare(o.GraphRoot, o.RunRoot, d)
	o.Driver = d.Driver()
	o.DriverOptions = d.Options(opts)
	logrus.Debugf("store %s: driver %s, options %v (%s)", o.GraphRoot, o.Driver, o.DriverOptions, d.Reason)
	return o, d, nil
}

// sharedStoreUsable checks a read-only image store can be layered by our
// strategy: the same driver family, and no fuse-overlayfs whiteouts under
// the kernel's overlay.
func sharedStoreUsable(dir string, d fuseoverlay.Decision) error {
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("image store %s: %w", dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("image store %s is not a directory", dir)
	}
	theirs := ""
	if c, ok := fuseoverlay.Cached(dir); ok {
		theirs = c.Strategy
	} else {
		theirs, _ = fuseoverlay.Existing(dir)
	}
	if theirs == "" {
		return fmt.Errorf("image store %s holds no images: populate it first (unroot --root %s pull IMAGE)", dir, dir)
	}
	if (theirs == fuseoverlay.VFS) != (d.Strategy == fuseoverlay.VFS) {
		return fmt.Errorf("image store %s was created with %s, and this store uses %s: they cannot be combined; use --overlay=%s with a --root of its own", dir, theirs, d.Strategy, theirs)
	}
	if theirs == fuseoverlay.Fuse && d.Strategy == fuseoverlay.Native {
		return fmt.Errorf("image store %s holds fuse-overlayfs layers, which the kernel's overlay cannot read: use --overlay=fuse (with a --root of its own)", dir)
	}
	return nil
}

// checkOpened is a safety net: containers/storage must not have switched a
// native store to fuse-overlayfs on its own.
func checkOpened(s storage.Store, o StoreOptions, d fuseoverlay.Decision) (storage.Store, error) {
	if d.Strategy == fuseoverlay.Native && fuseoverlay.UsesMountProgram(o.GraphRoot) {
		_, _ = s.Shutdown(false)
		_ = fuseoverlay.ClearMountProgramFlag(o.GraphRoot)
		_ = fuseoverlay.Forget(o.GraphRoot)
		return nil, fmt.Errorf("containers/storage switched the store %s to fuse-overlayfs on its own although native overlay was chosen; that record is undone: run the command again (or choose --overlay=fuse)", o.GraphRoot)
	}
	return s, nil
}
