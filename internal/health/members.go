package health

import (
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/protocol"
)

// A failure detector asks, every probe period, which mirrors are alive or
// suspect (to probe) and which are dead (to try now and then). Listing the
// whole view for that costs a mirror O(n) per period, so a mirror's CPU
// would grow with the network. The lists change only when a mirror joins,
// goes, is suspected or refutes, changes what it says about leaving, or a
// deadline passes; a refresh that keeps a mirror's standing changes
// neither. So the view keeps them, with the earliest deadline at which a
// mirror would move between them, and lists itself again only after such
// a change.

// Members are the mirrors of the view at one time, by standing: Live the
// alive and suspect ones, Dead the dead ones (left and forgotten ones are
// in neither), each sorted by peer ID. Gen changes whenever the lists may
// have: a caller that derives something from them (a probe ring) can keep
// it while Gen stays. The slices are shared: do not modify them.
type Members struct {
	Live, Dead []peer.ID
	Gen        uint64
}

// membersSet is Members as built at one membership and time, valid until
// a mirror's deadline moves it between the lists.
type membersSet struct {
	membership uint64
	built      time.Time
	until      time.Time
	m          Members
}

// Members returns the mirrors alive or suspect, and those dead, at now. It
// lists the view only when the membership changed since the last call or a
// mirror's deadline passed; otherwise it returns the same lists, at no
// cost that grows with the view.
func (v *View) Members(now time.Time) Members {
	v.mu.RLock()
	c := v.members.Load()
	if c != nil && c.membership == v.membership && !now.Before(c.built) && now.Before(c.until) {
		v.mu.RUnlock()
		return c.m
	}
	// Copy the entries' pointers under the lock; derive states outside it.
	type entry struct{ st, susp *attest.Statement }
	membership, lag := v.membership, v.lag
	entries := make([]entry, 0, len(v.entries))
	for id, st := range v.entries {
		e := entry{st: st}
		if s := v.suspicions[id]; s != nil && s.Seq >= st.Seq {
			e.susp = s
		}
		entries = append(entries, e)
	}
	v.mu.RUnlock()

	set := &membersSet{membership: membership, built: now, until: now.Add(100 * 365 * 24 * time.Hour)}
	if c != nil {
		set.m.Gen = c.m.Gen + 1
	}
	for _, e := range entries {
		s, gone := v.stateOf(e.st, e.susp, lag, now)
		if gone {
			continue
		}
		switch s {
		case StateAlive, StateSuspect:
			set.m.Live = append(set.m.Live, e.st.Signer)
		case StateDead:
			set.m.Dead = append(set.m.Dead, e.st.Signer)
		}
		if at, ok := v.nextMove(e.st, e.susp, lag, now); ok && at.Before(set.until) {
			set.until = at
		}
	}
	slices.SortFunc(set.m.Live, cmpPeer)
	slices.SortFunc(set.m.Dead, cmpPeer)
	v.mu.RLock()
	if v.membership == membership {
		// Two callers may race here: the later build wins, both correct.
		v.members.Store(set)
	}
	v.mu.RUnlock()
	return set.m
}

// nextMove is when st's mirror, alive or suspect or dead at now, moves to
// another list of Members (or out of them) by time alone: when it turns
// dead, or is forgotten. ok is false if it never does.
func (v *View) nextMove(st, susp *attest.Statement, lag time.Duration, now time.Time) (at time.Time, ok bool) {
	forget := v.cfg.ForgetAfter
	if st.Liveness.State == protocol.StateLeaving {
		return time.Time{}, false // in neither list until forgotten
	}
	_, deadAt := v.deadlines(st, susp, lag)
	if now.Before(deadAt) {
		return deadAt, true
	}
	if forget > 0 {
		return deadAt.Add(forget), true
	}
	return time.Time{}, false
}

// sameStanding reports whether replacing old (under the standing
// suspicion oldSusp) by st (under susp) moves no mirror between the lists
// of Members, now or later than old would have: same list at now, and a
// deadline no earlier. A refresh of a mirror in good standing is one.
func (v *View) sameStanding(st, susp, old, oldSusp *attest.Statement, now time.Time) bool {
	if (st.Liveness.State == protocol.StateLeaving) != (old.Liveness.State == protocol.StateLeaving) {
		return false
	}
	s1, gone1 := v.stateOf(old, oldSusp, v.lag, now)
	s2, gone2 := v.stateOf(st, susp, v.lag, now)
	if gone1 || gone2 || (s1 == StateDead) != (s2 == StateDead) {
		return false
	}
	_, d1 := v.deadlines(old, oldSusp, v.lag)
	_, d2 := v.deadlines(st, susp, v.lag)
	return !d2.Before(d1)
}
