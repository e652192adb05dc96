package image

import (
	"fmt"
	"regexp"
	"strconv"
)

// containers/storage reports a layer file owned by an id outside the user
// namespace as "... (requested UID:GID for PATH) ... podman system migrate".
var insufficientIDs = regexp.MustCompile(`requested (\d+):(\d+) for ([^)]+)\)`)

// explainIDs turns storage's "potentially insufficient UIDs" failure into
// what it means for an unroot user: which file, which id, and the fix.
func explainIDs(err error) error {
	m := insufficientIDs.FindStringSubmatch(err.Error())
	if m == nil {
		return nil
	}
	uid, _ := strconv.Atoi(m[1])
	need := uid + 1
	if gid, _ := strconv.Atoi(m[2]); gid+1 > need {
		need = gid + 1
	}
	return fmt.Errorf("image file %s is owned by uid %s, gid %s, beyond the ids your user namespace maps\n  fix: an admin gives you a subordinate id range of at least %d ids (e.g. usermod --add-subuids 100000-%d --add-subgids 100000-%d USER; unroot check shows your range); the layer was not stored",
		m[3], m[1], m[2], need, 100000+need-1, 100000+need-1)
}
