package node

import (
	"context"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/mirrornet/mirrornet/internal/replicate"
)

// ErrBundleTooLarge means a followed bundle declares more bytes than
// --max-storage allows in all: it is refused, not fetched.
var ErrBundleTooLarge = replicate.ErrBundleTooLarge

// Follow makes this mirror keep the bundle rooted at c: it is recorded in
// the store at once and fetched from other mirrors in the background.
func (n *Node) Follow(c cid.Cid) error {
	if err := n.store.Follow(c); err != nil {
		return err
	}
	if !n.store.Held(c) {
		n.startFetch(c)
	}
	return nil
}

// Unfollow stops keeping c: a fetch in progress stops, and its blocks are
// garbage-collected.
func (n *Node) Unfollow(c cid.Cid) error {
	n.follow.Stop(c)
	if err := n.store.Unfollow(c); err != nil {
		return err
	}
	n.gc()
	n.announce()
	return nil
}

// gc frees blocks no followed bundle needs, unless an import is streaming
// blocks whose root is not known yet.
func (n *Node) gc() {
	n.mu.Lock()
	busy := n.importing > 0
	n.mu.Unlock()
	if busy {
		return
	}
	if freed, err := n.store.GC(); err != nil {
		n.log.Warn("garbage collection", "err", err)
	} else if freed > 0 {
		n.log.Info("garbage collected", "bytes", freed)
		n.storageFreed()
	}
}

// startFetch fetches c in the background until it is held, the bundle is
// unfollowed, or the node closes (replicate.Follower).
func (n *Node) startFetch(c cid.Cid) { n.follow.Start(c) }

// storageFreed wakes the fetches refused for lack of space: they try again.
func (n *Node) storageFreed() { n.follow.StorageFreed() }

// refusedError returns why c is refused, or nil.
func (n *Node) refusedError(c cid.Cid) error { return n.follow.RefusedError(c) }

// kickFetches wakes the fetches of bundles a mirror has just announced
// holding.
func (n *Node) kickFetches(bundles []string) { n.follow.Kick(bundles) }

// refusedBundles lists the bundles refused now, for status.
func (n *Node) refusedBundles() []RefusedBundle {
	var out []RefusedBundle
	for _, r := range n.follow.Refused() {
		out = append(out, RefusedBundle{CID: r.CID.String(), Reason: r.Reason, Error: r.Err})
	}
	return out
}

// RefusedBundle is a followed bundle this mirror refuses to fetch, in
// status's "refused" list.
type RefusedBundle struct {
	CID string `json:"cid"`
	// Reason is "too_large" (the bundle alone declares more than
	// --max-storage) or "storage_full" (it does not fit beside the other
	// bundles kept).
	Reason string `json:"reason"`
	Error  string `json:"error"`
}

// announceHeld tells the network at once that this mirror holds c: a fresh
// liveness statement and a DHT provider record.
func (n *Node) announceHeld(c cid.Cid) {
	n.announce()
	if n.disc == nil || n.disc.DHT() == nil {
		return
	}
	kad := n.disc.DHT()
	if len(kad.RoutingTable().ListPeers()) == 0 {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
		defer cancel()
		if err := kad.Provide(ctx, c, true); err != nil && n.ctx.Err() == nil {
			n.log.Debug("DHT provide", "cid", c, "err", err)
		}
	}()
}

// holderFinder answers replicate's question "who holds root?" from the
// health view (bundles listed in verified liveness statements) and from DHT
// provider records.
type holderFinder struct{ n *Node }

func (h holderFinder) Holders(root cid.Cid) []peer.AddrInfo {
	n := h.n
	now := n.clock()
	ms := n.view.Holders(root.String(), now)
	seen := map[peer.ID]bool{n.id: true}
	var out []peer.AddrInfo
	for _, m := range ms {
		if seen[m.Peer] || m.Liveness == nil {
			continue
		}
		seen[m.Peer] = true
		ai := peer.AddrInfo{ID: m.Peer}
		for _, s := range m.Liveness.Addrs {
			if a, err := ma.NewMultiaddr(s); err == nil {
				ai.Addrs = append(ai.Addrs, a)
			}
		}
		out = append(out, ai)
	}
	if n.disc != nil && n.disc.DHT() != nil && len(n.disc.DHT().RoutingTable().ListPeers()) > 0 {
		ctx, cancel := context.WithTimeout(n.ctx, 3*time.Second)
		defer cancel()
		for ai := range n.disc.DHT().FindProvidersAsync(ctx, root, 20) {
			if !seen[ai.ID] {
				seen[ai.ID] = true
				out = append(out, ai)
			}
		}
	}
	return out
}
