package store

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ipfs/go-cid"
)

// mountTmpfs mounts a 2 MiB tmpfs in a temp dir, or skips when that is not
// possible (not root, no mount permission).
func mountTmpfs(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("disk-full test needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

func TestDiskFull(t *testing.T) {
	dir := mountTmpfs(t)
	s := open(t, dir, Options{})
	var stored []cid.Cid
	var errFull error
	for i := range 64 { // 64 x 256 KiB is far more than 2 MiB
		c, data := rawBlock(seeded(uint64(i), 256<<10))
		if err := s.Put(c, data); err != nil {
			errFull = err
			break
		}
		stored = append(stored, c)
	}
	if !errors.Is(errFull, ErrNoSpace) {
		t.Fatalf("filling the disk: got %v, want ErrNoSpace", errFull)
	}
	msg := errFull.Error()
	if !strings.HasPrefix(msg, "store: no space left on device") || !strings.Contains(msg, dir) || strings.Contains(msg, "\n") {
		t.Errorf("message %q is not one clear line naming the directory", msg)
	}
	if len(stored) == 0 {
		t.Fatal("nothing fit on the disk")
	}
	// no partial or temporary file is left behind
	keys, err := s.AllKeys(t.Context())
	if err != nil || len(keys) != len(stored) {
		t.Fatalf("%d block files for %d stored blocks (%v)", len(keys), len(stored), err)
	}
	var tmpFiles int
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), tmpPrefix) {
			tmpFiles++
		}
		return nil
	})
	if tmpFiles > 0 {
		t.Fatalf("%d temp files left", tmpFiles)
	}
	// earlier blocks still readable
	for _, c := range stored {
		if _, err := s.Get(c); err != nil {
			t.Fatalf("reading %s after ENOSPC: %v", c, err)
		}
	}
	if s.Usage() != int64(len(stored))*(256<<10) {
		t.Fatalf("usage %d after failed put", s.Usage())
	}
	// free space; the same put now succeeds
	if err := s.Delete(stored[0]); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(stored[1]); err != nil {
		t.Fatal(err)
	}
	c, data := rawBlock(seeded(uint64(len(stored)), 256<<10))
	if err := s.Put(c, data); err != nil {
		t.Fatalf("put after freeing space: %v", err)
	}
	if _, err := s.Get(c); err != nil {
		t.Fatal(err)
	}
}
