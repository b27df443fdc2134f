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
	v.trackWantLocked(st.Signer)
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

// trackWantLocked records whether the view lacks the holdings statement
// id's current statement names (the wanting set Pending reads).
func (v *View) trackWantLocked(id peer.ID) {
	cur, ok := v.entries[id]
	if ok && cur.Liveness.Holdings != "" && !cur.Liveness.Inline() && v.holdings[id].digest != cur.Liveness.Holdings {
		v.wanting[id] = struct{}{}
		return
	}
	delete(v.wanting, id)
}

// Pending returns the holdings the view lacks at now: for every mirror
// not dead, left or forgotten whose current liveness statement names a
// digest the view holds no statement for, a reference to it, sorted by
// peer ID. It costs what is pending, not the size of the view (a mirror
// asks every heartbeat).
func (v *View) Pending(now time.Time) []protocol.HoldingsRef {
	type want struct{ st, susp *attest.Statement }
	v.mu.RLock()
	if len(v.wanting) == 0 {
		v.mu.RUnlock()
		return nil
	}
	wants := make([]want, 0, len(v.wanting))
	for id := range v.wanting {
		wants = append(wants, want{v.entries[id], v.suspicions[id]})
	}
	lag := v.lag
	v.mu.RUnlock()
	slices.SortFunc(wants, func(a, b want) int { return cmpPeer(a.st.Signer, b.st.Signer) })
	var out []protocol.HoldingsRef
	for _, w := range wants {
		if s, gone := v.stateOf(w.st, w.susp, lag, now); gone || s == StateDead || s == StateLeft {
			continue
		}
		out = append(out, protocol.HoldingsRef{Peer: w.st.Signer.String(), Digest: w.st.Liveness.Holdings})
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
