package node

import (
	"time"

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
			n.mu.Lock()
			n.view.Prune(now)
			n.guard.Forget(now.Add(-2 * protocol.MaxLivenessAge))
			for p, t := range n.synced {
				if now.Sub(t) > pruneEvery {
					delete(n.synced, p)
				}
			}
			n.mu.Unlock()
		case <-scrub.C:
			n.scrub()
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
	for _, b := range n.store.Bundles() {
		if b.State != "held" {
			n.startFetch(b.Root)
		}
	}
	n.publishLiveness(protocol.StateUp)
}
