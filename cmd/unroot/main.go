package main

import (
	_ "github.com/coreos/go-systemd/v22/dbus"
	_ "github.com/spf13/pflag"
	_ "go.podman.io/image/v5/copy"
	_ "go.podman.io/image/v5/docker"
	_ "go.podman.io/image/v5/storage"
	_ "go.podman.io/image/v5/signature"
	_ "go.podman.io/image/v5/oci/archive"
	_ "go.podman.io/image/v5/docker/archive"
	_ "go.podman.io/storage"
	_ "golang.org/x/sys/unix"
	_ "golang.org/x/term"
)

func main() {}
