package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/docker/go-units"
	"go.podman.io/storage"

	"github.com/unroot/unroot/container/scratch"
	"github.com/unroot/unroot/fuseoverlay"
	"github.com/unroot/unroot/image"
)

// cmdSystem is `unroot system df|prune|reset|check|share`.
func cmdSystem(g *globals, args []string) error {
	sub := ""
	if len(args) > 0 {
		sub, args = args[0], args[1:]
	}
	switch sub {
	case "df":
		return systemDF(g, args)
	case "prune":
		return systemPrune(g, args)
	case "reset":
		return systemReset(g, args)
	case "check":
		return systemCheck(g, args)
	case "share":
		return systemShare(g, args)
	case "", "-h", "--help", "help":
		fmt.Fprint(os.Stderr, `Usage: unroot system COMMAND [flags]

Manage the image store.

Commands:
  df      show disk use per image, container and shared layer
  prune   remove stopped containers, dangling images and orphaned layers
  reset   remove the whole store (-f)
  check   check the store's consistency (--repair to fix it)
  share   make a store populated with one id readable by other users
`)
		if sub == "" {
			return usageError{"system", errors.New("requires a command: df, prune, reset, check or share")}
		}
		return nil
	}
	return usageError{"system", fmt.Errorf("unknown command %q: use df, prune, reset, check or share", sub)}
}

// overlayInfo is the overlay line of `unroot info`.
func overlayInfo(g *globals) string {
	if d, ok := fuseoverlay.Cached(g.store.GraphRoot); ok {
		s := fmt.Sprintf("%s (%s)", d.Strategy, d.Reason)
		if d.Kernel != fuseoverlay.Kernel() {
			s += "; recorded on kernel " + d.Kernel + ", probed again at next use"
		}
		if g.store.Overlay != "" && g.store.Overlay != fuseoverlay.Auto && g.store.Overlay != d.Strategy {
			s += "; --overlay=" + g.store.Overlay + " was asked for"
		}
		return s
	}
	fuse := "fuse-overlayfs usable"
	if _, err := fuseoverlay.FuseUsable(); err != nil {
		fuse = strings.SplitN(err.Error(), "\n", 2)[0]
	}
	return fmt.Sprintf("%s, not decided yet for this store (the first pull or run probes native overlay; %s)", g.store.Overlay, fuse)
}

// ---------------------------------------------------------------- df

