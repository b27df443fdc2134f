package client

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// copyRange copies n bytes at srcOff of src to dstOff of dst inside the
// kernel (copy_file_range: no trip through user memory), falling back to
// reads and writes where the kernel cannot.
func copyRange(src *os.File, srcOff int64, dst *os.File, dstOff int64, n int) error {
	so, do := srcOff, dstOff
	for n > 0 {
		k, err := unix.CopyFileRange(int(src.Fd()), &so, int(dst.Fd()), &do, n, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || k == 0 {
			return copyRangeSlow(src, so, dst, do, n)
		}
		n -= k
	}
	return nil
}

// syncFS flushes the file system holding p to disk (syncfs(2)).
func syncFS(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("client: syncfs %s: %w", p, err)
	}
	return nil
}
