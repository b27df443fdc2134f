package node

import (
	"context"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/mirrornet/mirrornet/internal/replicate"
)

// fetchState tracks one bundle being fetched.
type fetchState struct {
	cancel   context.CancelFunc
	progress replicate.Progress
	lastErr  string
	attempts int
	// kick wakes a fetch waiting to retry: a mirror has just announced
	// holding the bundle.
	kick chan struct{}
}

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
	n.mu.Lock()
	if f, ok := n.fetches[c]; ok {
		f.cancel()
		delete(n.fetches, c)
	}
	n.mu.Unlock()
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
	}
}

// startFetch fetches c in the background until it is held, the bundle is
// unfollowed, or the node closes; failures are retried.
func (n *Node) startFetch(c cid.Cid) {
	n.mu.Lock()
	if _, ok := n.fetches[c]; ok || n.ctx.Err() != nil {
		n.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(n.ctx)
	f := &fetchState{cancel: cancel, kick: make(chan struct{}, 1)}
	n.fetches[c] = f
	n.wg.Add(1)
	n.mu.Unlock()
	go func() {
		defer n.wg.Done()
		defer cancel()
		retry := 2 * n.prof.Heartbeat
		for {
			err := n.repl.Fetch(ctx, c, func(p replicate.Progress) {
				n.mu.Lock()
				f.progress = p
				n.mu.Unlock()
			})
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			n.mu.Lock()
			f.lastErr = err.Error()
			f.attempts++
			n.mu.Unlock()
			n.log.Info("fetch incomplete; will retry", "cid", c, "err", err, "in", retry)
			t := time.NewTimer(retry)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			case <-f.kick:
				t.Stop()
				retry = 2 * n.prof.Heartbeat
			}
			if retry < 30*time.Second {
				retry *= 2
			}
		}
		n.mu.Lock()
		delete(n.fetches, c)
		n.mu.Unlock()
		n.log.Info("bundle held", "cid", c)
		n.announceHeld(c)
	}()
}

// kickFetches wakes the fetches of bundles a mirror has just announced
// holding. Called with n.mu held.
func (n *Node) kickFetches(bundles []string) {
	if len(n.fetches) == 0 {
		return
	}
	for _, b := range bundles {
		c, err := cid.Decode(b)
		if err != nil {
			continue
		}
		if f, ok := n.fetches[c]; ok {
			select {
			case f.kick <- struct{}{}:
			default:
			}
		}
	}
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
	n.mu.Lock()
	ms := n.view.Holders(root.String(), now)
	n.mu.Unlock()
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
