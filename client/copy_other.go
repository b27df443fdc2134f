//go:build !linux

package client

import "os"

func copyRange(src *os.File, srcOff int64, dst *os.File, dstOff int64, n int) error {
	return copyRangeSlow(src, srcOff, dst, dstOff, n)
}

func syncFS(string) error { return errNoSyncFS }

func copyToPath(src *os.File, srcOff int64, p string, dstOff int64, n int, create bool) error {
	flags := os.O_WRONLY
	if create {
		flags |= os.O_CREATE | os.O_EXCL
	}
	dst, err := os.OpenFile(p, flags, 0o644)
	if err != nil {
		return err
	}
	if err := copyRangeSlow(src, srcOff, dst, dstOff, n); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}
