package replicate

import (
	"os"
	"testing"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/mirrornet/mirrornet/internal/bundle"
	"github.com/mirrornet/mirrornet/internal/store"
)

// TestResumeOverTornBlocks: the store does not fsync blocks until a bundle
// is held, so after a power loss an interrupted fetch can leave blocks
// that are present but torn. Fetch skips present raw leaves without reading
// them; MarkHeld re-hashes them, deletes the torn ones and refuses, and
// Fetch then fetches them again: one call ends with the bundle held.
func TestResumeOverTornBlocks(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	a := newNode(t, mn)
	dir := makeTree(t, 5)
	res := publish(t, a, dir)

	// B's earlier run put every block, then lost power: two 1 MiB leaves
	// kept their names but lost their tails.
	bdir := t.TempDir()
	st, err := store.Open(bdir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var torn []cid.Cid
	if _, err := bundle.Import(t.Context(), dir, func(blk blocks.Block) error {
		if blk.Cid().Type() == cid.Raw && len(blk.RawData()) == 1<<20 && len(torn) < 2 {
			torn = append(torn, blk.Cid())
		}
		return st.Put(blk.Cid(), blk.RawData())
	}, nil); err != nil {
		t.Fatal(err)
	}
	if err := st.Follow(res.Root); err != nil {
		t.Fatal(err)
	}
	if len(torn) != 2 {
		t.Fatalf("tree has %d full leaves", len(torn))
	}
	type place struct {
		file string
		off  int64
		n    int
	}
	var places []place
	for _, c := range torn {
		file, off, n, err := st.Locate(c)
		if err != nil {
			t.Fatal(err)
		}
		places = append(places, place{file, off, n})
	}
	st.Close()
	for _, p := range places { // all but the first 4 KiB lost
		f, err := os.OpenFile(p.file, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(make([]byte, p.n-4096), p.off+4096); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}

	h, err := mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	st, err = store.Open(bdir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := &finder{}
	r, err := New(h, st, f, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); h.Close(); st.Close() })
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	f.set(a.h)
	b := &node{h: h, st: st, r: r, f: f}
	p := fetch(t, b, res.Root)
	if p.Fetched != len(torn) || p.Blocks != res.Blocks {
		t.Fatalf("progress %+v: want the %d torn blocks fetched again of %d", p, len(torn), res.Blocks)
	}
	if err := bundle.Walk(t.Context(), res.Root, st.Get, func(cid.Cid, []byte) error { return nil }); err != nil {
		t.Fatal(err)
	}
}