func systemDF(g *globals, args []string) error {
	fs := newFlags("system")
	verbose := fs.BoolP("verbose", "v", false, "show each image and container")
	if err := parse(fs, args); err != nil {
		return err
	}
	return withStore(g, func(store storage.Store) error {
		layers, err := store.Layers()
		if err != nil {
			return err
		}
		byID := map[string]storage.Layer{}
		for _, l := range layers {
			byID[l.ID] = l
		}
		size := func(l storage.Layer) int64 {
			if l.UncompressedSize > 0 {
				return l.UncompressedSize
			}
			if n, err := store.DiffSize(l.Parent, l.ID); err == nil {
				return n
			}
			return 0
		}
		imgs, err := store.Images()
		if err != nil {
			return err
		}
		ctrs, err := store.Containers()
		if err != nil {
			return err
		}
		users := map[string]int{} // layer -> images using it
		chains := map[string][]string{}
		for _, img := range imgs {
			seen := map[string]bool{}
			for id := img.TopLayer; id != "" && !seen[id]; id = byID[id].Parent {
				seen[id] = true
				chains[img.ID] = append(chains[img.ID], id)
				users[id]++
			}
		}
		ctrsOf := map[string]int{}
		for _, c := range ctrs {
			ctrsOf[c.ImageID]++
		}
		var total, active, reclaim, shared int64
		type row struct {
			name, id          string
			size, shared, own int64
			ctrs              int
			ro                bool
		}
		var rows []row
		for _, img := range imgs {
			r := row{id: image.ShortID(img.ID), ctrs: ctrsOf[img.ID], ro: img.ReadOnly, name: "<none>"}
			if len(img.Names) > 0 {
				r.name = img.Names[0]
			}
			for _, id := range chains[img.ID] {
				n := size(byID[id])
				r.size += n
				if users[id] > 1 {
					r.shared += n
				} else {
					r.own += n
				}
			}
			rows = append(rows, r)
			if r.ctrs > 0 {
				active++
			} else if !r.ro {
				reclaim += r.own
			}
		}
		for id, n := range users {
			if l, ok := byID[id]; ok && !l.ReadOnly {
				total += size(l)
				if n > 1 {
					shared += size(l)
				}
			}
		}
		var ctrTotal int64
		ctrSizes := map[string]int64{}
		for _, c := range ctrs {
			if n, err := store.ContainerSize(c.ID); err == nil {
				ctrSizes[c.ID] = n
				ctrTotal += n
			}
		}
		var orphans, orphanSize int64
		used := map[string]bool{}
		for id := range users {
			used[id] = true
		}
		for _, c := range ctrs {
			used[c.LayerID] = true
		}
		for _, l := range layers {
			if !used[l.ID] && !l.ReadOnly {
				orphans++
				orphanSize += size(l)
			}
		}
		h := func(n int64) string { return units.HumanSizeWithPrecision(float64(n), 3) }
		w := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
		fmt.Fprintln(w, "TYPE\tTOTAL\tACTIVE\tSIZE\tRECLAIMABLE")
		fmt.Fprintf(w, "Images\t%d\t%d\t%s\t%s\n", len(imgs), active, h(total), h(reclaim))
		fmt.Fprintf(w, "Containers\t%d\t%d\t%s\t%s\n", len(ctrs), 0, h(ctrTotal), h(ctrTotal))
		fmt.Fprintf(w, "Shared layers\t%d\t\t%s\t\n", countShared(users), h(shared))
		fmt.Fprintf(w, "Orphaned layers\t%d\t0\t%s\t%s\n", orphans, h(orphanSize), h(orphanSize))
		if err := w.Flush(); err != nil {
			return err
		}
		if !*verbose {
			return nil
		}
		sort.Slice(rows, func(i, j int) bool { return rows[i].name < rows[j].name })
		fmt.Println("\nImages space usage:")
		w = tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
		fmt.Fprintln(w, "IMAGE\tID\tSIZE\tSHARED SIZE\tUNIQUE SIZE\tCONTAINERS\tSTORE")
		for _, r := range rows {
			where := "own"
			if r.ro {
				where = "read-only"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", r.name, r.id, h(r.size), h(r.shared), h(r.own), r.ctrs, where)
		}
		_ = w.Flush()
		fmt.Println("\nContainers space usage:")
		w = tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
		fmt.Fprintln(w, "CONTAINER ID\tNAMES\tIMAGE\tSIZE")
		for _, c := range ctrs {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", image.ShortID(c.ID), strings.Join(c.Names, ","), image.ShortID(c.ImageID), h(ctrSizes[c.ID]))
		}
		return w.Flush()
	})
}

func countShared(users map[string]int) int {
	n := 0
	for _, u := range users {
		if u > 1 {
			n++
		}
	}
	return n
}

// ---------------------------------------------------------------- prune

// orphanAge: layers no image or container uses are removed only when older
// (a pull in progress has committed layers without an image yet).
const orphanAge = time.Hour

func systemPrune(g *globals, args []string) error {
	fs := newFlags("system")
	all := fs.BoolP("all", "a", false, "also remove images no container uses (not only dangling ones)")
	if err := parse(fs, args); err != nil {
		return err
	}
	return withStore(g, func(store storage.Store) error {
		var freed int64
		var failed bool
		// The fast path's containers run from images without the store
		// knowing (package scratch): the layers of dead ones go, and
		// images live ones use stay, checked under the guard rmi takes.
		tmp := scratch.Dir(store.GraphRoot())
		scratch.Sweep(tmp)
		release, err := scratch.Guard(tmp, true)
		if err != nil {
			return err
		}
		defer release()
		ctrs, err := store.Containers()
		if err != nil {
			return err
		}
		inUse := map[string]bool{}
		for _, c := range ctrs {
			if n, err := store.Mounted(c.LayerID); err == nil && n > 0 && monitorAlive(g, c.ID) {
				inUse[c.ImageID] = true
				continue // running
			}
			n, _ := store.ContainerSize(c.ID)
			_, _ = store.Unmount(c.ID, true)
			if err := store.DeleteContainer(c.ID); err != nil {
				fmt.Fprintf(os.Stderr, "unroot: removing container %s: %v\n", image.ShortID(c.ID), err)
				failed = true
				inUse[c.ImageID] = true
				continue
			}
			freed += n
			fmt.Printf("Deleted container: %s\n", c.ID)
		}
		imgs, err := store.Images()
		if err != nil {
			return err
		}
		for _, img := range imgs {
			if img.ReadOnly || inUse[img.ID] || (len(img.Names) > 0 && !*all) || scratch.ImageInUse(tmp, img.ID) {
				continue
			}
			n, _ := store.ImageSize(img.ID)
			if _, err := store.DeleteImage(img.ID, true); err != nil {
				fmt.Fprintf(os.Stderr, "unroot: removing image %s: %v\n", image.ShortID(img.ID), err)
				failed = true
				continue
			}
			freed += n
			fmt.Printf("Deleted image: %s\n", img.ID)
		}
		// Layers left behind by interrupted pulls (committed, no image yet).
		layers, err := store.Layers()
		if err != nil {
			return err
		}
		imgs, _ = store.Images()
		ctrs, _ = store.Containers()
		used := map[string]bool{}
		byID := map[string]storage.Layer{}
		for _, l := range layers {
			byID[l.ID] = l
		}
		for _, img := range imgs {
			for id := img.TopLayer; id != "" && !used[id]; id = byID[id].Parent {
				used[id] = true
			}
			for _, id := range img.MappedTopLayers {
				used[id] = true
			}
		}
		for _, c := range ctrs {
			used[c.LayerID] = true
		}
		for _, l := range layers {
			if used[l.ID] || l.ReadOnly {
				continue
			}
			for id := l.Parent; id != "" && !used[id]; id = byID[id].Parent {
				used[id] = true // keep an orphan chain's parents until its top goes
			}
		}
		for _, l := range layers {
			if used[l.ID] || l.ReadOnly || time.Since(l.Created) < orphanAge {
				continue
			}
			n := l.UncompressedSize
			if err := store.DeleteLayer(l.ID); err != nil {
				fmt.Fprintf(os.Stderr, "unroot: removing layer %s: %v\n", image.ShortID(l.ID), err)
				failed = true
				continue
			}
			freed += n
			fmt.Printf("Deleted layer: %s\n", l.ID)
		}
		fmt.Printf("Total reclaimed space: %s\n", units.HumanSizeWithPrecision(float64(freed), 3))
		if failed {
			return exitError{1}
		}
		return nil
	})
}

// monitorAlive: a container whose run directory is gone has no monitor (it
// exits removing it); one left by a killed monitor is stale.
func monitorAlive(g *globals, id string) bool {
	_, err := os.Stat(filepath.Join(g.paths.Run, "containers", id))
	return err == nil
}

// ---------------------------------------------------------------- reset

func systemReset(g *globals, args []string) error {
	fs := newFlags("system")
	force := fs.BoolP("force", "f", false, "do not ask: remove the store")
	if err := parse(fs, args); err != nil {
		return err
	}
	root := g.store.GraphRoot
	if !*force {
		return usageError{"system", fmt.Errorf("this removes every image and container in %s (and %s): run unroot system reset -f to confirm", root, filepath.Join(g.paths.Run, "storage"))}
	}
	for _, s := range g.store.ImageStores {
		if filepath.Clean(s) == filepath.Clean(root) {
			return fmt.Errorf("%s is also given as a read-only image store: refusing to remove it", root)
		}
	}
	if done, err := inUserNS(g); done {
		return err
	}
	// Layers are owned by ids of the user namespace: removed from inside it.
	// Nothing is opened: a damaged store must be removable too.
	var errs []string
	for _, d := range []string{root, g.store.RunRoot} {
		if err := removeAll(d); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("removing the store: %s", strings.Join(errs, "; "))
	}
	fmt.Printf("Removed %s\n", root)
	return nil
}

// removeAll deletes a tree, lazily unmounting anything mounted in it and
// making read-only directories writable on the way.
func removeAll(dir string) error {
	if err := os.RemoveAll(dir); err == nil || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = syscall.Unmount(p, syscall.MNT_DETACH)
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

// ---------------------------------------------------------------- check

func systemCheck(g *globals, args []string) error {
	fs := newFlags("system")
	repair := fs.Bool("repair", false, "remove damaged layers, images and containers")
	quick := fs.Bool("quick", false, "skip checking layer contents against their digests")
	reprobe := fs.Bool("reprobe", false, "forget the recorded overlay strategy and probe again")
	if err := parse(fs, args); err != nil {
		return err
	}
	if done, err := inUserNS(g); done {
		return err
	}
	if *reprobe {
		if err := fuseoverlay.Forget(g.store.GraphRoot); err != nil {
			return err
		}
	}
	fuseoverlay.CleanStaleProbes(g.store.GraphRoot)
	store, err := image.Open(g.store)
	if err != nil {
		return err
	}
	defer store.Shutdown(false)
	if d, ok := fuseoverlay.Cached(g.store.GraphRoot); ok {
		fmt.Printf("overlay: %s (%s)\n", d.Strategy, d.Reason)
	}
	opts := storage.CheckEverything()
	if *quick {
		opts = storage.CheckMost()
		opts.LayerDigests = false
	}
	report, err := store.Check(opts)
	if err != nil {
		return fmt.Errorf("checking the store: %w", err)
	}
	n := 0
	show := func(kind string, m map[string][]error) {
		for id, errs := range m {
			for _, e := range errs {
				n++
				fmt.Printf("%s %s: %v\n", kind, image.ShortID(id), e)
			}
		}
	}
	show("layer", report.Layers)
	show("read-only layer", report.ROLayers)
	show("image", report.Images)
	show("read-only image", report.ROImages)
	show("container", report.Containers)
	if n == 0 {
		fmt.Println("store is consistent")
		return nil
	}
	if !*repair {
		fmt.Printf("%d problems: run unroot system check --repair to remove what is damaged (then pull again)\n", n)
		return exitError{1}
	}
	if errs := store.Repair(report, storage.RepairEverything()); len(errs) > 0 {
		for _, e := range errs {
			fmt.Fprintf(os.Stderr, "unroot: repair: %v\n", e)
		}
		return exitError{1}
	}
	fmt.Printf("repaired: %d problems removed; pull damaged images again\n", n)
	return nil
}

// ---------------------------------------------------------------- share

// systemShare makes the store at --root usable by other users as an
// --image-store. The layers must all be owned by one id, the caller's: a
// store populated with a subordinate-id mapping has files owned by ids the
// other users cannot map, and root-only files would be unreadable to them.
// Populate a shared store as a user without a subuid range (single-id
// mapping: ownership is squashed to the caller), then share it.
func systemShare(g *globals, args []string) error {
	flags := newFlags("system")
	group := flags.Bool("group-only", false, "grant read access to the store's group only (chgrp the store first), not to everyone")
	if err := parse(flags, args); err != nil {
		return err
	}
	root := g.store.GraphRoot
	uid, gid := os.Getuid(), os.Getgid()
	var foreign []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil && p == root {
			return err
		}
		if err != nil && errors.Is(err, fs.ErrPermission) {
			// Owned by a subordinate id, without access for us.
			foreign = append(foreign, p+" (unreadable)")
			return fs.SkipDir
		}
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if len(foreign) > 5 {
			return fs.SkipAll
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && (int(st.Uid) != uid || int(st.Gid) != gid) {
			foreign = append(foreign, fmt.Sprintf("%s (uid %d, gid %d)", p, st.Uid, st.Gid))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("examining %s: %w", root, err)
	}
	if len(foreign) > 5 {
		foreign = append(foreign[:5], "...")
	}
	if len(foreign) > 0 {
		return fmt.Errorf("%s holds files owned by other ids than yours (%s): it was populated with a subordinate-id mapping, and other users could not read or layer it.\n  fix: populate the shared store as a user without a /etc/subuid range (ownership is then squashed to that user), e.g. a service account: unroot --root %s pull IMAGE; then unroot --root %s system share", root, strings.Join(foreign, ", "), root, root)
	}
	r, x := os.FileMode(0o004), os.FileMode(0o001)
	if *group {
		r, x = 0o040, 0o010
	}
	n := 0
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		m := info.Mode()
		want := m | r
		if d.IsDir() || m&0o100 != 0 {
			want |= x
		}
		if want != m {
			n++
			return os.Chmod(p, want.Perm()|m&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sharing %s: %w", root, err)
	}
	// Parents must be traversable too.
	for p := filepath.Dir(root); p != "/" && p != "."; p = filepath.Dir(p) {
		if st, err := os.Stat(p); err == nil && st.Mode()&x == 0 {
			fmt.Fprintf(os.Stderr, "unroot: warning: %s is not traversable by others (chmod o+x %s)\n", p, p)
		}
	}
	fmt.Printf("%s is readable by %s (%d modes changed); use it with: unroot --image-store %s run IMAGE (or image_stores = [%q] in ~/.config/unroot/storage.conf)\n",
		root, map[bool]string{true: "its group", false: "everyone"}[*group], n, root, root)
	return nil
}
