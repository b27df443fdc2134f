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

// copyToPath copies n bytes at srcOff of src to dstOff of the file at p
// (created, and required not to exist, if create) with as few system
// calls as the kernel allows: open, copy_file_range, close. os.OpenFile
// adds two more per file (the poller's fcntl and epoll_ctl), which counts
// when a bundle has thousands of small files.
func copyToPath(src *os.File, srcOff int64, p string, dstOff int64, n int, create bool) error {
	flags := unix.O_WRONLY | unix.O_CLOEXEC
	if create {
		flags |= unix.O_CREAT | unix.O_EXCL
	}
	fd, err := unix.Open(p, flags, 0o644)
	for errors.Is(err, unix.EINTR) {
		fd, err = unix.Open(p, flags, 0o644)
	}
	if err != nil {
		return &os.PathError{Op: "open", Path: p, Err: err}
	}
	sfd := int(src.Fd())
	so, do := srcOff, dstOff
	for n > 0 {
		k, err := unix.CopyFileRange(sfd, &so, fd, &do, n, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || k == 0 {
			unix.Close(fd)
			dst, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			if err := copyRangeSlow(src, so, dst, do, n); err != nil {
				dst.Close()
				return err
			}
			return dst.Close()
		}
		n -= k
	}
	if err := unix.Close(fd); err != nil {
		return &os.PathError{Op: "close", Path: p, Err: err}
	}
	return nil
}
