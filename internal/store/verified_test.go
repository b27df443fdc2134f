package store

import (
	"bytes"
	"errors"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/mirrornet/mirrornet/internal/bundle/verify"
)

// countHashes makes s count the hashes of blocks read back. It also moves
// s's clock an hour ahead, past the racy window in which a file just
// written is not cached yet.
func countHashes(s *Store) *atomic.Int64 {
	s.now = func() time.Time { return time.Now().Add(time.Hour) }
	var n atomic.Int64
	s.check = func(c cid.Cid, data []byte) error {
		n.Add(1)
		return verify.Check(c, data)
	}
	return &n
}

func TestReadsDoNotRehashVerifiedFile(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	hashes := countHashes(s)
	c, data := rawBlock(seeded(1, 64<<10))
	if err := s.Put(c, data); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		got, err := s.Get(c)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("Get: %v", err)
		}
	}
	if n := hashes.Load(); n != 0 {
		t.Fatalf("reads of a block this process wrote hashed it %d times, want 0", n)
	}

	// A pack rewritten by another program (same bytes) is hashed once,
	// then trusted again.
	overwrite(t, s, c, data)
	for range 2 {
		if got, err := s.Get(c); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("Get after replace: %v", err)
		}
	}
	if n := hashes.Load(); n != 1 {
		t.Fatalf("replaced file hashed %d times, want 1", n)
	}

	// A cached block whose file is replaced by a corrupt one is re-verified,
	// rejected and removed.
	bad := bytes.Clone(data)
	bad[100] ^= 1
	overwrite(t, s, c, bad)
	if _, err := s.Get(c); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Get of a rewritten corrupt block: %v", err)
	}
	if present(s, c) {
		t.Fatal("corrupt block not removed")
	}
	if s.verified.len() != 0 {
		t.Fatal("removed block still in the verified cache")
	}
	// Put it back: valid again.
	if err := s.Put(c, data); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(c); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get after re-put: %v", err)
	}
}

// rewriteInPlace flips a byte of block c in its pack in place (same inode,
// same size) and restores the pack's mtime, as bit rot or a careful
// tamperer would leave it. It returns the pack file.
func rewriteInPlace(t *testing.T, s *Store, c cid.Cid) string {
	t.Helper()
	p, off, _ := blockAt(t, s, c)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := f.ReadAt(b[:], off+10); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b[:], off+10); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if !after.ModTime().Equal(fi.ModTime()) || after.Size() != fi.Size() {
		t.Fatal("mtime or size not restored")
	}
	return p
}

func TestScrubIgnoresVerifiedCache(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	res := importInto(t, s, makeTree(t, 3, 5))
	if _, err := s.MarkHeld(res.Root); err != nil {
		t.Fatal(err)
	}
	leaf := dagBlocks(t, s, res.Root)[2]
	if _, err := s.Get(leaf); err != nil { // verified and cached
		t.Fatal(err)
	}
	p := rewriteInPlace(t, s, leaf)
	// On Linux the ctime still gives the rewrite away; bit rot under an
	// unchanged file does not. Play that: vouch for the rotten version.
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	l, _ := s.lookup(key(leaf))
	s.verified.add(key(leaf), l.p.seq, l.p.epochOf(idOf(fi)), idOf(fi), time.Now().Add(time.Hour))
	bad, err := s.Scrub(t.Context())
	if err != nil || len(bad) != 1 || !bytes.Equal(bad[0].Hash(), leaf.Hash()) {
		t.Fatalf("scrub found %v, %v; want the block rewritten in place", bad, err)
	}
	if present(s, leaf) {
		t.Fatal("scrub did not remove the corrupt block")
	}
	if s.Held(res.Root) {
		t.Fatal("bundle still held")
	}
}

