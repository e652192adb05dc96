package container

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/unroot/unroot/image"
	"github.com/unroot/unroot/userns"
)

// StagePull is the stage that pulls a missing image for `run`.
const StagePull = "pull"

// PullMain pulls the image of the spec it is sent, as root in unroot's
// user namespace, with the host's network.
func PullMain() int {
	ctl := userns.Enter()
	var m Message
	if err := ctl.Recv(&m); err != nil || m.Spec == nil {
		return fail(ExitSetup, fmt.Errorf("reading the pull request: %v", err))
	}
	s := m.Spec
	store, err := image.Open(s.Store)
	if err != nil {
		return fail(ExitSetup, err)
	}
	defer store.Shutdown(false)
	var progress io.Writer
	if !s.Quiet {
		progress = os.Stderr
	}
	if _, err := image.Pull(context.Background(), store, s.Image, s.Registry, progress); err != nil {
		return fail(ExitSetup, err)
	}
	return 0
}
