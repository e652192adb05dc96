package image

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

func unixAccessW(d string) bool { return unix.Access(d, unix.W_OK|unix.X_OK) == nil }

func ownerOf(st os.FileInfo) int {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return int(s.Uid)
	}
	return -1
}