func TestReadSeesInPlaceRewriteWithRestoredMtime(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the file identity includes the ctime on Linux only")
	}
	s := open(t, t.TempDir(), Options{})
	c, data := rawBlock(seeded(2, 4096))
	if err := s.Put(c, data); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(c); err != nil {
		t.Fatal(err)
	}
	rewriteInPlace(t, s, c)
	if _, err := s.Get(c); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Get after an in-place rewrite with the mtime restored: %v, want ErrCorrupt", err)
	}
}

func TestVerifiedCacheBounded(t *testing.T) {
	const limit = 4
	s := open(t, t.TempDir(), Options{VerifiedCache: limit})
	hashes := countHashes(s)
	var cids []cid.Cid
	for i := range 10 {
		c, data := rawBlock(seeded(uint64(100+i), 1000))
		if err := s.Put(c, data); err != nil {
			t.Fatal(err)
		}
		cids = append(cids, c)
		if n := s.verified.len(); n > limit {
			t.Fatalf("cache holds %d entries, limit %d", n, limit)
		}
	}
	for _, c := range cids {
		if _, err := s.Get(c); err != nil {
			t.Fatal(err)
		}
		if n := s.verified.len(); n > limit {
			t.Fatalf("cache holds %d entries, limit %d", n, limit)
		}
	}
	// At most limit blocks were still cached: the others were hashed.
	if n := hashes.Load(); n < int64(len(cids)-limit) {
		t.Fatalf("%d hashes for %d reads with %d cached, want >= %d", n, len(cids), limit, len(cids)-limit)
	}

	off := open(t, t.TempDir(), Options{VerifiedCache: -1})
	offHashes := countHashes(off)
	c, data := rawBlock(seeded(9, 1000))
	if err := off.Put(c, data); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := off.Get(c); err != nil {
			t.Fatal(err)
		}
	}
	if n := offHashes.Load(); n != 3 {
		t.Fatalf("cache off: %d hashes for 3 reads", n)
	}
	if _, err := Open(t.TempDir(), Options{VerifiedCache: -2}); err == nil {
		t.Fatal("VerifiedCache -2 accepted")
	}
}

// A new Store (a restart, e.g. after a power loss) trusts nothing it did not
// verify itself: every block is hashed on its first read.
func TestVerifiedCacheStartsEmpty(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	c, data := rawBlock(seeded(3, 1000))
	if err := s.Put(c, data); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := open(t, dir, Options{})
	hashes := countHashes(s2)
	for range 2 {
		if _, err := s2.Get(c); err != nil {
			t.Fatal(err)
		}
	}
	if n := hashes.Load(); n != 1 {
		t.Fatalf("after reopen: %d hashes for two reads, want 1", n)
	}
}

// PutVerified stores without hashing; the block is then served as written.
func TestPutVerified(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	c, data := rawBlock(seeded(4, 1000))
	if err := s.PutVerified(c, data); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(c); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get: %v", err)
	}
	if err := s.PutVerified(c, make([]byte, verify.MaxBlockSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversize: %v", err)
	}
}

// A file modified within the racy window of its verification is not
// cached: a second same-size write within one timestamp tick could leave
// its identity unchanged. It is hashed again on its next read, and cached
// once it is older than the window.
func TestRacyWindowDefersCaching(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	hashes := countHashes(s)
	c, data := rawBlock(seeded(9, 4096))
	written := time.Now()
	s.now = func() time.Time { return written } // the write and the reads within one tick
	if err := s.Put(c, data); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := s.Get(c); err != nil {
			t.Fatal(err)
		}
	}
	if n := hashes.Load(); n != 2 {
		t.Fatalf("reads within the racy window hashed %d times, want 2 (no caching)", n)
	}
	s.now = func() time.Time { return written.Add(time.Hour) }
	for range 2 {
		if _, err := s.Get(c); err != nil {
			t.Fatal(err)
		}
	}
	if n := hashes.Load(); n != 3 {
		t.Fatalf("after the window: %d hashes in all, want 3 (one more, then cached)", n)
	}
}
