//go:build !linux

package client

import "os"

func copyRange(src *os.File, srcOff int64, dst *os.File, dstOff int64, n int) error {
	return copyRangeSlow(src, srcOff, dst, dstOff, n)
}

func syncFS(string) error { return errNoSyncFS }

func writeToPath(p string, data []byte, off int64, create, resume, _ bool) error {
	flags := os.O_WRONLY
	switch {
	case create && resume:
		flags |= os.O_CREATE | os.O_TRUNC
	case create:
		flags |= os.O_CREATE | os.O_EXCL
	}
	if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		return &os.PathError{Op: "open", Path: p, Err: os.ErrExist}
	}
	dst, err := os.OpenFile(p, flags, 0o644)
	if err != nil {
		return err
	}
	if _, err := dst.WriteAt(data, off); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

// oNoFollow: the callers Lstat first where the system has no O_NOFOLLOW.
const oNoFollow = 0
