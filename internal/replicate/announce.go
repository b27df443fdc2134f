package replicate

import (
	"context"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Announce tells bitswap that blocks are now available to serve. Call it
// when a bundle becomes held without passing through Fetch (a publish):
// peers that asked for those blocks earlier, while they were not served,
// get them at once instead of when their wantlist is next re-sent.
// Announcing a bundle's root block is enough: the rest is asked for after.
func (r *Replicator) Announce(ctx context.Context, blks ...blocks.Block) error {
	return r.bs.NotifyNewBlocks(ctx, blks...)
}

// WantedBy lists the blocks peer p has asked this mirror for and not yet
// received (its bitswap wantlist as this mirror's server sees it).
func (r *Replicator) WantedBy(p peer.ID) []cid.Cid {
	return r.bs.WantlistForPeer(p)
}
