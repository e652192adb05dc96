//go:build unroot_tiny

package fastrun

import (
	"errors"
	"os"

	"github.com/unroot/unroot/container/cinit"
)

// The smallest build of the user-facing binary (tag unroot_tiny) has no
// user-mode network: without RootlessKit, its HTTP API and logging, it
// starts several milliseconds sooner, which is the whole of a --net=none
// run's budget. A run that needs a network goes to the build that has it
// (WantsNet).

type childConfig struct{}

type netPlan struct{ bypass bool }

var wantsNet bool

func planNet(*flags) (*netPlan, bool) {
	wantsNet = true
	return nil, false
}

func (*netPlan) start(*Spec, int, *os.File) (func(), error) {
	return nil, errors.New("no user-mode network in this build")
}

func configureNet(*Spec) error { return errors.New("no user-mode network in this build") }

func (*netPlan) direct() bool { return false }

func (*netPlan) link(*Spec) (*cinit.Link, []*os.File, error) { return nil, nil, nil }

// WantsNet reports whether Try left a run to the full unroot only for its
// user-mode network, which the build with the network can do fast.
func WantsNet() bool { return wantsNet }
