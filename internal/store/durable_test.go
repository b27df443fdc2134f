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
		p := s.path(key(c))
		if !synced[p] || !synced[filepath.Dir(p)] {
			t.Fatalf("block %s or its directory not fsynced before held", c)
		}
	}
	if !synced[s.blocks] {
		t.Fatal("blocks directory not fsynced")
	}

	// A second bundle sharing blocks with the held one syncs only the
	// blocks the held one does not have.
	clear(synced)
	root = cid.Undef
	mu.Unlock()
	res2 := importInto(t, s, makeTree(t, 8, 10))
	if _, err := s.MarkHeld(res2.Root); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	shared := 0
	for _, c := range dagBlocks(t, s, res2.Root) {
		p := s.path(key(c))
		if s.heldBlocks[key(c)] == 2 { // in both bundles
			shared++
			if synced[p] {
				t.Fatalf("block %s of an already held bundle fsynced again", c)
			}
		} else if !synced[p] {
			t.Fatalf("block %s not fsynced", c)
		}
	}
	if shared == 0 {
		t.Fatal("test trees share no block")
	}
}

// TestMarkHeldSyncFailure: a block that cannot be made durable keeps the
// bundle fetching and is deleted, so it is fetched again.
func TestMarkHeldSyncFailure(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	res := importInto(t, s, makeTree(t, 9, 6))
	all := dagBlocks(t, s, res.Root)
	bad := s.path(key(all[len(all)-1]))
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
	if _, err := os.Stat(bad); !errors.Is(err, os.ErrNotExist) {
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
	s.Close()

	// Power loss: the last leaf kept its name but lost its tail.
	var leaf cid.Cid
	for _, c := range all {
		if c.Type() == cid.Raw {
			leaf = c
		}
	}
	p := (&Store{blocks: filepath.Join(dir, blocksDir)}).path(key(leaf))
	if err := os.Truncate(p, 100); err != nil {
		t.Fatal(err)
	}

	s2 := open(t, dir, Options{})
	if ok, _ := s2.Has(leaf); !ok {
		t.Fatal("torn block not present (test setup)")
	}
	_, err := s2.MarkHeld(res.Root)
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
