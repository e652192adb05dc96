package image

import (
	"context"
	"errors"
	"fmt"
	"strings"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker/reference"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/storage"

	"github.com/unroot/unroot/container/scratch"
)

// ErrNotFound is returned by Lookup for an image that is not in the store.
var ErrNotFound = errors.New("image not known")

// Lookup finds an image by name (normalised like Docker), by full ID or by
// a unique ID prefix.
func Lookup(store storage.Store, name string) (*storage.Image, error) {
	if ref, err := Normalize(name); err == nil {
		if img, err := store.Image(ref.String()); err == nil {
			return img, nil
		}
	}
	id := strings.TrimPrefix(name, "sha256:")
	if img, err := store.Image(id); err == nil {
		return img, nil
	}
	return nil, fmt.Errorf("%s: %w (unroot images lists the stored ones; unroot pull %s fetches it)", name, ErrNotFound, name)
}

// Config reads the OCI config of a stored image.
func Config(ctx context.Context, store storage.Store, img *storage.Image) (*v1.Image, error) {
	ref, err := istorage.Transport.NewStoreReference(store, nil, img.ID)
	if err != nil {
		return nil, err
	}
	src, err := ref.NewImage(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("reading image %s: %w", shortID(img.ID), err)
	}
	defer src.Close()
	cfg, err := src.OCIConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the config of image %s: %w", shortID(img.ID), err)
	}
	return cfg, nil
}

// Summary is one row of `unroot images`.
type Summary struct {
	ID         string   `json:"id"`
	Repository string   `json:"repository"`
	Tag        string   `json:"tag"`
	Names      []string `json:"names"`
	Created    int64    `json:"created"`
	Size       int64    `json:"size"`
}

// List returns one summary per name (and one for an untagged image).
func List(store storage.Store) ([]Summary, error) {
	imgs, err := store.Images()
	if err != nil {
		return nil, err
	}
	var out []Summary
	for _, img := range imgs {
		size, _ := store.ImageSize(img.ID)
		base := Summary{ID: img.ID, Names: img.Names, Created: img.Created.Unix(), Size: size}
		if len(img.Names) == 0 {
			s := base
			s.Repository, s.Tag = "<none>", "<none>"
			out = append(out, s)
			continue
		}
		for _, n := range img.Names {
			s := base
			s.Repository, s.Tag = n, "<none>"
			if ref, err := reference.ParseNormalizedNamed(n); err == nil {
				s.Repository = ref.Name()
				if t, ok := ref.(reference.Tagged); ok {
					s.Tag = t.Tag()
				}
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// Remove untags name from its image, and deletes the image (and layers no
// other image uses) when that was its last name or name is an ID.
func Remove(store storage.Store, name string, force bool) (untagged []string, deleted string, err error) {
	img, err := Lookup(store, name)
	if err != nil {
		return nil, "", err
	}
	ref, nerr := Normalize(name)
	byName := nerr == nil && contains(img.Names, ref.String())
	if byName && len(img.Names) > 1 {
		var keep []string
		for _, n := range img.Names {
			if n != ref.String() {
				keep = append(keep, n)
			}
		}
		if err := store.SetNames(img.ID, keep); err != nil {
			return nil, "", err
		}
		return []string{ref.String()}, "", nil
	}
	ctrs, err := store.Containers()
	if err != nil {
		return nil, "", err
	}
	for _, c := range ctrs {
		if c.ImageID == img.ID {
			if !force {
				return nil, "", fmt.Errorf("image %s is used by container %s: remove the container first (unroot rm), or use rmi -f", name, shortID(c.ID))
			}
			if err := store.DeleteContainer(c.ID); err != nil {
				return nil, "", err
			}
		}
	}
	// A fast `run --rm` (package fastrun) mounts the layers without the
	// store knowing.
	tmp := scratch.Dir(store.GraphRoot())
	release, err := scratch.Guard(tmp, true)
	if err != nil {
		return nil, "", err
	}
	defer release()
	if scratch.ImageInUse(tmp, img.ID) {
		return nil, "", fmt.Errorf("image %s is used by a running container (unroot run --rm): wait for it to end, then remove the image", name)
	}
	if _, err := store.DeleteImage(img.ID, true); err != nil {
		return nil, "", fmt.Errorf("removing image %s: %w", name, err)
	}
	return img.Names, img.ID, nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// ShortID is the 12-character form Docker prints.
func ShortID(id string) string { return shortID(id) }
