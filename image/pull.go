package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/docker/config"
	"go.podman.io/image/v5/signature"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
)

// RegistryOptions are the per-command registry settings (Podman's flags).
type RegistryOptions struct {
	TLSVerify *bool  `json:"tls_verify,omitempty"` // nil: verify
	CertDir   string `json:"cert_dir,omitempty"`
	Creds     string `json:"creds,omitempty"` // user:password
	AuthFile  string `json:"auth_file,omitempty"`
}

// SystemContext turns the options into containers/image settings.
func (o RegistryOptions) SystemContext() (*types.SystemContext, error) {
	sys := &types.SystemContext{
		DockerRegistryUserAgent: "unroot",
		AuthFilePath:            o.AuthFile,
		DockerCertPath:          o.CertDir,
	}
	if sys.AuthFilePath == "" {
		sys.AuthFilePath = os.Getenv("REGISTRY_AUTH_FILE")
	}
	if o.TLSVerify != nil {
		sys.DockerInsecureSkipTLSVerify = types.NewOptionalBool(!*o.TLSVerify)
	}
	if o.Creds != "" {
		user, pass, ok := strings.Cut(o.Creds, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("--creds must be USERNAME:PASSWORD")
		}
		sys.DockerAuthConfig = &types.DockerAuthConfig{Username: user, Password: pass}
	}
	return sys, nil
}

// Normalize turns a user's image name into a full reference the way Docker
// does: busybox -> docker.io/library/busybox:latest.
func Normalize(name string) (reference.Named, error) {
	ref, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return nil, fmt.Errorf("invalid image name %q: %w", name, err)
	}
	return reference.TagNameOnly(ref), nil
}

// Pull copies an image from its registry into the store and returns the
// stored image. Progress goes to progress (nil: quiet).
func Pull(ctx context.Context, store storage.Store, name string, o RegistryOptions, progress io.Writer) (*storage.Image, error) {
	ref, err := Normalize(name)
	if err != nil {
		return nil, err
	}
	sys, err := o.SystemContext()
	if err != nil {
		return nil, err
	}
	src, err := docker.NewReference(ref)
	if err != nil {
		return nil, fmt.Errorf("invalid image name %q: %w", name, err)
	}
	dst, err := istorage.Transport.NewStoreReference(store, ref, "")
	if err != nil {
		return nil, err
	}
	// Podman's default policy: no signature requirement unless configured.
	policy, err := signature.DefaultPolicy(sys)
	if err != nil {
		policy = &signature.Policy{Default: []signature.PolicyRequirement{signature.NewPRInsecureAcceptAnything()}}
	}
	pc, err := signature.NewPolicyContext(policy)
	if err != nil {
		return nil, err
	}
	defer pc.Destroy()
	if progress != nil {
		fmt.Fprintf(progress, "Trying to pull %s...\n", ref.String())
	}
	_, err = copy.Image(ctx, pc, dst, src, &copy.Options{
		SourceCtx:      sys,
		DestinationCtx: sys,
		ReportWriter:   progress,
	})
	if err != nil {
		return nil, explainPull(ref, err)
	}
	img, err := store.Image(ref.String())
	if err != nil {
		return nil, fmt.Errorf("pulled %s but cannot find it in the store: %w", ref, err)
	}
	return img, nil
}

// explainPull adds the likely fix to the errors users meet most.
func explainPull(ref reference.Named, err error) error {
	if e := explainIDs(err); e != nil {
		return fmt.Errorf("pulling %s: %w", ref, e)
	}
	host := reference.Domain(ref)
	msg := err.Error()
	var fix string
	var nerr net.Error
	var oerr *net.OpError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED) || strings.Contains(msg, "connection refused"):
		fix = fmt.Sprintf("nothing answers at %s: check the registry address and that it is running", host)
	case errors.As(err, &oerr) && oerr.Op == "dial", strings.Contains(msg, "no such host"), errors.As(err, &nerr) && nerr.Timeout():
		fix = fmt.Sprintf("registry %s is unreachable: check the name and your network (proxy settings: HTTPS_PROXY)", host)
	case strings.Contains(msg, "server gave HTTP response to HTTPS client"):
		fix = fmt.Sprintf("%s speaks plain HTTP: add --tls-verify=false", host)
	case strings.Contains(msg, "certificate signed by unknown authority") || strings.Contains(msg, "x509:"):
		fix = fmt.Sprintf("the certificate of %s is not trusted: put its CA in ~/.config/containers/certs.d/%s/ca.crt or pass --cert-dir DIR, or --tls-verify=false", host, host)
	case strings.Contains(msg, "unauthorized") || strings.Contains(msg, "authentication required"):
		fix = fmt.Sprintf("log in first: unroot login %s (or pass --creds USER:PASSWORD); if you are logged in, the image may not exist or be private", host)
	case strings.Contains(msg, "manifest unknown") || strings.Contains(msg, "name unknown") || strings.Contains(msg, "not found"):
		fix = fmt.Sprintf("%s has no image %s: check the name and tag", host, reference.FamiliarString(ref))
	case errors.Is(err, syscall.ENOSPC) || strings.Contains(msg, "no space left on device"):
		fix = "the disk holding the image store is full: free space (unroot rmi IMAGE) or move the store (--root DIR)"
	}
	if fix == "" {
		return fmt.Errorf("pulling %s: %w", ref, err)
	}
	return fmt.Errorf("pulling %s: %w\n  fix: %s", ref, err, fix)
}

// Login checks credentials against a registry and stores them in the auth
// file containers/image and Podman read.
func Login(ctx context.Context, registry string, o RegistryOptions, user, pass string) (string, error) {
	sys, err := o.SystemContext()
	if err != nil {
		return "", err
	}
	if sys.AuthFilePath == "" && os.Getenv("XDG_RUNTIME_DIR") == "" {
		// c/image's default lives in XDG_RUNTIME_DIR; without it keep the
		// file where it survives: ~/.config/containers/auth.json.
		sys.AuthFilePath = filepath.Join(os.Getenv("HOME"), ".config", "containers", "auth.json")
	}
	if err := docker.CheckAuth(ctx, sys, user, pass, registry); err != nil {
		return "", fmt.Errorf("logging in to %s: %w", registry, err)
	}
	return config.SetCredentials(sys, registry, user, pass)
}
