package ipfsbs

import (
	"bytes"
	"errors"
	"testing"

	bsmsg "github.com/ipfs/boxo/bitswap/message"
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

// The premise of WithBitswapDecodedPuts: boxo's bitswap decoder derives a
// received block's CID from its bytes, in the 1.0 Blocks and the 1.1+
// Payload encodings, so a sender cannot pair bytes with a CID they do not
// hash to. If a boxo upgrade changes that, this test fails.
func TestBitswapDecoderDerivesCIDs(t *testing.T) {
	data := []byte("the real block\n")
	tampered := []byte("not the block!\n")
	for _, prefix := range []cid.Prefix{
		{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1},
		{Version: 0, Codec: cid.DagProtobuf, MhType: mh.SHA2_256, MhLength: -1},
	} {
		c, _ := prefix.Sum(data)
		lie, _ := blocks.NewBlockWithCid(tampered, c) // claims c, carries other bytes
		for _, v := range []string{"1.0", "1.1"} {
			m := bsmsg.New(false)
			m.AddBlock(lie)
			var buf bytes.Buffer
			var err error
			if v == "1.0" {
				err = m.ToNetV0(&buf)
			} else {
				err = m.ToNetV1(&buf)
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _, err := bsmsg.FromNet(&buf)
			if err != nil {
				t.Fatal(err)
			}
			blks := got.Blocks()
			if len(blks) != 1 {
				t.Fatalf("%s: %d blocks decoded", v, len(blks))
			}
			if blks[0].Cid().Equals(c) || bytes.Equal(blks[0].Cid().Hash(), c.Hash()) {
				t.Fatalf("%s %s: decoder kept the sender's CID for other bytes", v, c)
			}
			if err := verifyBlock(blks[0]); err != nil {
				t.Fatalf("%s: decoded block's CID is not its bytes' hash: %v", v, err)
			}
		}
	}
}

func verifyBlock(b blocks.Block) error {
	want, err := b.Cid().Prefix().Sum(b.RawData())
	if err != nil {
		return err
	}
	if !bytes.Equal(want.Hash(), b.Cid().Hash()) {
		return errors.New("hash mismatch")
	}
	return nil
}

// WithBitswapDecodedPuts stores without hashing, on that instance only; a
// block it was wrongly handed is still caught by the first read after a
// restart (the store's verified cache starts empty).
func TestBitswapDecodedPuts(t *testing.T) {
	dir := t.TempDir()
	s, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	good := []byte("good block\n")
	c, _ := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}.Sum(good)
	lie, _ := blocks.NewBlockWithCid([]byte("wrong bytes"), c)

	if err := New(s).Put(ctx, lie); !errors.Is(err, store.ErrHashMismatch) {
		t.Fatalf("plain adapter: %v, want ErrHashMismatch", err)
	}
	if err := New(s, WithFilter(s.HeldBlock)).Put(ctx, lie); !errors.Is(err, store.ErrHashMismatch) {
		t.Fatalf("filtered adapter: %v, want ErrHashMismatch", err)
	}
	// The trusted instance does not hash: the lie goes in (this is why it
	// must only ever see blocks bitswap decoded).
	if err := New(s, WithBitswapDecodedPuts()).PutMany(ctx, []blocks.Block{lie}); err != nil {
		t.Fatalf("decoded put: %v", err)
	}
	s.Close()
	s2, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := New(s2).Get(ctx, c); !ipld.IsNotFound(err) {
		t.Fatalf("after restart: %v, want not found (corrupt, deleted)", err)
	}
}
