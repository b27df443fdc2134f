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

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"

	"github.com/mirrornet/mirrornet/internal/bundle"
	"github.com/mirrornet/mirrornet/internal/store/layout1"
)

// oldLayout writes a store directory with the file-per-block store itself
// (store layout 1, kept frozen in package layout1): DIR/blocks/XX/KEY, one
// file per block, and DIR/bundles.json. It imports each tree, marks the
// first bundle held and follows the others (fetching), and adds a stray
// block, a torn block file and a temporary file a crash left. It returns
// the bundles.
func oldLayout(t *testing.T, dir string, trees ...string) []bundle.Result {
	t.Helper()
	old, err := layout1.Open(dir, layout1.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	var out []bundle.Result
	for i, tree := range trees {
		res, err := bundle.Import(t.Context(), tree, func(b blocks.Block) error {
			return old.Put(b.Cid(), b.RawData())
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, res)
		if i == 0 {
			_, err = old.MarkHeld(res.Root)
		} else {
			err = old.Follow(res.Root)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	stray, data := rawBlock([]byte("a block no bundle needs"))
	if err := old.Put(stray, data); err != nil {
		t.Fatal(err)
	}
	// a block file torn by a power loss, and a temporary file
	torn, data := rawBlock(seeded(77, 5000))
	k := key(torn)
	p := filepath.Join(dir, blocksDir, k[len(k)-3:len(k)-1], k)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data[:100], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(p), tmpPrefix+"crash"), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// snapshot records every file under dir with its bytes.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			out[rel] = string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameFiles(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	for p, b := range before {
		if after[p] != b {
			t.Fatalf("%s: %s changed or went away", what, p)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Fatalf("%s: %s appeared", what, p)
		}
	}
}

// checkMigrated opens dir and checks that it serves every bundle of the
// old layout: the held one is still held and verifies block by block, the
// fetching one has every block, the old block files are gone and the
// layout version is recorded.
func checkMigrated(t *testing.T, dir string, want []bundle.Result) *Store {
	t.Helper()
	s := open(t, dir, Options{PackSize: 256 << 10}) // several packs
	if !s.Held(want[0].Root) {
		t.Fatalf("held bundle not held after migration: %+v", s.Bundles())
	}
	for _, res := range want {
		n := 0
		if err := bundle.Walk(t.Context(), res.Root, s.Get, func(cid.Cid, []byte) error { n++; return nil }); err != nil || n != res.Blocks {
			t.Fatalf("bundle %s after migration: %d of %d blocks, %v", res.Root, n, res.Blocks, err)
		}
	}
	for _, res := range want[1:] {
		if _, err := s.MarkHeld(res.Root); err != nil {
			t.Fatalf("fetching bundle %s incomplete after migration: %v", res.Root, err)
		}
	}
	torn, _ := rawBlock(seeded(77, 5000))
	if present(s, torn) {
		t.Fatal("a torn block file was migrated")
	}
	if _, err := os.Stat(filepath.Join(dir, blocksDir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("old block files left after migration: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, versionFile)); err != nil || strings.TrimSpace(string(b)) != "2" {
		t.Fatalf("layout version %q, %v", b, err)
	}
	return s
}

// A data directory written by the file-per-block layout opens with the
// pack layout and serves every bundle, and opens again as it is.
func TestMigrateFileLayout(t *testing.T) {
	dir := t.TempDir()
	want := oldLayout(t, dir, makeTree(t, 30, 12), makeTree(t, 31, 6))
	s := checkMigrated(t, dir, want)
	usage := s.Usage()
	s.Close()
	s2 := open(t, dir, Options{})
	if s2.Usage() != usage || !s2.Held(want[0].Root) || !s2.Held(want[1].Root) {
		t.Fatalf("after reopening the migrated store: usage %d (was %d), %+v", s2.Usage(), usage, s2.Bundles())
	}
}

// A migration interrupted before its commit point leaves the old layout as
// it was (a staging directory, which the next Open removes and redoes); one
// interrupted after it leaves complete packs and some old files, which the
// next Open removes.
func TestMigrateInterrupted(t *testing.T) {
	t.Run("before commit", func(t *testing.T) {
		dir := t.TempDir()
		want := oldLayout(t, dir, makeTree(t, 32, 6), makeTree(t, 33, 4))
		staging := filepath.Join(dir, migratingDir)
		if err := os.MkdirAll(staging, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(staging, packName(1)+packExt), []byte("half a pack"), 0o644); err != nil {
			t.Fatal(err)
		}
		checkMigrated(t, dir, want)
		if _, err := os.Stat(staging); !errors.Is(err, os.ErrNotExist) {
			t.Fatal("staging directory left")
		}
	})
	t.Run("after commit", func(t *testing.T) {
		dir := t.TempDir()
		want := oldLayout(t, dir, makeTree(t, 34, 6), makeTree(t, 35, 4))
		// the migration as far as its commit point, then a crash: the old
		// block files are still there
		if err := copyOldLayout(filepath.Join(dir, blocksDir), filepath.Join(dir, migratingDir), DefaultPackSize, new(int64)); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, migratingDir), filepath.Join(dir, packsDir)); err != nil {
			t.Fatal(err)
		}
		checkMigrated(t, dir, want)
	})
}

// A full disk during the migration stops Open with one line saying so and
// loses nothing: the old layout is byte for byte as it was, no staging
// directory or pack is left, and once there is space the migration
// completes.
func TestMigrateDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	// about 2.6 MiB of blocks: they fit, a second copy does not
	want := oldLayout(t, dir, makeTree(t, 36, 40), makeTree(t, 37, 30))
	before := snapshot(t, dir)
	s, err := Open(dir, Options{})
	if err == nil {
		s.Close() // or the tmpfs cannot be unmounted
	}
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("migrating onto a full disk: %v, want ErrNoSpace", err)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "store: no space left on device migrating") || !strings.Contains(msg, dir) ||
		!strings.Contains(msg, "old layout is untouched") || strings.Contains(msg, "\n") {
		t.Errorf("message %q is not one clear line", msg)
	}
	sameFiles(t, "after a failed migration", before, snapshot(t, dir))
	if out, err := exec.Command("mount", "-o", "remount,size=16m", dir).CombinedOutput(); err != nil {
		t.Fatalf("growing the tmpfs: %v: %s", err, out)
	}
	checkMigrated(t, dir, want).Close()
}

