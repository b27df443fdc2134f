// Package datadir guards a node's data directory: an exclusive lock so
// that two nodes never share one (even if the admin socket was deleted),
// and a Unix socket that is private from the moment it exists.
package datadir

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// ErrLocked: another process (or another node in this one) holds the
// data directory.
var ErrLocked = errors.New("datadir: data directory is in use by another node")

// LockFile is the lock's file name inside the data directory.
const LockFile = "lock"

// Lock is a held data directory lock.
type Lock struct{ f *os.File }

// Acquire takes an exclusive, non-blocking flock on DIR/lock (creating the
// file, mode 0600). It fails with ErrLocked, naming the directory, if any
// other open file description holds it: a second node in this process or
// another. The kernel drops the lock when the process dies, so a crash
// never leaves a stale lock behind.
func Acquire(dir string) (*Lock, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("datadir: open %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s (stop the other node, or use another --data)", ErrLocked, dir)
		}
		return nil, fmt.Errorf("datadir: lock %s: %w", path, err)
	}
	return &Lock{f: f}, nil
}

// Release drops the lock. Safe to call more than once and on nil.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// umaskMu serialises umask changes: the umask is per process.
var umaskMu sync.Mutex

// ListenUnix listens on a Unix socket at path created under umask 0077,
// so that it is owner-only from the moment it exists (then mode 0600), with no
// window in which another local user could connect. A stale socket file
// at path is removed first; the caller must have made sure that no live
// process serves it (hold the data directory Lock).
func ListenUnix(path string) (net.Listener, error) {
	_ = os.Remove(path)
	umaskMu.Lock()
	old := syscall.Umask(0o077)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	umaskMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("datadir: socket %s: %w", path, err)
	}
	// 0700 from the umask; the owner needs no execute bit.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("datadir: socket %s: %w", path, err)
	}
	return ln, nil
}
