// Package ipfsbs adapts a *store.Store to boxo's blockstore.Blockstore, so
// boxo's bitswap and trustless gateway read and write mirrornet's store. It
// lives apart from package store because boxo's blockstore package pulls in
// net/http, which the pure store must not depend on.
package ipfsbs

import (
	"context"
	"errors"

	"github.com/ipfs/boxo/blockstore"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"

	"github.com/mirrornet/mirrornet/internal/store"
)

// Blockstore is a boxo blockstore backed by a *store.Store. Every block is
// verified against its CID on Put (unless WithBitswapDecodedPuts) and on
// Get by the store. Missing blocks are reported as ipld.ErrNotFound, as boxo
// expects.
type Blockstore struct {
	s *store.Store
	// filter, if set, hides blocks it rejects from Has, Get and GetSize.
	filter func(cid.Cid) bool
	// decoded: Put trusts blk.Cid() (see WithBitswapDecodedPuts).
	decoded bool
}

var _ blockstore.Blockstore = (*Blockstore)(nil)

// Option configures a Blockstore.
type Option func(*Blockstore)

// WithFilter makes the blockstore show only blocks for which keep returns
// true, e.g. store.HeldBlock to serve only blocks of held bundles. Puts are
// not filtered.
func WithFilter(keep func(cid.Cid) bool) Option { return func(b *Blockstore) { b.filter = keep } }

// WithBitswapDecodedPuts makes Put and PutMany store each block under
// blk.Cid() without hashing its bytes again (store.PutVerified). Use it
// only on the instance whose Puts receive blocks exactly as boxo's bitswap
// decoded them from the network, and never for blocks from anywhere else.
//
// Why that is safe, in boxo v0.43.0: bitswap/message/message.go,
// newMessageFromProto, builds every received block from its bytes: a
// Bitswap 1.0 message's Blocks with blocks.NewBlock(d) (the CIDv0 is the
// sha2-256 of d), and a 1.1+ message's Payload with NewWantlistBlock(data,
// cid.Undef, prefix), which computes prefix.Sum(data). bsnet (network/bsnet,
// ipfs_impl.go) decodes every incoming stream with bsmsg.FromMsgReader, and
// client.ReceiveMessage hands those block objects unchanged to the sessions,
// so a block returned by a session's GetBlock carries the CID its own bytes
// hash to. (internal/replicate's claimStream, which takes fetched blocks
// off the stream before bitswap decodes them, derives their CIDs the same
// way, with the prefix sent.) (Blocks this process passes to Bitswap.NotifyNewBlocks reach
// sessions too; they come from the local store, verified already.) Every
// other Put path (imports, the gateway, a plain New) keeps hashing.
func WithBitswapDecodedPuts() Option { return func(b *Blockstore) { b.decoded = true } }

// New wraps s.
func New(s *store.Store, opts ...Option) *Blockstore {
	b := &Blockstore{s: s}
	for _, o := range opts {
		o(b)
	}
	return b
}

func (b *Blockstore) hidden(c cid.Cid) bool { return b.filter != nil && !b.filter(c) }

func notFound(c cid.Cid, err error) error {
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrCorrupt) {
		return ipld.ErrNotFound{Cid: c}
	}
	return err
}

// DeleteBlock removes a block.
func (b *Blockstore) DeleteBlock(_ context.Context, c cid.Cid) error { return b.s.Delete(c) }

// Has reports whether the block is present (and visible).
func (b *Blockstore) Has(_ context.Context, c cid.Cid) (bool, error) {
	if b.hidden(c) {
		return false, nil
	}
	return b.s.Has(c)
}

// Get returns a verified block.
func (b *Blockstore) Get(_ context.Context, c cid.Cid) (blocks.Block, error) {
	if b.hidden(c) {
		return nil, ipld.ErrNotFound{Cid: c}
	}
	data, err := b.s.Get(c)
	if err != nil {
		return nil, notFound(c, err)
	}
	return blocks.NewBlockWithCid(data, c)
}

// GetInto returns a verified block's bytes, read into buf when they fit
// in cap(buf) (see store.Store.GetInto). The gateway streams blocks through
// a few reused buffers this way.
func (b *Blockstore) GetInto(_ context.Context, c cid.Cid, buf []byte) ([]byte, error) {
	if b.hidden(c) {
		return nil, ipld.ErrNotFound{Cid: c}
	}
	data, err := b.s.GetInto(c, buf)
	if err != nil {
		return nil, notFound(c, err)
	}
	return data, nil
}

// GetManyInto reads blocks cs in order into buf, as many as fit (at least
// one), one read for blocks stored next to each other (see
// store.Store.GetManyInto); the error is cs[0]'s when none could be read.
func (b *Blockstore) GetManyInto(_ context.Context, cs []cid.Cid, buf []byte) ([][]byte, error) {
	for i, c := range cs {
		if b.hidden(c) {
			if i == 0 {
				return nil, ipld.ErrNotFound{Cid: c}
			}
			cs = cs[:i]
			break
		}
	}
	out, err := b.s.GetManyInto(cs, buf)
	if err != nil {
		return nil, notFound(cs[0], err)
	}
	return out, nil
}

// GetSize returns a block's size.
func (b *Blockstore) GetSize(_ context.Context, c cid.Cid) (int, error) {
	if b.hidden(c) {
		return -1, ipld.ErrNotFound{Cid: c}
	}
	n, err := b.s.GetSize(c)
	if err != nil {
		return -1, notFound(c, err)
	}
	return n, nil
}

// Put stores a block after verifying it (with WithBitswapDecodedPuts, a
// block whose CID bitswap derived from its bytes, without hashing again).
func (b *Blockstore) Put(_ context.Context, blk blocks.Block) error {
	if b.decoded {
		return b.s.PutVerified(blk.Cid(), blk.RawData())
	}
	return b.s.Put(blk.Cid(), blk.RawData())
}

// PutMany stores blocks one by one (each is made durable on its own).
func (b *Blockstore) PutMany(ctx context.Context, blks []blocks.Block) error {
	for _, blk := range blks {
		if err := b.Put(ctx, blk); err != nil {
			return err
		}
	}
	return nil
}

// AllKeysChan lists every stored (visible) block as a raw-codec CIDv1.
func (b *Blockstore) AllKeysChan(ctx context.Context) (<-chan cid.Cid, error) {
	keys, err := b.s.AllKeys(ctx)
	if err != nil {
		return nil, err
	}
	ch := make(chan cid.Cid)
	go func() {
		defer close(ch)
		for _, k := range keys {
			if b.hidden(k) {
				continue
			}
			select {
			case ch <- k:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, nil
}
