package health

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/protocol"
)

// Refusals of [View.AddSuspicion]: the report may be genuine but says
// nothing about the subject's current statement. Both are "ignore"
// verdicts for gossip.
var (
	// ErrUnknownSubject: the view holds no statement of the subject.
	ErrUnknownSubject = errors.New("health: suspicion about a mirror the view does not hold")
	// ErrStaleSuspicion: the subject has signed a newer statement since
	// (the suspicion was refuted), or left, or a suspicion already stands
	// that began earlier.
	ErrStaleSuspicion = errors.New("health: suspicion refuted or superseded")
)

// AddSuspicion applies a verified suspicion (attest.KindSuspicion): the
// subject turns suspect at once, and dead [Config.SuspicionTimeout] after
// the report unless it signs a newer statement first. Per subject the view
// keeps one suspicion, the earliest report about the highest incarnation,
// so views converge whatever order reports arrive in, and a flood of
// reports costs no memory. It reports whether the view changed. The view
// keeps st: do not modify it.
func (v *View) AddSuspicion(st *attest.Statement, now time.Time) (bool, error) {
	if st == nil || st.Kind != attest.KindSuspicion || st.Suspicion == nil {
		return false, nil
	}
	if st.Time.After(now.Add(protocol.MaxClockDisparity)) {
		return false, nil
	}
	subject, err := peer.Decode(st.Suspicion.Subject)
	if err != nil {
		return false, fmt.Errorf("%w: subject %q", ErrUnknownSubject, st.Suspicion.Subject)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	cur, ok := v.entries[subject]
	if !ok {
		return false, fmt.Errorf("%w: %s", ErrUnknownSubject, subject)
	}
	if cur.Seq > st.Seq || cur.Liveness.State == protocol.StateLeaving {
		return false, fmt.Errorf("%w: %s is at sequence %d, the report is about %d", ErrStaleSuspicion, subject, cur.Seq, st.Seq)
	}
	if old := v.suspicions[subject]; old != nil && !strongerSuspicion(st, old) {
		return false, fmt.Errorf("%w: a report about %s from %s stands already", ErrStaleSuspicion, subject, old.Signer)
	}
	v.suspicions[subject] = st
	v.changedLocked()
	return true, nil
}

// strongerSuspicion reports whether a should replace b: a higher
// incarnation, or the same one reported earlier (ties to the smaller bytes).
func strongerSuspicion(a, b *attest.Statement) bool {
	if a.Seq != b.Seq {
		return a.Seq > b.Seq
	}
	if !a.Time.Equal(b.Time) {
		return a.Time.Before(b.Time)
	}
	return bytes.Compare(a.Raw, b.Raw) < 0
}

// Suspicion returns the standing suspicion about id's current statement.
func (v *View) Suspicion(id peer.ID) (*attest.Statement, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	s := v.suspicions[id]
	if s == nil {
		return nil, false
	}
	if cur, ok := v.entries[id]; !ok || cur.Seq > s.Seq {
		return nil, false
	}
	return s, true
}
