package client

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ipfs/go-cid"
)

// checkTree compares the files of b with the tree written to dir.
func checkTree(t *testing.T, b *bundle, dir string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		want, ok := b.files[filepath.ToSlash(rel)]
		got, rerr := os.ReadFile(p)
		if !ok || rerr != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes, want %d (in bundle: %v, %v)", rel, len(got), len(want), ok, rerr)
		}
		n++
		return nil
	})
	if err != nil || n != len(b.files) {
		t.Fatalf("%d files written, want %d (%v)", n, len(b.files), err)
	}
}

// An interrupted download keeps what it verified beside the target; the
// next run reads it back and fetches only the blocks that are missing.
func TestGetDirResumesFetchingOnlyMissingBlocks(t *testing.T) {
	inBubble(t, testGetDirResumesFetchingOnlyMissingBlocks)
}

func testGetDirResumesFetchingOnlyMissingBlocks(t *testing.T) {
	files := map[string][]byte{
		"index.html": []byte("<h1>app</h1>"),
		"big.bin":    randomBytes(21, 12<<20+777),
		"lib/a.js":   randomBytes(22, 3000),
	}
	b := buildBundle(t, files)
	out := filepath.Join(t.TempDir(), "app")

	dying := newFakeMirror(t, b, honest)
	dying.killAfter = 5 << 20 // dies after about 5 of the 13 leaves
	o := testOptions(t, dying.URL)
	if _, err := GetDir(context.Background(), b.root, out, o); err == nil {
		t.Fatal("download from a mirror that died midway succeeded")
	}
	if _, err := os.Lstat(out); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an interrupted download left its output: %v", err)
	}
	kept := keptBlocks(t, PartialDir(out), b.root)
	leaves := 0
	for c := range kept {
		if c.Type() == cid.Raw {
			leaves++
		}
	}
	if len(kept) == 0 || len(kept) >= len(b.blocks) || leaves == 0 {
		t.Fatalf("the interrupted download kept %d of %d blocks (%d leaves)", len(kept), len(b.blocks), leaves)
	}

	// Run again against a healthy mirror that records what it is asked.
	m := newFakeMirror(t, b, honest)
	var (
		mu    sync.Mutex
		asked []cid.Cid
	)
	rec := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s, ok := strings.CutPrefix(r.URL.Path, "/ipfs/"); ok && r.Method == http.MethodGet {
			if c, err := cid.Decode(s); err == nil {
				mu.Lock()
				asked = append(asked, c)
				mu.Unlock()
			}
		}
		m.ServeHTTP(w, r)
	}))
	res, err := GetDir(context.Background(), b.root, out, testOptions(t, rec.URL))
	if err != nil {
		t.Fatal(err)
	}
	checkTree(t, b, out)
	if res.Resumed != len(kept) || res.Blocks != len(b.blocks) || res.Bytes != b.size {
		t.Errorf("resumed %d blocks (kept %d), %d blocks, %d bytes; want %d blocks, %d bytes",
			res.Resumed, len(kept), res.Blocks, res.Bytes, len(b.blocks), b.size)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, c := range asked {
		if kept[c] {
			t.Errorf("block %s was fetched again though it was on disk", c)
		}
	}
	if len(asked) == 0 || len(asked) > len(b.blocks)-len(kept) {
		t.Errorf("%d block requests for %d missing blocks", len(asked), len(b.blocks)-len(kept))
	}
	if _, err := os.Stat(PartialDir(out)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the spool is still there after a complete download: %v", err)
	}
}

// The leaves of an interrupted GetDir are kept in its partial tree, not
// in the spool; on the rerun a leaf whose bytes changed on disk is fetched
// again and a path of the wrong kind is replaced, so the output is still
// the bundle.
func TestGetDirResumeChecksTheTree(t *testing.T) { inBubble(t, testGetDirResumeChecksTheTree) }