// A store directory written by a newer mirrornet, or a pack from a newer
// format, is refused with one line, and nothing in it is changed.
func TestNewerVersionRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string)
	}{
		{"layout version", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, versionFile), []byte("3\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"pack format", func(t *testing.T, dir string) {
			p := filepath.Join(dir, packsDir, packName(1)+packExt)
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte{packFormat + 1}, fileHdrSize-1); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, Options{})
			res := importInto(t, s, makeTree(t, 40, 4))
			if _, err := s.MarkHeld(res.Root); err != nil {
				t.Fatal(err)
			}
			s.Close()
			tc.damage(t, dir)
			before := snapshot(t, dir)
			_, err := Open(dir, Options{})
			if !errors.Is(err, ErrNewerVersion) || !strings.Contains(err.Error(), "newer") ||
				!strings.Contains(err.Error(), "upgrade mirrornet") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("opening a store from a newer version: %v", err)
			}
			sameFiles(t, "after refusing it", before, snapshot(t, dir))
		})
	}
}

// A truncated pack or index is refused with one line naming the file and
// what to do, and nothing is changed; doing what the line says (for an
// index: deleting it) opens the store with every block.
func TestTruncatedPackOrIndexRefused(t *testing.T) {
	build := func(t *testing.T) (string, bundle.Result) {
		dir := t.TempDir()
		s := open(t, dir, Options{PackSize: 64 << 10}) // several sealed packs
		res := importInto(t, s, makeTree(t, 41, 8))
		if _, err := s.MarkHeld(res.Root); err != nil {
			t.Fatal(err)
		}
		if len(s.packs) < 3 {
			t.Fatalf("%d packs; the test wants sealed ones", len(s.packs))
		}
		s.Close()
		return dir, res
	}
	refused := func(t *testing.T, dir, file string) {
		t.Helper()
		before := snapshot(t, dir)
		_, err := Open(dir, Options{})
		if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), file) || strings.Contains(err.Error(), "\n") {
			t.Fatalf("opening with %s damaged: %v", file, err)
		}
		sameFiles(t, "after refusing it", before, snapshot(t, dir))
	}
	t.Run("pack", func(t *testing.T) {
		dir, _ := build(t)
		p := filepath.Join(dir, packsDir, packName(1)+packExt)
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, fi.Size()/2); err != nil {
			t.Fatal(err)
		}
		refused(t, dir, p)
	})
	t.Run("index", func(t *testing.T) {
		dir, res := build(t)
		p := filepath.Join(dir, packsDir, packName(2)+idxExt)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b[:len(b)-7], 0o644); err != nil {
			t.Fatal(err)
		}
		refused(t, dir, p)
		if err := os.Remove(p); err != nil { // as the line says
			t.Fatal(err)
		}
		s := open(t, dir, Options{})
		if !s.Held(res.Root) {
			t.Fatal("bundle not held after rebuilding the index")
		}
		n := 0
		if err := bundle.Walk(t.Context(), res.Root, s.Get, func(cid.Cid, []byte) error { n++; return nil }); err != nil || n != res.Blocks {
			t.Fatalf("after rebuilding the index: %d of %d blocks, %v", n, res.Blocks, err)
		}
	})
	t.Run("active pack cut short of its index", func(t *testing.T) {
		dir := t.TempDir()
		s := open(t, dir, Options{})
		res := importInto(t, s, makeTree(t, 42, 4))
		if _, err := s.MarkHeld(res.Root); err != nil {
			t.Fatal(err)
		}
		p := s.active.path
		s.Close()
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, fi.Size()-10); err != nil {
			t.Fatal(err)
		}
		refused(t, dir, p)
	})
}

