package attest

import (
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// SeqGuard remembers the highest sequence number accepted per (signer,
// kind), so that a replayed statement is ignored however long after the
// original it comes back. It is not safe for concurrent use; it does no I/O.
type SeqGuard struct {
	last map[seqKey]seqEntry
}

type seqKey struct {
	signer peer.ID
	kind   Kind
}

type seqEntry struct {
	seq  uint64
	seen time.Time
}

// NewSeqGuard returns an empty guard.
func NewSeqGuard() *SeqGuard { return &SeqGuard{last: map[seqKey]seqEntry{}} }

// Check returns ErrReplay when st's sequence is not above the last accepted
// one from its signer for its kind. It does not record st.
func (g *SeqGuard) Check(st *Statement) error {
	if e, ok := g.last[seqKey{st.Signer, st.Kind}]; ok && st.Seq <= e.seq {
		return fmt.Errorf("%w: %d <= %d from %s", ErrReplay, st.Seq, e.seq, st.Signer)
	}
	return nil
}

// Accept records st as the latest from its signer if it is newer, and
// reports whether it was.
func (g *SeqGuard) Accept(st *Statement, now time.Time) bool {
	if g.Check(st) != nil {
		return false
	}
	g.last[seqKey{st.Signer, st.Kind}] = seqEntry{seq: st.Seq, seen: now}
	return true
}

// Last returns the last accepted sequence for signer and kind.
func (g *SeqGuard) Last(signer peer.ID, kind Kind) (uint64, bool) {
	e, ok := g.last[seqKey{signer, kind}]
	return e.seq, ok
}

// Forget drops signers not heard from since before cutoff. A forgotten
// signer's old statements are still kept out by the age limit of their
// kind, which is why cutoff must be older than now minus that limit.
func (g *SeqGuard) Forget(cutoff time.Time) {
	for k, e := range g.last {
		if e.seen.Before(cutoff) {
			delete(g.last, k)
		}
	}
}
