package store

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/ipfs/go-cid"
)

// heldOnDisk reports whether bundles.json in dir records root as held.
func heldOnDisk(t *testing.T, dir string, root cid.Cid) bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, bundlesFile))
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	var recs []bundleRecord
	if err := json.Unmarshal(b, &recs); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Root == root.String() && r.State == StateHeld {
			return true
		}
	}
	return false
}

// TestMarkHeldMakesBlocksDurableFirst checks the group commit: Put does not
// fsync, and MarkHeld fsyncs every block file of the DAG and every block
// directory before bundles.json records the bundle as held.
func TestMarkHeldMakesBlocksDurableFirst(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	var mu sync.Mutex
	synced := map[string]bool{}
	var early []string // paths synced after the bundle was already recorded held
	var root cid.Cid
	s.fsync = func(p string) error {
		mu.Lock()
		defer mu.Unlock()
		synced[p] = true
		if root.Defined() && heldOnDisk(t, dir, root) {
			early = append(early, p)
		}
		return fsyncPath(p)
	}
	res := importInto(t, s, makeTree(t, 7, 10))
	mu.Lock()
	if len(synced) != 0 {
		t.Fatalf("Put fsynced %d paths; durability belongs to MarkHeld", len(synced))
	}
	root = res.Root
	mu.Unlock()

	if _, err := s.MarkHeld(res.Root); err != nil {
		t.Fatal(err)
	}
	if !heldOnDisk(t, dir, res.Root) {
		t.Fatal("bundles.json does not record the bundle as held")
	}
	mu.Lock()
	if len(early) > 0 {
		t.Fatalf("synced after the bundle was recorded held: %v", early)
	}
	for _, c := range dagBlocks(t, s, res.Root) {
		p, _, _ := blockAt(t, s, c)
		if !synced[p] {
			t.Fatalf("pack %s of block %s not fsynced before held", p, c)
		}
	}
	// the index of the active pack now covers the durable blocks
	idx, err := os.ReadFile(filepath.Join(dir, packsDir, packName(s.active.seq)+idxExt))
	if err != nil {
		t.Fatal(err)
	}
	ix, err := decodeIndex("idx", idx)
	if err != nil || len(ix.recs) < res.Blocks {
		t.Fatalf("index after MarkHeld lists %d records (%v), want >= %d", len(ix.recs), err, res.Blocks)
	}

	// Marking held again a bundle whose blocks are all durable already
	// syncs nothing.
	clear(synced)
	root = cid.Undef
	mu.Unlock()
	if err := s.Unfollow(res.Root); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MarkHeld(res.Root); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(synced) != 0 {
		t.Fatalf("re-marking a durable bundle fsynced %v", synced)
	}
}

// TestMarkHeldSyncFailure: a block that cannot be made durable keeps the
// bundle fetching and is deleted, so it is fetched again.
func TestMarkHeldSyncFailure(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	res := importInto(t, s, makeTree(t, 9, 6))
	all := dagBlocks(t, s, res.Root)
	bad, _, _ := blockAt(t, s, all[len(all)-1])
	s.fsync = func(p string) error {
		if p == bad {
			return &os.PathError{Op: "fsync", Path: p, Err: syscall.EIO}
		}
		return fsyncPath(p)
	}
	_, err := s.MarkHeld(res.Root)
	if !errors.Is(err, ErrIncomplete) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("MarkHeld with a failing fsync: %v", err)
	}
	if s.Held(res.Root) || heldOnDisk(t, dir, res.Root) {
		t.Fatal("bundle held although a block is not durable")
	}
	if present(s, all[len(all)-1]) {
		t.Fatal("block that failed to sync was kept")
	}
	s.fsync = fsyncPath
	importInto(t, s, makeTree(t, 9, 6))
	if _, err := s.MarkHeld(res.Root); err != nil {
		t.Fatalf("after re-putting the block: %v", err)
	}
}

// TestTornBlockAfterPowerLoss: a block that was put but never made durable
// can be torn after a power loss. Reopening and marking the bundle held
// re-hashes it (it is no longer fresh), deletes it and refuses; putting it
// again makes the bundle held.
func TestTornBlockAfterPowerLoss(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	tree := makeTree(t, 11, 6)
	res := importInto(t, s, tree)
	all := dagBlocks(t, s, res.Root)

	// Power loss: the last leaf is still listed but lost its tail.
	var leaf cid.Cid
	for _, c := range all {
		if c.Type() == cid.Raw {
			leaf = c
		}
	}
	_, _, n := blockAt(t, s, leaf)
	s.Close()
	p, off, _ := blockAt(t, s, leaf)
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	keep := min(100, n/2)
	if _, err := f.WriteAt(make([]byte, n-keep), off+int64(keep)); err != nil {
		t.Fatal(err)
	}
	f.Close()

	s2 := open(t, dir, Options{})
	if ok, _ := s2.Has(leaf); !ok {
		t.Fatal("torn block not present (test setup)")
	}
	_, err = s2.MarkHeld(res.Root)
	if !errors.Is(err, ErrIncomplete) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("MarkHeld over a torn block: %v", err)
	}
	if s2.Held(res.Root) || heldOnDisk(t, dir, res.Root) {
		t.Fatal("bundle with a torn block held")
	}
	if ok, _ := s2.Has(leaf); ok {
		t.Fatal("torn block kept")
	}
	importInto(t, s2, tree)
	if _, err := s2.MarkHeld(res.Root); err != nil {
		t.Fatalf("after fetching the block again: %v", err)
	}
}
