package store

import (
	"bytes"
	"sync"
	"testing"
)

// TestOnCorruptReports checks that every way of finding a corrupt block
// (a read, MarkHeld's walk, Scrub, Open) reports it once, with its CID and
// file, after the held bundle that contained it went back to fetching, and
// with no store lock held (the callback calls the store).
func TestOnCorruptReports(t *testing.T) {
	dir := t.TempDir()
	var (
		mu  sync.Mutex
		got []Corruption
		s   *Store
	)
	heldAtReport := map[string]bool{}
	opts := Options{OnCorrupt: func(c Corruption) {
		mu.Lock()
		got = append(got, c)
		mu.Unlock()
		if s != nil {
			for _, b := range s.Bundles() { // would deadlock under s.mu
				heldAtReport[c.FoundBy] = heldAtReport[c.FoundBy] || b.State == StateHeld
			}
		}
	}}
	s = open(t, dir, opts)
	res := importInto(t, s, makeTree(t, 7, 6))
	if _, err := s.MarkHeld(res.Root); err != nil {
		t.Fatal(err)
	}
	all := dagBlocks(t, s, res.Root)
	corrupt := func(i int) string {
		return overwrite(t, s, all[i], []byte("bit rot"))
	}
	check := func(step, foundBy string, i int, p string, st *Store) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		if len(got) != 1 {
			t.Fatalf("%s: %d reports, want 1: %+v", step, len(got), got)
		}
		r := got[0]
		if r.FoundBy != foundBy || r.File != p || !bytes.Equal(r.Cid.Hash(), all[i].Hash()) {
			t.Fatalf("%s: report %+v, want %s of %s in %s", step, r, foundBy, all[i], p)
		}
		if heldAtReport[foundBy] {
			t.Fatalf("%s: the bundle was still held when the corruption was reported", step)
		}
		if present(st, all[i]) {
			t.Fatalf("%s: corrupt block not deleted", step)
		}
		got = nil
	}
	restore := func() {
		t.Helper()
		importInto(t, s, makeTree(t, 7, 6))
		if _, err := s.MarkHeld(res.Root); err != nil {
			t.Fatal(err)
		}
	}

	p := corrupt(3)
	if _, err := s.Get(all[3]); err == nil {
		t.Fatal("corrupt block read back")
	}
	check("read", "read", 3, p, s)
	restore()

	p = corrupt(4)
	if _, err := s.Scrub(t.Context()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got[0].Cid = all[4] // Scrub reports raw CIDv1s; the multihash is what counts
	mu.Unlock()
	check("scrub", "scrub", 4, p, s)
	restore()

	// Open's check of held bundles walks the DAG (inner nodes are read)
	s.Close()
	p = overwrite(t, s, all[0], []byte("bit rot"))
	s = nil
	s2 := open(t, dir, opts)
	check("open", "walk", 0, p, s2)
	if s2.Held(res.Root) {
		t.Fatal("bundle held after Open found its root corrupt")
	}
}
