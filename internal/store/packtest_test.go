package store

import (
	"os"
	"testing"

	"github.com/ipfs/go-cid"
)

// blockAt returns the pack file holding c and the offset and size of its
// bytes there.
func blockAt(t *testing.T, s *Store, c cid.Cid) (string, int64, int) {
	t.Helper()
	p, off, n, err := s.Locate(c)
	if err != nil {
		t.Fatal(err)
	}
	return p, off, n
}

// overwrite writes data over the start of block c's bytes in its pack, in
// place, as bit rot or another program would, and returns the pack file.
func overwrite(t *testing.T, s *Store, c cid.Cid, data []byte) string {
	t.Helper()
	p, off, _ := blockAt(t, s, c)
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
	return p
}

// present reports whether the store still lists c.
func present(s *Store, c cid.Cid) bool {
	ok, _ := s.Has(c)
	return ok
}
