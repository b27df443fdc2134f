package health

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/protocol"
)

// A mirror's liveness statement names what it holds by digest (see
// protocol, section Holdings); the view keeps, next to each mirror's
// statement, the verified holdings statement that digest names, and
// [Mirror.Bundles] reads the list from it. Until it arrives (its digest
// is [View.Pending]) the mirror's previous list, if the view holds one,
// stands in; a mirror the view never held a list of holds nothing.

// ErrUnwantedHoldings refuses a holdings statement that the subject's
// current liveness statement does not name (an unknown mirror, an older
// or newer list, or a mirror that lists its bundles inline). It may be
// genuine, just not current: an "ignore", not a "reject".
var ErrUnwantedHoldings = errors.New("health: holdings not named by the mirror's current liveness statement")

// heldSet is a verified holdings statement and its digest.
type heldSet struct {
	st     *attest.Statement
	digest string
}

// holdingsCost is what a kept holdings statement counts against
// Limits.MaxBytes: its bytes, the decoded copy of its strings, their
// headers, and the map entry.
func holdingsCost(st *attest.Statement) int64 {
	return 2*int64(len(st.Raw)) + 16*int64(len(st.Holdings.Bundles)) + 256
}

// AddHoldings keeps a verified holdings statement if its subject's current
// liveness statement names its digest; the subject's [Mirror.Bundles] is
// its list from then on. It reports whether the view changed; refusals are
// ErrUnwantedHoldings and ErrOverBudget. The view keeps st: do not modify it.
func (v *View) AddHoldings(st *attest.Statement) (bool, error) {
	if st == nil || st.Kind != attest.KindHoldings || st.Holdings == nil {
		return false, nil
	}
	d := st.Holdings.Digest()
	v.mu.Lock()
	defer v.mu.Unlock()
	cur, ok := v.entries[st.Signer]
	switch {
	case !ok:
		return false, fmt.Errorf("%w: %s is not in the view", ErrUnwantedHoldings, st.Signer)
	case cur.Liveness.Holdings != d:
		return false, fmt.Errorf("%w: %s names %.12s…, not %.12s…", ErrUnwantedHoldings, st.Signer, cur.Liveness.Holdings, d)
	}
	if old, ok := v.holdings[st.Signer]; ok && old.digest == d {
		return false, nil
	}
	cost := holdingsCost(st)
	if v.limits.MaxBytes > 0 && v.bytes+cost > v.limits.MaxBytes {
		return false, fmt.Errorf("%w: %d of %d bytes in use, holdings of %s need %d", ErrOverBudget, v.bytes, v.limits.MaxBytes, st.Signer, cost)
	}
	v.dropHoldingsLocked(st.Signer)
	v.holdings[st.Signer] = heldSet{st: st, digest: d}
	v.bytes += cost
	v.contentChangedLocked()
	return true, nil
}

// dropHoldingsLocked forgets id's holdings statement.
func (v *View) dropHoldingsLocked(id peer.ID) {
	if h, ok := v.holdings[id]; ok {
		v.bytes -= holdingsCost(h.st)
		delete(v.holdings, id)
	}
}

// heldFor is the holdings statement kept for id (zero: none).
func (v *View) heldFor(id peer.ID) heldSet { return v.holdings[id] }

// bundlesOf is what a mirror whose statement is l and whose kept holdings
// statement is h (zero: none) holds: l's inline list, else h's list (the
// one l names, or the previous one while that is pending), or nil.
func bundlesOf(l *protocol.Liveness, h heldSet) []string {
	switch {
	case l == nil:
		return nil
	case l.Inline():
		return l.Bundles
	case h.st != nil:
		return h.st.Holdings.Bundles
	}
	return nil
}

// Holdings returns the signed holdings statement of id whose digest is
// digest, if the view holds it (for a pull request; see protocol). The
// bytes are shared: do not modify them.
func (v *View) Holdings(id peer.ID, digest string) ([]byte, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if h, ok := v.holdings[id]; ok && h.digest == digest {
		return h.st.Raw, true
	}
	return nil, false
}

// Pending returns the holdings the view lacks at now: for every mirror
// not dead, left or forgotten whose current liveness statement names a
// digest the view holds no statement for, a reference to it, sorted by
// peer ID.
func (v *View) Pending(now time.Time) []protocol.HoldingsRef {
	sn := v.snapshot()
	var out []protocol.HoldingsRef
	for _, it := range sn.items {
		l := it.st.Liveness
		if l.Holdings == "" || l.Inline() || it.hold.digest == l.Holdings {
			continue
		}
		if s, gone := v.stateOf(it.st, it.susp, sn.lag, now); gone || s == StateDead || s == StateLeft {
			continue
		}
		out = append(out, protocol.HoldingsRef{Peer: it.st.Signer.String(), Digest: l.Holdings})
	}
	return out
}

// Wants reports whether the view would keep the holdings statement ref
// names (the subject's current statement names that digest and the view
// does not hold it yet).
func (v *View) Wants(ref protocol.HoldingsRef) bool {
	id, err := peer.Decode(ref.Peer)
	if err != nil {
		return false
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	cur, ok := v.entries[id]
	if !ok || cur.Liveness.Holdings != ref.Digest || cur.Liveness.Inline() {
		return false
	}
	h, held := v.holdings[id]
	return !held || h.digest != ref.Digest
}

// HeldHoldings returns the holdings statements the view keeps, in no
// particular order (for evidence). The statements are shared.
func (v *View) HeldHoldings() []*attest.Statement {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]*attest.Statement, 0, len(v.holdings))
	for _, h := range v.holdings {
		out = append(out, h.st)
	}
	slices.SortFunc(out, func(a, b *attest.Statement) int { return cmpPeer(a.Signer, b.Signer) })
	return out
}