// GC frees the disk space of the blocks it deletes (punched out of their
// packs, or their packs compacted or removed), not only the count.
func TestGCFreesDiskSpace(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{PackSize: 1 << 20})
	a := importInto(t, s, makeTree(t, 43, 10))
	if _, err := s.MarkHeld(a.Root); err != nil {
		t.Fatal(err)
	}
	b := importInto(t, s, makeTree(t, 44, 10))
	if _, err := s.MarkHeld(b.Root); err != nil {
		t.Fatal(err)
	}
	allocated := func() int64 {
		var n int64
		_ = filepath.WalkDir(filepath.Join(dir, packsDir), func(_ string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				if fi, err := d.Info(); err == nil {
					n += fi.Sys().(*syscall.Stat_t).Blocks * 512
				}
			}
			return nil
		})
		return n
	}
	before := allocated()
	if err := s.Unfollow(b.Root); err != nil {
		t.Fatal(err)
	}
	freed, err := s.GC()
	if err != nil || freed < b.Size/2 {
		t.Fatalf("GC freed %d of %d, %v", freed, b.Size, err)
	}
	// a small block's record shares its first and last page with its
	// neighbours: those pages stay until the pack is compacted
	if after := allocated(); before-after < freed*3/4 {
		t.Fatalf("GC freed %d bytes of blocks but the packs shrank by %d only (%d -> %d)", freed, before-after, before, after)
	}
	dagBlocks(t, s, a.Root)
	s.Close()
	s2 := open(t, dir, Options{})
	if !s2.Held(a.Root) || s2.Held(b.Root) {
		t.Fatalf("after reopening: %+v", s2.Bundles())
	}
	for _, c := range dagBlocks(t, s2, a.Root) {
		if _, err := s2.Get(c); err != nil {
			t.Fatal(err)
		}
	}
	if got := s2.Usage(); got != s.Usage() {
		t.Fatalf("usage after reopening %d, before %d", got, s.Usage())
	}
	if bad, err := s2.Scrub(t.Context()); err != nil || len(bad) != 0 {
		t.Fatalf("scrub after GC: %v %v", bad, err)
	}
}

