package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker/archive"
	"go.podman.io/image/v5/docker/reference"
	ociarchive "go.podman.io/image/v5/oci/archive"
	"go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/signature"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
)

func policyContext() (*signature.PolicyContext, error) {
	return signature.NewPolicyContext(&signature.Policy{Default: []signature.PolicyRequirement{signature.NewPRInsecureAcceptAnything()}})
}

// Load copies the images of an archive into the store, like `docker load`:
// a docker-archive (docker save), an oci-archive, or an OCI layout
// directory. Images are named after their tags (busybox:latest becomes
// docker.io/library/busybox:latest, as if pulled). It returns the names.
func Load(ctx context.Context, store storage.Store, path string, progress io.Writer) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	if st.IsDir() {
		return loadLayout(ctx, store, path, progress)
	}
	kind, err := archiveKind(path)
	if err != nil {
		return nil, err
	}
	if kind == "docker" {
		return loadDockerArchive(ctx, store, path, progress)
	}
	// An OCI archive is an OCI layout in a tar: unpack it next to the
	// store (same filesystem, no /tmp size limits) and load the layout.
	tmp, err := os.MkdirTemp(store.GraphRoot(), "load-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if err := untar(path, tmp); err != nil {
		return nil, fmt.Errorf("unpacking %s: %w", path, err)
	}
	return loadLayout(ctx, store, tmp, progress)
}

func archiveKind(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("%s is not an image archive (a tar from docker save, podman save or an OCI archive): %w", path, err)
		}
		switch strings.TrimPrefix(h.Name, "./") {
		case "manifest.json":
			return "docker", nil
		case "index.json", "oci-layout":
			return "oci", nil
		}
	}
	return "", fmt.Errorf("%s has neither manifest.json (docker save) nor index.json (OCI): not an image archive", path)
}

func untar(path, dir string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean("/" + h.Name)
		target := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, tr); err != nil {
				out.Close()
				return err
			}
			if err := out.Close(); err != nil {
				return err
			}
		}
	}
}

func copyInto(ctx context.Context, store storage.Store, src types.ImageReference, name reference.Named, progress io.Writer) error {
	dst, err := istorage.Transport.NewStoreReference(store, name, "")
	if err != nil {
		return err
	}
	pc, err := policyContext()
	if err != nil {
		return err
	}
	defer pc.Destroy()
	_, err = copy.Image(ctx, pc, dst, src, &copy.Options{ReportWriter: progress})
	if err != nil {
		if e := explainIDs(err); e != nil {
			return e
		}
	}
	return err
}

func loadLayout(ctx context.Context, store storage.Store, dir string, progress io.Writer) ([]string, error) {
	list, err := layout.List(dir)
	if err != nil {
		return nil, fmt.Errorf("reading the OCI layout %s: %w", dir, err)
	}
	var names []string
	for _, r := range list {
		refName := r.ManifestDescriptor.Annotations["org.opencontainers.image.ref.name"]
		if refName == "" {
			continue
		}
		named, err := Normalize(refName)
		if err != nil {
			return names, fmt.Errorf("image %q in %s: %w", refName, dir, err)
		}
		if err := copyInto(ctx, store, r.Reference, named, progress); err != nil {
			return names, fmt.Errorf("loading %s: %w", refName, err)
		}
		names = append(names, named.String())
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%s holds no tagged image", dir)
	}
	return names, nil
}

func loadDockerArchive(ctx context.Context, store storage.Store, path string, progress io.Writer) ([]string, error) {
	r, err := archive.NewReader(nil, path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	defer r.Close()
	images, err := r.List()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, refs := range images {
		if len(refs) == 0 {
			continue
		}
		var tagged []reference.Named
		for _, ref := range refs {
			if n := ref.DockerReference(); n != nil {
				tagged = append(tagged, n)
			}
		}
		if len(tagged) == 0 {
			continue // untagged images have no name to run them by
		}
		if err := copyInto(ctx, store, refs[0], tagged[0], progress); err != nil {
			return names, fmt.Errorf("loading %s: %w", tagged[0], err)
		}
		names = append(names, tagged[0].String())
		if len(tagged) > 1 {
			img, err := store.Image(tagged[0].String())
			if err == nil {
				all := append([]string{}, img.Names...)
				for _, n := range tagged[1:] {
					all = append(all, n.String())
					names = append(names, n.String())
				}
				_ = store.SetNames(img.ID, all)
			}
		}
	}
	return names, nil
}

// Save writes an image to path as a docker-archive (what `docker save`
// writes, the default) or an oci-archive.
func Save(ctx context.Context, store storage.Store, name, path, format string) error {
	img, err := Lookup(store, name)
	if err != nil {
		return err
	}
	src, err := istorage.Transport.NewStoreReference(store, nil, img.ID)
	if err != nil {
		return err
	}
	var tag reference.NamedTagged
	if ref, err := Normalize(name); err == nil {
		tag, _ = ref.(reference.NamedTagged)
	}
	if tag == nil && len(img.Names) > 0 {
		if ref, err := Normalize(img.Names[0]); err == nil {
			tag, _ = ref.(reference.NamedTagged)
		}
	}
	pc, err := policyContext()
	if err != nil {
		return err
	}
	defer pc.Destroy()
	switch format {
	case "", "docker-archive":
		w, err := archive.NewWriter(nil, path)
		if err != nil {
			return err
		}
		dst, err := w.NewReference(tag)
		if err != nil {
			w.Close()
			return err
		}
		if _, err := copy.Image(ctx, pc, dst, src, nil); err != nil {
			w.Close()
			return err
		}
		return w.Close()
	case "oci-archive":
		refName := ""
		if tag != nil {
			refName = reference.FamiliarString(tag)
		}
		dst, err := ociarchive.NewReference(path, refName)
		if err != nil {
			return err
		}
		_, err = copy.Image(ctx, pc, dst, src, nil)
		return err
	default:
		return fmt.Errorf("unknown format %q: use docker-archive or oci-archive", format)
	}
}
