package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/mirrornet/mirrornet/internal/bundle"
)

func seeded(seed uint64, n int) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}

func rawBlock(data []byte) (cid.Cid, []byte) {
	c, err := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}.Sum(data)
	if err != nil {
		panic(err)
	}
	return c, data
}

func open(t *testing.T, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// makeTree writes a small app bundle (seeded) and returns its directory.
func makeTree(t testing.TB, seed uint64, files int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), fmt.Sprintf("app-%d", seed))
	for i := range files {
		p := filepath.Join(dir, fmt.Sprintf("d%d", i%3), fmt.Sprintf("f%03d.bin", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, seeded(seed*1000+uint64(i), 20000+i*997), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// shared content across seeds, so GC must keep shared blocks
	if err := os.WriteFile(filepath.Join(dir, "shared.txt"), []byte("shared by every bundle\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func importInto(t testing.TB, s *Store, dir string) bundle.Result {
	t.Helper()
	res, err := bundle.Import(t.Context(), dir, func(b blocks.Block) error { return s.Put(b.Cid(), b.RawData()) }, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// dagBlocks lists the blocks of a held DAG.
func dagBlocks(t *testing.T, s *Store, root cid.Cid) []cid.Cid {
	t.Helper()
	var out []cid.Cid
	err := bundle.Walk(t.Context(), root, s.Get, func(c cid.Cid, _ []byte) error { out = append(out, c); return nil })
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	c, data := rawBlock([]byte("hello world\n"))
	if ok, _ := s.Has(c); ok {
		t.Fatal("Has before Put")
	}
	if _, err := s.Get(c); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get before Put: %v", err)
	}
	if _, err := s.GetSize(c); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetSize before Put: %v", err)
	}
	if err := s.Put(c, data); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(c, data); err != nil { // idempotent
		t.Fatal(err)
	}
	got, err := s.Get(c)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get: %q %v", got, err)
	}
	// a CIDv0/v1 or codec change of the same multihash is the same block
	c2 := cid.NewCidV1(cid.DagProtobuf, c.Hash())
	if ok, _ := s.Has(c2); !ok {
		t.Error("same multihash, other codec: not found")
	}
	if n, err := s.GetSize(c); err != nil || n != len(data) {
		t.Fatalf("GetSize: %d %v", n, err)
	}
	if s.Usage() != int64(len(data)) {
		t.Fatalf("Usage %d", s.Usage())
	}
	keys, err := s.AllKeys(t.Context())
	if err != nil || len(keys) != 1 || !bytes.Equal(keys[0].Hash(), c.Hash()) {
		t.Fatalf("AllKeys: %v %v", keys, err)
	}
	if err := s.Delete(c); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Has(c); ok || s.Usage() != 0 {
		t.Fatalf("after Delete: has=%v usage=%d", ok, s.Usage())
	}
	if err := s.Delete(c); err != nil {
		t.Fatalf("Delete absent: %v", err)
	}
	s.Close()
	if err := s.Put(c, data); !errors.Is(err, ErrClosed) {
		t.Fatalf("Put after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestPutRefusesHashMismatch(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	c, _ := rawBlock([]byte("the real bytes"))
	err := s.Put(c, []byte("other bytes"))
	if !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("got %v", err)
	}
	if ok, _ := s.Has(c); ok || s.Usage() != 0 {
		t.Fatal("mismatching block was stored")
	}
	big := make([]byte, 2<<20+1)
	bc, _ := rawBlock(big)
	if err := s.Put(bc, big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversize: %v", err)
	}
}

func TestCorruptBlockDetected(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	res := importInto(t, s, makeTree(t, 1, 6))
	if _, err := s.MarkHeld(res.Root); err != nil {
		t.Fatal(err)
	}
	leaf := dagBlocks(t, s, res.Root)[3]
	overwrite(t, s, leaf, []byte("bit rot"))
	if _, err := s.Get(leaf); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Get corrupt: %v", err)
	}
	if present(s, leaf) {
		t.Fatal("corrupt block not removed")
	}
	if s.Held(res.Root) {
		t.Fatal("bundle still held after losing a block")
	}
	if _, err := s.MarkHeld(res.Root); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("MarkHeld after corruption: %v", err)
	}
}

func TestScrub(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	res := importInto(t, s, makeTree(t, 2, 5))
	if _, err := s.MarkHeld(res.Root); err != nil {
		t.Fatal(err)
	}
	if bad, err := s.Scrub(t.Context()); err != nil || len(bad) != 0 {
		t.Fatalf("clean scrub: %v %v", bad, err)
	}
	leaf := dagBlocks(t, s, res.Root)[2]
	b, err := s.Get(leaf)
	if err != nil {
		t.Fatal(err)
	}
	overwrite(t, s, leaf, []byte{b[0] ^ 1})
	bad, err := s.Scrub(t.Context())
	if err != nil || len(bad) != 1 || !bytes.Equal(bad[0].Hash(), leaf.Hash()) {
		t.Fatalf("scrub: %v %v", bad, err)
	}
	if s.Held(res.Root) || s.HeldBlock(res.Root) {
		t.Fatal("bundle with bad block still held")
	}
	if got := s.Bundles(); len(got) != 1 || got[0].State != StateFetching {
		t.Fatalf("Bundles: %+v", got)
	}
}

func TestStorageLimit(t *testing.T) {
	s := open(t, t.TempDir(), Options{MaxBytes: 1000})
	c1, d1 := rawBlock(bytes.Repeat([]byte("a"), 600))
	c2, d2 := rawBlock(bytes.Repeat([]byte("b"), 600))
	if err := s.Put(c1, d1); err != nil {
		t.Fatal(err)
	}
	err := s.Put(c2, d2)
	if !errors.Is(err, ErrStorageLimit) || !strings.HasPrefix(err.Error(), "store: storage limit of 1000 bytes reached: ") {
		t.Fatalf("got %v", err)
	}
	if err := s.Put(c1, d1); err != nil {
		t.Fatalf("re-put of present block: %v", err)
	}
	if err := s.Delete(c1); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(c2, d2); err != nil {
		t.Fatalf("after freeing: %v", err)
	}
	if _, err := Open(t.TempDir(), Options{MaxBytes: -1}); err == nil {
		t.Fatal("negative MaxBytes accepted")
	}
}

func TestMarkHeldRefusesIncompleteDAG(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	res := importInto(t, s, makeTree(t, 3, 8))
	all := dagBlocks(t, s, res.Root)
	if err := s.Delete(all[len(all)-1]); err != nil {
		t.Fatal(err)
	}
	_, err := s.MarkHeld(res.Root)
	if !errors.Is(err, ErrIncomplete) || !errors.Is(err, ErrNotFound) {
		t.Fatalf("got %v", err)
	}
	if s.Held(res.Root) {
		t.Fatal("incomplete bundle held")
	}
	bs := s.Bundles()
	if len(bs) != 1 || bs[0].State != StateFetching {
		t.Fatalf("Bundles: %+v", bs)
	}
	// put the block back: now it is held, with the right totals
	if err := func() error {
		_, err := bundle.Import(t.Context(), makeTreeAgain(t, 3, 8), func(b blocks.Block) error { return s.Put(b.Cid(), b.RawData()) }, nil)
		return err
	}(); err != nil {
		t.Fatal(err)
	}
	info, err := s.MarkHeld(res.Root)
	if err != nil {
		t.Fatal(err)
	}
	if info.State != StateHeld || info.Blocks != res.Blocks || info.Bytes != res.Size {
		t.Fatalf("info %+v, import %+v", info, res)
	}
	for _, c := range all {
		if !s.HeldBlock(c) {
			t.Fatalf("HeldBlock(%s) false", c)
		}
	}
}

func makeTreeAgain(t *testing.T, seed uint64, files int) string { return makeTree(t, seed, files) }

func TestGCFreesUnfollowed(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	a := importInto(t, s, makeTree(t, 10, 6))
	b := importInto(t, s, makeTree(t, 11, 6))
	stray, strayData := rawBlock([]byte("nobody follows me"))
	if err := s.Put(stray, strayData); err != nil {
		t.Fatal(err)
	}
	for _, r := range []cid.Cid{a.Root, b.Root} {
		if _, err := s.MarkHeld(r); err != nil {
			t.Fatal(err)
		}
	}
	before := s.Usage()
	freed, err := s.GC()
	if err != nil || freed != int64(len(strayData)) {
		t.Fatalf("GC with both followed freed %d (%v), want only the stray block", freed, err)
	}
	bBlocks := dagBlocks(t, s, b.Root)
	if err := s.Unfollow(b.Root); err != nil {
		t.Fatal(err)
	}
	if s.HeldBlock(b.Root) {
		t.Fatal("unfollowed root still served")
	}
	freed, err = s.GC()
	if err != nil {
		t.Fatal(err)
	}
	// everything of b except the block it shares with a
	if want := b.Size - int64(len("shared by every bundle\n")); freed != want {
		t.Fatalf("freed %d, want %d", freed, want)
	}
	if s.Usage() != before-int64(len(strayData))-freed {
		t.Fatalf("usage %d", s.Usage())
	}
	if !s.Held(a.Root) {
		t.Fatal("a no longer held")
	}
	dagBlocks(t, s, a.Root) // a still complete and valid
	gone := 0
	for _, c := range bBlocks {
		if ok, _ := s.Has(c); !ok {
			gone++
		}
	}
	if gone != len(bBlocks)-1 {
		t.Fatalf("%d of %d blocks of b gone", gone, len(bBlocks))
	}
}

func TestReopenPersists(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	a := importInto(t, s, makeTree(t, 20, 4))
	b := importInto(t, s, makeTree(t, 21, 4))
	if _, err := s.MarkHeld(a.Root); err != nil {
		t.Fatal(err)
	}
	if err := s.Follow(b.Root); err != nil {
		t.Fatal(err)
	}
	want := s.Bundles()
	usage := s.Usage()
	s.Close()
	// a leftover temp file from a crash is cleaned up on open
	tmp := filepath.Join(dir, packsDir, tmpPrefix+"crash")
	if err := os.WriteFile(tmp, []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, dir, Options{})
	if got := s2.Bundles(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("bundles after reopen %+v, want %+v", got, want)
	}
	if s2.Usage() != usage {
		t.Fatalf("usage %d, want %d", s2.Usage(), usage)
	}
	if !s2.Held(a.Root) || s2.Held(b.Root) || !s2.HeldBlock(a.Root) {
		t.Fatal("held state lost")
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("temp file not cleaned")
	}
	sorted := s2.Bundles()
	if sorted[0].Root.String() > sorted[1].Root.String() {
		t.Fatal("Bundles not sorted")
	}
}

func TestOpenUnwritable(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Open(filepath.Join(file, "data"), Options{})
	if !errors.Is(err, ErrNotWritable) || !strings.Contains(err.Error(), file) {
		t.Fatalf("got %v", err)
	}
	if os.Geteuid() != 0 {
		ro := filepath.Join(base, "ro")
		if err := os.MkdirAll(filepath.Join(ro, blocksDir), 0o755); err != nil {
			t.Fatal(err)
		}
		os.Chmod(ro, 0o555)
		t.Cleanup(func() { os.Chmod(ro, 0o755) })
		if _, err := Open(ro, Options{}); !errors.Is(err, ErrNotWritable) {
			t.Fatalf("read-only dir: %v", err)
		}
	}
}

func TestConcurrentPuts(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	var wg sync.WaitGroup
	cs := make([]cid.Cid, 8)
	ds := make([][]byte, 8)
	for i := range cs {
		cs[i], ds[i] = rawBlock(seeded(uint64(i), 5000))
	}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range cs {
				j := (i + w) % len(cs)
				if err := s.Put(cs[j], ds[j]); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if s.Usage() != 8*5000 {
		t.Fatalf("usage %d, want %d", s.Usage(), 8*5000)
	}
}
