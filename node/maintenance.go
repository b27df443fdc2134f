package node

import (
	"time"

	"github.com/mirrornet/mirrornet/internal/store"
	"github.com/mirrornet/mirrornet/protocol"
)

// Maintenance intervals.
const (
	// pruneEvery bounds the memory of long-running nodes: forgotten mirrors
	// leave the view, and the replay guard drops signers not heard from
	// for longer than any statement may live on gossip.
	pruneEvery = time.Minute
	// scrubEvery re-verifies every stored block against its CID, so that
	// silent disk corruption turns a bundle back into "fetching" (and it is
	// fetched again) instead of being served.
	scrubEvery = 6 * time.Hour
)

// maintenanceLoop prunes state and scrubs the store periodically.
func (n *Node) maintenanceLoop() {
	defer n.wg.Done()
	prune := time.NewTicker(pruneEvery)
	defer prune.Stop()
	scrub := time.NewTicker(scrubEvery)
	defer scrub.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-prune.C:
			now := n.clock()
			n.view.Prune(now) // the view's own lock; the node's is not needed
			n.mu.Lock()
			n.guard.Forget(now.Add(-2 * protocol.MaxLivenessAge))
			for p, t := range n.synced {
				if now.Sub(t) > pruneEvery {
					delete(n.synced, p)
				}
			}
			n.mu.Unlock()
		case <-scrub.C:
			n.scrub()
		case <-n.repair:
			n.refetchDamaged()
		}
	}
}

// scrub re-verifies the store and re-fetches bundles that lost a block.
func (n *Node) scrub() {
	bad, err := n.store.Scrub(n.ctx)
	if err != nil {
		if n.ctx.Err() == nil {
			n.log.Warn("scrub", "err", err)
		}
		return
	}
	if len(bad) == 0 {
		return
	}
	n.log.Warn("scrub removed corrupt blocks; re-fetching affected bundles", "blocks", len(bad))
	n.refetchDamaged()
}

// corruptBlock is the store's report of a block found corrupt and deleted
// (store.Options.OnCorrupt): it is logged, counted, and the bundles that
// lost it are re-fetched from other holders at once, so the mirror serves
// them again as soon as the block is back instead of at the next scrub.
// It may run on any goroutine (a gateway or bitswap read), even before the
// node has finished starting, so it only signals the maintenance loop.
func (n *Node) corruptBlock(c store.Corruption) {
	n.log.Warn("corrupt block deleted; re-fetching it from other holders", "cid", c.Cid, "file", c.File, "offset", c.Offset, "found_by", c.FoundBy)
	n.metrics.corrupt.WithLabelValues(c.FoundBy).Inc()
	select {
	case n.repair <- struct{}{}:
	default: // a repair is already pending; it covers this block too
	}
}

// refetchDamaged restarts the fetch of every followed bundle that is not
// held (a held bundle that lost a block went back to fetching) and tells
// peers at once that this mirror no longer offers it.
func (n *Node) refetchDamaged() {
	for _, b := range n.store.Bundles() {
		if b.State != store.StateHeld {
			n.startFetch(b.Root)
		}
	}
	n.announce()
}
