package attest

import (
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// SeqGuard remembers the highest sequence number accepted per (signer,
// kind), so that a replayed statement is ignored however long after the
// original it comes back. With a minimum interval set it is also the
// per-signer rate limit: a statement arriving sooner than that after the
// last accepted one of its signer and kind is refused with ErrRateLimited
// (and so not forwarded), unless it was also signed at least that much
// later. One key publishing a thousand statements a second gets at most one
// accepted per interval (plus, if it post-dates its statements, a burst of
// protocol.MaxClockDisparity worth), while an honest mirror (one statement
// per heartbeat; the interval is half a heartbeat) whose statements reach a
// starved observer in a bunch loses none of them.
//
// Memory: one small entry per (signer, kind) heard from recently; Forget
// drops the old ones. It is not safe for concurrent use; it does no I/O and
// never reads the clock.
type SeqGuard struct {
	last        map[seqKey]seqEntry
	minInterval time.Duration
}

type seqKey struct {
	signer peer.ID
	kind   Kind
}

type seqEntry struct {
	seq    uint64
	seen   time.Time // when accepted
	signed time.Time // the accepted statement's own time
}

// NewSeqGuard returns an empty guard with no rate limit.
func NewSeqGuard() *SeqGuard { return &SeqGuard{last: map[seqKey]seqEntry{}} }

// SetMinInterval sets the per-signer rate limit (0: none).
func (g *SeqGuard) SetMinInterval(d time.Duration) { g.minInterval = max(d, 0) }

// Check returns ErrReplay when st's sequence is not above the last accepted
// one from its signer for its kind. It does not record st.
func (g *SeqGuard) Check(st *Statement) error {
	if e, ok := g.last[seqKey{st.Signer, st.Kind}]; ok && st.Seq <= e.seq {
		return fmt.Errorf("%w: %d <= %d from %s", ErrReplay, st.Seq, e.seq, st.Signer)
	}
	return nil
}

// CheckRate returns ErrRateLimited when the last statement of st's signer
// and kind was accepted less than the minimum interval before now and
// signed less than the minimum interval before st.
func (g *SeqGuard) CheckRate(st *Statement, now time.Time) error {
	if g.minInterval <= 0 {
		return nil
	}
	e, ok := g.last[seqKey{st.Signer, st.Kind}]
	if !ok {
		return nil
	}
	arrived, signed := now.Sub(e.seen), st.Time.Sub(e.signed)
	if arrived >= 0 && arrived < g.minInterval && signed < g.minInterval {
		return fmt.Errorf("%w: %s after the last %s statement from %s, signed %s after it (minimum %s)", ErrRateLimited,
			arrived.Round(time.Millisecond), st.Kind, st.Signer, signed.Round(time.Millisecond), g.minInterval)
	}
	return nil
}

// Admit is Check and CheckRate together: the error a validator answers
// for st arriving at now, nil if Accept would record it.
func (g *SeqGuard) Admit(st *Statement, now time.Time) error {
	if err := g.Check(st); err != nil {
		return err
	}
	return g.CheckRate(st, now)
}

// Accept records st as the latest from its signer if it is newer, and
// reports whether it was. It does not apply the rate limit: call Admit
// first.
func (g *SeqGuard) Accept(st *Statement, now time.Time) bool {
	if g.Check(st) != nil {
		return false
	}
	g.last[seqKey{st.Signer, st.Kind}] = seqEntry{seq: st.Seq, seen: now, signed: st.Time}
	return true
}

// Last returns the last accepted sequence for signer and kind.
func (g *SeqGuard) Last(signer peer.ID, kind Kind) (uint64, bool) {
	e, ok := g.last[seqKey{signer, kind}]
	return e.seq, ok
}

// Len is how many (signer, kind) entries the guard holds.
func (g *SeqGuard) Len() int { return len(g.last) }

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
