package cinit

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
)

// WriteTar writes path (a file, a directory with what is under it, or a
// symlink, not followed) as a tar stream whose top entry is named name.
func WriteTar(w io.Writer, path, name string) error {
	tw := tar.NewWriter(w)
	err := filepath.Walk(path, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(path, p)
		entry := filepath.ToSlash(filepath.Join(name, rel))
		link := ""
		if fi.Mode()&os.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return nil // sockets and the like: skipped
		}
		hdr.Name = entry
		hdr.Uname, hdr.Gname = "", ""
		if fi.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// ExtractTar unpacks a stream written by WriteTar into dir, renaming its
// top entry to top when that is not "". Names are confined to dir: "..",
// absolute names and symlinks on the way cannot lead outside it.
func ExtractTar(r io.Reader, dir, top string) error {
	tr := tar.NewReader(r)
	type dirTime struct {
		path string
		t    time.Time
	}
	var dirs []dirTime
	origTop := ""
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		name := filepath.Clean("/" + hdr.Name)[1:]
		if name == "" {
			continue
		}
		// One tree: entries outside the first entry's top are ignored.
		first, rest, _ := strings.Cut(name, "/")
		if origTop == "" {
			origTop = first
		} else if first != origTop {
			continue
		}
		if top != "" {
			name = filepath.Join(top, rest)
		}
		target, err := securejoin.SecureJoin(dir, name)
		if err != nil {
			return err
		}
		mode := os.FileMode(hdr.Mode) & 0o7777
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o700); err != nil {
				return err
			}
			_ = os.Chmod(target, mode)
			dirs = append(dirs, dirTime{target, hdr.ModTime})
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			_ = os.Remove(target)
			f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_NOFOLLOW, mode)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			f.Close()
			if err != nil {
				return err
			}
			_ = os.Chmod(target, mode)
			_ = os.Chtimes(target, hdr.ModTime, hdr.ModTime)
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			_ = os.Remove(target)
			if err := os.Symlink(hdr.Linkname, target); err != nil {
				return err
			}
		default:
			// Devices, fifos, hard links: not copied.
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = os.Chtimes(dirs[i].path, dirs[i].t, dirs[i].t)
	}
	return nil
}

// CopyPlan says where a copy lands, as docker cp does: into an existing
// directory under the source's name, else at dest itself.
func CopyPlan(dest, srcName string) (dir, top string, err error) {
	if st, err := os.Stat(dest); err == nil && st.IsDir() {
		return dest, srcName, nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", "", err
	}
	if strings.HasSuffix(dest, "/") {
		return "", "", fmt.Errorf("%s: no such directory", dest)
	}
	parent := filepath.Dir(dest)
	if st, err := os.Stat(parent); err != nil || !st.IsDir() {
		return "", "", fmt.Errorf("%s: no such directory", parent)
	}
	return parent, filepath.Base(dest), nil
}

// serveCopy runs a cp request in the container (we are chrooted into it:
// nothing outside can be named): "from" writes a tar of req.Path to the
// passed pipe, "to" unpacks one from it at req.Path.
func serveCopy(fd int, req ExecRequest, files []*os.File) {
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	var err error
	switch {
	case len(files) != 1:
		err = errors.New("bad copy request")
	case req.Copy == "from":
		path := filepath.Clean("/" + req.Path)
		if _, err = os.Lstat(path); err == nil {
			name := filepath.Base(path)
			if path == "/" {
				name = "."
			}
			err = WriteTar(files[0], path, name)
		}
		files[0].Close()
	case req.Copy == "to" && len(req.Args) == 1:
		dest := filepath.Clean("/" + req.Path)
		if strings.HasSuffix(req.Path, "/") && dest != "/" {
			dest += "/"
		}
		var dir, top string
		dir, top, err = CopyPlan(dest, req.Args[0])
		if err == nil {
			err = ExtractTar(files[0], dir, top)
		}
	default:
		err = fmt.Errorf("unknown copy direction %q", req.Copy)
	}
	if err != nil {
		_ = sendReply(fd, ExecReply{Error: err.Error(), Code: 1})
		return
	}
	zero := 0
	_ = sendReply(fd, ExecReply{Exit: &zero})
}
