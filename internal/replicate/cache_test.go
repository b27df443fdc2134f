package replicate

import (
	"bytes"
	"encoding/base32"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/ipfs/go-cid"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/mirrornet/mirrornet/internal/bundle"
	"github.com/mirrornet/mirrornet/internal/bundle/verify"
)

// blockFile finds the file holding c in a store directory (named by the
// base32 of its multihash).
func blockFile(t *testing.T, dir string, c cid.Cid) string {
	t.Helper()
	name := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(c.Hash())
	var found string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == name {
			found = p
		}
		return err
	})
	if err != nil || found == "" {
		t.Fatalf("no file for %s in %s: %v", c, dir, err)
	}
	return found
}

// A holder whose store trusts its cache of verified files (it wrote every
// block itself) still re-hashes a block whose file was replaced since: it
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

	// Pick the first 1 MiB leaf of big.wasm and replace its file on a.
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
	p := blockFile(t, a.dir, leaf)
	bad, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	bad[12345] ^= 1
	tmp := p + ".replacement"
	if err := os.WriteFile(tmp, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}

	b.f.set(a.h, c.h)
	fetch(t, b, res.Root)
	if err := bundle.Walk(t.Context(), res.Root, b.st.Get, func(cid.Cid, []byte) error { return nil }); err != nil {
		t.Fatal(err)
	}
	got, err := b.st.Get(leaf)
	if err != nil || verify.Check(leaf, got) != nil || bytes.Equal(got, bad) {
		t.Fatalf("fetcher's copy of the leaf: %v", err)
	}
	// a either served the leaf (and hashed the replaced file) or b got it
	// from c first; either way a's next read finds the file bad.
	if _, err := a.st.Get(leaf); err == nil {
		t.Fatal("holder returned a replaced, corrupt block file")
	}
	if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("holder kept the corrupt block file")
	}
	if a.st.Held(res.Root) {
		t.Fatal("holder still holds a bundle missing a block")
	}
}
