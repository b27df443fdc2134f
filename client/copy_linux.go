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

// writeToPath writes data at off of the file at p with as few system
// calls as the kernel allows: open, pwrite, close (os.OpenFile adds two
// more per file, the poller's fcntl and epoll_ctl, which counts when a
// bundle has thousands of small files). With create the file is made and
// must not exist, unless resume (a former run's tree): then it is made
// afresh. A symlink at p is never followed. With writeback, a large write
// starts its writeback at once (sync_file_range), so that the fsync that
// makes the finished file durable finds little left to do and the disk
// works while the network does.
func writeToPath(p string, data []byte, off int64, create, resume, writeback bool) error {
	flags := unix.O_WRONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW
	switch {
	case create && resume:
		flags |= unix.O_CREAT | unix.O_TRUNC
	case create:
		flags |= unix.O_CREAT | unix.O_EXCL
	}
	fd, err := unix.Open(p, flags, 0o644)
	for errors.Is(err, unix.EINTR) {
		fd, err = unix.Open(p, flags, 0o644)
	}
	if err != nil {
		return &os.PathError{Op: "open", Path: p, Err: err}
	}
	for rest, o := data, off; len(rest) > 0; {
		k, err := unix.Pwrite(fd, rest, o)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			unix.Close(fd)
			return &os.PathError{Op: "write", Path: p, Err: err}
		}
		rest, o = rest[k:], o+int64(k)
	}
	if writeback && len(data) >= writebackBytes {
		// Advisory: an error here only means the fsync does it all.
		_ = unix.SyncFileRange(fd, off, int64(len(data)), unix.SYNC_FILE_RANGE_WRITE)
	}
	if err := unix.Close(fd); err != nil {
		return &os.PathError{Op: "close", Path: p, Err: err}
	}
	return nil
}

// writebackBytes is the size of a write whose writeback starts at once.
const writebackBytes = 256 << 10

// oNoFollow makes an open fail on a symlink.
const oNoFollow = unix.O_NOFOLLOW
