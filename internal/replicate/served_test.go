package replicate

import (
	"bytes"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multihash"

	"github.com/mirrornet/mirrornet/internal/bitswapserve"
	"github.com/mirrornet/mirrornet/internal/store"
	"github.com/mirrornet/mirrornet/internal/store/ipfsbs"
)

// A 1 MiB leaf is served from a pooled buffer that goes back once sent; a
// small block is served from memory of its own, so keeping it pins no
// buffer.
func TestServedLeavesUsePooledBuffers(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	put := func(data []byte) cid.Cid {
		m, err := multihash.Sum(data, multihash.SHA2_256, -1)
		if err != nil {
			t.Fatal(err)
		}
		c := cid.NewCidV1(cid.Raw, m)
		if err := st.Put(c, data); err != nil {
			t.Fatal(err)
		}
		return c
	}
	leaf, small := seeded(1, pooledSize), seeded(2, 1000)
	cl, cs := put(leaf), put(small)
	bs := servedBlocks{ipfsbs.New(st)}

	blk, err := bs.Get(t.Context(), cl)
	if err != nil {
		t.Fatal(err)
	}
	pb, ok := blk.(*pooledBlock)
	if !ok {
		t.Fatalf("a 1 MiB leaf was served as %T, not from a pooled buffer", blk)
	}
	if _, ok := blk.(bitswapserve.Releaser); !ok || !bytes.Equal(blk.RawData(), leaf) || !blk.Cid().Equals(cl) {
		t.Fatal("pooled block is not the leaf, or not a Releaser")
	}
	pb.Release()
	if pb.buf.Load() != nil {
		t.Fatal("Release kept the buffer")
	}
	pb.Release() // twice is harmless

	blk, err = bs.Get(t.Context(), cs)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := blk.(*pooledBlock); ok || !bytes.Equal(blk.RawData(), small) || cap(blk.RawData()) >= pooledSize {
		t.Fatalf("a small block was served as %T with cap %d", blk, cap(blk.RawData()))
	}
	if n, err := bs.GetSize(t.Context(), cs); err != nil || n != len(small) {
		t.Fatalf("GetSize %d, %v", n, err)
	}
}
