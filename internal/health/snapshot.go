package health

import (
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
)

// Readers that list the whole view (status page, probe rounds, sync,
// metrics) share one sorted listing per version of the view instead of
// each scanning the map under the view's lock: the lock is held only to
// copy the entries' pointers (no sorting, no state derivation, nothing
// that grows with the readers), and a view of ten thousand strangers
// costs one O(n log n) sort per change, whoever asks. States still depend
// on `now` and are derived from the listing outside any lock.

// snapshot is the view's entries at one version, sorted by peer ID.
// Immutable once built.
type snapshot struct {
	version    uint64
	lag        time.Duration
	items      []snapItem
	suspicions int // items with a standing suspicion
}

type snapItem struct {
	st   *attest.Statement
	susp *attest.Statement // standing suspicion about st's sequence, or nil
	hold heldSet           // holdings statement kept for st's mirror (zero: none)
}

// snapshot returns the listing for the current version, building it if
// no reader has since the last change.
func (v *View) snapshot() *snapshot {
	v.mu.RLock()
	if sn := v.snap.Load(); sn != nil && sn.version == v.version {
		v.mu.RUnlock()
		return sn
	}
	sn := &snapshot{version: v.version, lag: v.lag, items: make([]snapItem, 0, len(v.entries))}
	for id, st := range v.entries {
		it := snapItem{st: st, hold: v.heldFor(id)}
		if s := v.suspicions[id]; s != nil && s.Seq >= st.Seq {
			it.susp = s
			sn.suspicions++
		}
		sn.items = append(sn.items, it)
	}
	v.mu.RUnlock()
	slices.SortFunc(sn.items, func(a, b snapItem) int { return cmpPeer(a.st.Signer, b.st.Signer) })
	// Keep it unless the view changed meanwhile (a change clears the
	// cache; a stale listing must not come back).
	v.mu.RLock()
	if v.version == sn.version {
		v.snap.Store(sn)
	}
	v.mu.RUnlock()
	return sn
}

func (v *View) mirrorOf(it snapItem, lag time.Duration, now time.Time) (Mirror, bool) {
	s, gone := v.stateOf(it.st, it.susp, lag, now)
	if gone {
		return Mirror{}, false
	}
	st := it.st
	return Mirror{Peer: st.Signer, State: s, LastSeen: st.Time, Seq: st.Seq, Liveness: st.Liveness, Raw: st.Raw,
		Bundles: bundlesOf(st.Liveness, it.hold)}, true
}

// aliveSet is the alive mirrors of one (version, now).
type aliveSet struct {
	version uint64
	now     time.Time
	ids     []peer.ID
}

// Alive returns the mirrors alive at now, sorted by peer ID: the same
// slice while neither the view nor now changes (a status page or a probe
// round asks once per mirror). Callers must not modify it.
func (v *View) Alive(now time.Time) []peer.ID {
	sn := v.snapshot()
	if a := v.alive.Load(); a != nil && a.version == sn.version && a.now.Equal(now) {
		return a.ids
	}
	ids := make([]peer.ID, 0, len(sn.items))
	for _, it := range sn.items {
		if s, _ := v.stateOf(it.st, it.susp, sn.lag, now); s == StateAlive {
			ids = append(ids, it.st.Signer)
		}
	}
	v.mu.RLock()
	if v.version == sn.version {
		v.alive.Store(&aliveSet{version: sn.version, now: now, ids: ids})
	}
	v.mu.RUnlock()
	return ids
}