func testGetDirResumeChecksTheTree(t *testing.T) {
	files := map[string][]byte{
		"big.bin":  randomBytes(31, 6<<20+5),
		"lib/a.js": randomBytes(32, 3000),
	}
	b := buildBundle(t, files)
	out := filepath.Join(t.TempDir(), "app")
	dying := newFakeMirror(t, b, honest)
	dying.killAfter = 4 << 20
	if _, err := GetDir(context.Background(), b.root, out, testOptions(t, dying.URL)); err == nil {
		t.Fatal("download from a mirror that died midway succeeded")
	}
	partial := PartialDir(out)
	sp, err := openSpool(partial)
	if err != nil {
		t.Fatal(err)
	}
	for c := range sp.index {
		if c.Type() == cid.Raw {
			t.Errorf("leaf %s is in the spool: leaves belong in the tree", c)
		}
	}
	sp.close()
	kept := keptBlocks(t, partial, b.root)
	// Change a byte of a kept leaf of big.bin.
	e, err := memDAG(b.blocks).entry(context.Background(), b.root)
	if err != nil {
		t.Fatal(err)
	}
	var bigNode cid.Cid
	for _, l := range e.node.Links() {
		if l.Name == "big.bin" {
			bigNode = l.Cid
		}
	}
	leaves, err := linksOf(bigNode, b.blocks[bigNode])
	if err != nil {
		t.Fatal(err)
	}
	off := int64(-1)
	for i, at := 0, int64(0); i < len(leaves) && off < 0; i++ {
		if kept[leaves[i].c] {
			off = at + 10
		}
		at += leaves[i].size
	}
	if off < 0 {
		t.Fatal("no leaf of big.bin was kept")
	}
	f, err := os.OpenFile(filepath.Join(partial, "tree", "big.bin"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var one [1]byte
	if _, err := f.ReadAt(one[:], off); err != nil {
		t.Fatal(err)
	}
	one[0]++
	if _, err := f.WriteAt(one[:], off); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if after := keptBlocks(t, partial, b.root); len(after) != len(kept)-1 {
		t.Fatalf("after changing one leaf on disk %d blocks are kept, want %d", len(after), len(kept)-1)
	}
	// lib/a.js as a directory: the tree does not have the bundle's
	// shape, so it is started again (the spool still has the structure).
	os.RemoveAll(filepath.Join(partial, "tree", "lib", "a.js"))
	if err := os.MkdirAll(filepath.Join(partial, "tree", "lib", "a.js", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := GetDir(context.Background(), b.root, out, testOptions(t, newFakeMirror(t, b, honest).URL)); err != nil {
		t.Fatal(err)
	}
	checkTree(t, b, out)
}

// keptBlocks lists the blocks a rerun of GetDir finds verified in the
// partial directory: dag-pb nodes in the spool, leaves in the tree.
func keptBlocks(t *testing.T, partial string, root cid.Cid) map[cid.Cid]bool {
	t.Helper()
	sp, err := openSpool(partial)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	kept := map[cid.Cid]bool{}
	for c := range sp.index {
		kept[c] = true
	}
	lt, err := newLiveTree(sp, root, filepath.Join(partial, "tree"), func(error) {})
	if err != nil {
		t.Fatal(err)
	}
	for c := range lt.leaves {
		kept[c] = true
	}
	return kept
}

// A spool torn by a crash mid-append, or with a block changed on disk, is
// cut at the first bad section: everything before it is kept.
func TestSpoolCutsTornTail(t *testing.T) {
	dir := t.TempDir()
	s, err := openSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	var cids []cid.Cid
	for i := range 4 {
		c, data := rawCID(randomBytes(uint64(i), 1000+i))
		cids = append(cids, c)
		if err := s.put(c, data); err != nil {
			t.Fatal(err)
		}
	}
	end := s.end
	s.close()
	p := filepath.Join(dir, spoolFile)
	// a torn fifth section
	f, _ := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte{0x90, 0x10, 1, 0x55})
	f.Close()
	s, err = openSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.index) != 4 || s.end != end || s.resumed != 4 {
		t.Fatalf("after a torn tail: %d blocks, end %d (want 4, %d)", len(s.index), s.end, end)
	}
	e := s.index[cids[2]]
	s.close()
	// flip a byte of the third block: it and the fourth are dropped
	raw, _ := os.ReadFile(p)
	raw[e.off] ^= 1
	os.WriteFile(p, raw, 0o644)
	s, err = openSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if len(s.index) != 2 || !s.has(cids[0]) || !s.has(cids[1]) || s.has(cids[2]) {
		t.Fatalf("after a bad block: %d blocks kept, want the first 2", len(s.index))
	}
	if got, ok := s.block(cids[1]); !ok || verifyBlock(cids[1], got) != nil {
		t.Fatal("a kept block does not read back")
	}
	if fi, _ := os.Stat(p); fi.Size() != s.end {
		t.Fatalf("spool not truncated: %d bytes, end %d", fi.Size(), s.end)
	}
}

func rawCID(data []byte) (cid.Cid, []byte) {
	c, err := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: 0x12, MhLength: -1}.Sum(data)
	if err != nil {
		panic(err)
	}
	return c, data
}
