package ipfsbs

import (
	"bytes"
	"errors"
	"testing"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	mh "github.com/multiformats/go-multihash"

	"github.com/mirrornet/mirrornet/internal/store"
)

func TestAdapter(t *testing.T) {
	s, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	bs := New(s)
	ctx := t.Context()
	data := []byte("hello world\n")
	c, _ := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}.Sum(data)
	blk, _ := blocks.NewBlockWithCid(data, c)
	if _, err := bs.Get(ctx, blk.Cid()); !ipld.IsNotFound(err) {
		t.Fatalf("missing: %v", err)
	}
	if _, err := bs.GetSize(ctx, blk.Cid()); !ipld.IsNotFound(err) {
		t.Fatalf("missing size: %v", err)
	}
	if err := bs.PutMany(ctx, []blocks.Block{blk}); err != nil {
		t.Fatal(err)
	}
	got, err := bs.Get(ctx, blk.Cid())
	if err != nil || !bytes.Equal(got.RawData(), blk.RawData()) {
		t.Fatalf("get: %v", err)
	}
	if n, err := bs.GetSize(ctx, blk.Cid()); err != nil || n != len(blk.RawData()) {
		t.Fatalf("size: %d %v", n, err)
	}
	// a block whose bytes don't match its CID is refused
	bad, _ := blocks.NewBlockWithCid([]byte("tampered"), blk.Cid())
	if err := bs.Put(ctx, bad); !errors.Is(err, store.ErrHashMismatch) {
		t.Fatalf("tampered put: %v", err)
	}
	ch, err := bs.AllKeysChan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var keys []cid.Cid
	for k := range ch {
		keys = append(keys, k)
	}
	if len(keys) != 1 || !bytes.Equal(keys[0].Hash(), blk.Cid().Hash()) {
		t.Fatalf("keys %v", keys)
	}
	// filtered view: only held blocks are visible
	held := New(s, WithFilter(s.HeldBlock))
	if ok, _ := held.Has(ctx, blk.Cid()); ok {
		t.Fatal("filtered Has shows a block of no held bundle")
	}
	if _, err := held.Get(ctx, blk.Cid()); !ipld.IsNotFound(err) {
		t.Fatalf("filtered get: %v", err)
	}
	if _, err := s.MarkHeld(blk.Cid()); err != nil {
		t.Fatal(err)
	}
	if ok, _ := held.Has(ctx, blk.Cid()); !ok {
		t.Fatal("held block hidden")
	}
	if err := bs.DeleteBlock(ctx, blk.Cid()); err != nil {
		t.Fatal(err)
	}
	if ok, _ := bs.Has(ctx, blk.Cid()); ok {
		t.Fatal("deleted block still there")
	}
	if s.Held(blk.Cid()) {
		t.Fatal("bundle held after its only block was deleted")
	}
}
