package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/mirrornet/mirrornet/internal/replicate"
	"github.com/mirrornet/mirrornet/internal/store"
)

// ErrBundleTooLarge means a followed bundle declares more bytes than
// --max-storage allows in all: it is refused, not fetched.
var ErrBundleTooLarge = errors.New("node: bundle larger than --max-storage")

// Why a follow is refused: the reason label of
// mirrornet_follow_refused_total and of the status "refused" list.
const (
	// refusedTooLarge: the bundle alone declares more than --max-storage.
	// Nothing but a larger limit helps: a restart with one fetches afresh;
	// following it again only repeats the refusal.
	refusedTooLarge = "too_large"
	// refusedStorageFull: the bundle would fit the limit, but not beside
	// the other bundles kept. Retried when storage is freed (unfollow, gc).
	refusedStorageFull = "storage_full"
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
	// refused is the reason the bundle was refused ("" while it is being
	// fetched or retried). A refused fetch waits for retry, never for
	// a timer or a kick: re-fetching cannot change the verdict until
	// storage is freed or the bundle is followed again.
	refused string
	retry   chan struct{}
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
		n.storageFreed()
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
	f := &fetchState{cancel: cancel, kick: make(chan struct{}, 1), retry: make(chan struct{}, 1)}
	n.fetches[c] = f
	n.wg.Add(1)
	n.mu.Unlock()
	go func() {
		defer n.wg.Done()
		defer cancel()
		retry := 2 * n.prof.Heartbeat
		for {
			err := n.fetchOnce(ctx, c, f)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			if reason := refusal(err); reason != "" {
				if !n.refuse(ctx, c, f, reason, err) {
					return
				}
				retry = 2 * n.prof.Heartbeat
				continue
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

// fetchOnce runs one fetch of c. Once the root block is here (before the
// fetch starts, or as the first block arrives) the size it declares is
// checked against --max-storage, so a bundle that can never fit is refused
// after one block, not after filling the store.
func (n *Node) fetchOnce(ctx context.Context, c cid.Cid, f *fetchState) error {
	if err := n.fits(c); err != nil {
		return err
	}
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	err := n.repl.Fetch(ctx, c, func(p replicate.Progress) {
		n.mu.Lock()
		f.progress = p
		n.mu.Unlock()
		if p.Blocks == 1 { // the root, always the first block of a pass
			if err := n.fits(c); err != nil {
				stop(err)
			}
		}
	})
	if cause := context.Cause(ctx); err != nil && errors.Is(cause, ErrBundleTooLarge) {
		return cause
	}
	return err
}

// fits returns ErrBundleTooLarge when the root of c is here and declares
// more bytes than --max-storage. (The declared size counts a block shared
// by two files twice, so a bundle of many duplicates may be refused though
// it would just fit.)
func (n *Node) fits(c cid.Cid) error {
	limit := n.cfg.MaxStorage
	if limit <= 0 {
		return nil
	}
	if size := declaredSize(n.store, c); size > limit {
		return fmt.Errorf("%w: %s is %d bytes, --max-storage is %d: raise --max-storage or unfollow it", ErrBundleTooLarge, c, size, limit)
	}
	return nil
}

// refusal names why err refuses a follow, or returns "" for an error a
// retry may cure (no holder reachable, a stalled transfer).
func refusal(err error) string {
	switch {
	case errors.Is(err, ErrBundleTooLarge):
		return refusedTooLarge
	case errors.Is(err, store.ErrStorageLimit):
		return refusedStorageFull
	}
	return ""
}

// refuse records that c is refused for reason: one warning in the log, one
// count in mirrornet_follow_refused_total, the error in ls, status and the
// answer to a repeated follow. It then waits until storage is freed (for
// storage_full; a too_large bundle waits for a restart) and reports whether
// to try again (false: unfollowed or closing).
func (n *Node) refuse(ctx context.Context, c cid.Cid, f *fetchState, reason string, err error) bool {
	n.mu.Lock()
	f.refused, f.lastErr = reason, err.Error()
	f.attempts++
	n.mu.Unlock()
	n.metrics.refused.WithLabelValues(reason).Inc()
	n.log.Warn("follow refused", "cid", c, "reason", reason, "err", err)
	select {
	case <-ctx.Done():
		return false
	case <-f.retry:
	}
	n.mu.Lock()
	f.refused = ""
	n.mu.Unlock()
	n.log.Info("retrying a refused follow", "cid", c, "reason", reason)
	return true
}

// storageFreed wakes the fetches refused for lack of space: they try again.
func (n *Node) storageFreed() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, f := range n.fetches {
		if f.refused == refusedStorageFull {
			wake(f.retry)
		}
	}
}

// wake signals ch without blocking (it has room for one signal).
func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// refusedError returns why c is refused, or nil.
func (n *Node) refusedError(c cid.Cid) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if f, ok := n.fetches[c]; ok && f.refused != "" {
		return errors.New(f.lastErr)
	}
	return nil
}

// refusedBundles lists the bundles refused now, for status.
func (n *Node) refusedBundles() []RefusedBundle {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []RefusedBundle
	for c, f := range n.fetches {
		if f.refused != "" {
			out = append(out, RefusedBundle{CID: c.String(), Reason: f.refused, Error: f.lastErr})
		}
	}
	slices.SortFunc(out, func(a, b RefusedBundle) int { return strings.Compare(a.CID, b.CID) })
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