// GC rewrites packs left mostly dead: the live blocks move to the active
// pack, the old packs go, and everything still reads back after a reopen.
func TestGCCompactsPacks(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{PackSize: 256 << 10})
	collect := func(tree string) (bundle.Result, []blocks.Block) {
		var bs []blocks.Block
		res, err := bundle.Import(t.Context(), tree, func(b blocks.Block) error { bs = append(bs, b); return nil }, nil)
		if err != nil {
			t.Fatal(err)
		}
		return res, bs
	}
	a, ab := collect(makeTree(t, 45, 6))
	b, bb := collect(makeTree(t, 46, 24))
	// interleave the two bundles' blocks, so that every pack holds both
	for i := 0; i < max(len(ab), len(bb)); i++ {
		for _, l := range [][]blocks.Block{ab, bb} {
			if i < len(l) {
				if err := s.Put(l[i].Cid(), l[i].RawData()); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	for _, r := range []cid.Cid{a.Root, b.Root} {
		if _, err := s.MarkHeld(r); err != nil {
			t.Fatal(err)
		}
	}
	packsBefore, _ := filepath.Glob(filepath.Join(dir, packsDir, "*"+packExt))
	if err := s.Unfollow(b.Root); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GC(); err != nil {
		t.Fatal(err)
	}
	packsAfter, _ := filepath.Glob(filepath.Join(dir, packsDir, "*"+packExt))
	gone := 0
	for _, p := range packsBefore {
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			gone++
		}
	}
	if gone == 0 {
		t.Fatalf("no pack compacted away: %d packs before, %d after", len(packsBefore), len(packsAfter))
	}
	if !s.Held(a.Root) {
		t.Fatal("a not held after compaction")
	}
	usage := s.Usage()
	s.Close()
	s2 := open(t, dir, Options{})
	if !s2.Held(a.Root) || s2.Usage() != usage {
		t.Fatalf("after reopening: usage %d (was %d), %+v", s2.Usage(), usage, s2.Bundles())
	}
	dagBlocks(t, s2, a.Root)
	if bad, err := s2.Scrub(t.Context()); err != nil || len(bad) != 0 {
		t.Fatalf("scrub after compaction: %v %v", bad, err)
	}
	t.Logf("%d packs before GC, %d removed, %d after", len(packsBefore), gone, len(packsAfter))
}

// An older mirrornet run on a migrated store (a downgrade) writes block
// files again; the next Open adds their blocks to the packs before it
// removes them, so a bundle published meanwhile is still held.
func TestMigrateAfterDowngrade(t *testing.T) {
	dir := t.TempDir()
	want := oldLayout(t, dir, makeTree(t, 47, 6))
	checkMigrated(t, dir, want).Close()
	// the older version: sees no block files, writes a new bundle
	old, err := layout1.Open(dir, layout1.Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := bundle.Import(t.Context(), makeTree(t, 48, 5), func(b blocks.Block) error { return old.Put(b.Cid(), b.RawData()) }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.MarkHeld(res.Root); err != nil {
		t.Fatal(err)
	}
	old.Close()
	s := open(t, dir, Options{})
	if !s.Held(res.Root) {
		t.Fatalf("bundle published by the older version lost: %+v", s.Bundles())
	}
	n := 0
	if err := bundle.Walk(t.Context(), res.Root, s.Get, func(cid.Cid, []byte) error { n++; return nil }); err != nil || n != res.Blocks {
		t.Fatalf("%d of %d blocks, %v", n, res.Blocks, err)
	}
	// the first bundle's blocks are all still in the packs
	if _, err := s.MarkHeld(want[0].Root); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, blocksDir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("old block files left")
	}
	usage := s.Usage()
	s.Close()
	if s2 := open(t, dir, Options{}); s2.Usage() != usage {
		t.Fatalf("usage %d after reopening, %d before", s2.Usage(), usage)
	}
}
