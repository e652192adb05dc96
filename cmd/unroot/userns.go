package main

import (
	"fmt"

	"github.com/unroot/unroot/container"
	"github.com/unroot/unroot/idmap"
)

// setUserNS chooses the container's id mapping from --userns: "" (root
// inside is you, other ids are your subordinate ids, or just you) or
// keep-id (you are yourself inside, and the default user).
func setUserNS(s *container.Spec, mode string, userGiven bool) error {
	s.Mapping = mapping()
	switch mode {
	case "", "private", "default":
		return nil
	case "keep-id":
		k, err := container.NewKeepID(idmap.CurrentCaller(), s.Mapping)
		if err != nil {
			return err
		}
		s.KeepID = k
		if !userGiven {
			s.User = k.User()
		}
		return nil
	case "host":
		return usageError{"run", fmt.Errorf("--userns=host is not possible: unroot is unprivileged and needs a user namespace to be root for the container's mounts; use --userns=keep-id to keep your own uid and gid inside")}
	default:
		return usageError{"run", fmt.Errorf("unknown --userns %q: use keep-id (or leave it out)", mode)}
	}
}
