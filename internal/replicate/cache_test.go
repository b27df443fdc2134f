package replicate

import (
	"bytes"
	"os"
	"testing"

	"github.com/ipfs/go-cid"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/mirrornet/mirrornet/internal/bundle"
	"github.com/mirrornet/mirrornet/internal/bundle/verify"
)

// A holder whose store trusts its cache of verified blocks (it wrote every
// block itself) still re-hashes a block whose pack was rewritten since: it
// drops the bad block and stops serving the bundle, and the fetcher gets
// the block from another holder.
func TestHolderRehashesReplacedBlockFile(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	a, b, c := newNode(t, mn), newNode(t, mn), newNode(t, mn)
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	dir := makeTree(t, 5)
	res := publish(t, a, dir)
	publish(t, c, dir)

	// Pick the first 1 MiB leaf of big.wasm and flip a bit of it in a's
	// pack file.
	var leaf cid.Cid
	if err := bundle.Walk(t.Context(), res.Root, a.st.Get, func(k cid.Cid, data []byte) error {
		if !leaf.Defined() && k.Type() == cid.Raw && len(data) == 1<<20 {
			leaf = k
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !leaf.Defined() {
		t.Fatal("no 1 MiB leaf")
	}
	p, off, n, err := a.st.Locate(leaf)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	bad := make([]byte, n)
	if _, err := f.ReadAt(bad, off); err != nil {
		t.Fatal(err)
	}
	bad[12345] ^= 1
	if _, err := f.WriteAt(bad[12345:12346], off+12345); err != nil {
		t.Fatal(err)
	}
	f.Close()

	b.f.set(a.h, c.h)
	fetch(t, b, res.Root)
	if err := bundle.Walk(t.Context(), res.Root, b.st.Get, func(cid.Cid, []byte) error { return nil }); err != nil {
		t.Fatal(err)
	}
	got, err := b.st.Get(leaf)
	if err != nil || verify.Check(leaf, got) != nil || bytes.Equal(got, bad) {
		t.Fatalf("fetcher's copy of the leaf: %v", err)
	}
	// a either served the leaf (and hashed the rewritten pack) or b got it
	// from c first; either way a's next read finds the block bad.
	if _, err := a.st.Get(leaf); err == nil {
		t.Fatal("holder returned a replaced, corrupt block file")
	}
	if ok, _ := a.st.Has(leaf); ok {
		t.Fatal("holder kept the corrupt block")
	}
	if a.st.Held(res.Root) {
		t.Fatal("holder still holds a bundle missing a block")
	}
}
