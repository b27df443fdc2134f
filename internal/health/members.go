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

// membersSet is Members as built at one membership, time and local lag.
// A mirror moves between the lists when its dead deadline passes, and
// leaves them when it is forgotten; the local lag shifts every deadline by
// the same amount. So the lists stay right, for a lag shifted by d from
// the one they were built with, while now is before liveUntil+d (the
// earliest deadline of a live mirror), before deadForget+d (the earliest a
// dead one is forgotten), and not before deadLatest+d (the latest a dead
// one died) nor goneLatest+d (the latest one forgotten but not yet pruned
// was).
type membersSet struct {
	membership uint64
	built      time.Time
	lag        time.Duration
	liveUntil  time.Time
	deadForget time.Time
	deadLatest time.Time
	goneLatest time.Time
	m          Members
}

// valid reports whether s still gives the lists at now under lag.
func (s *membersSet) valid(membership uint64, now time.Time, lag time.Duration) bool {
	d := lag - s.lag
	return s.membership == membership && !now.Before(s.built) &&
		now.Before(s.liveUntil.Add(d)) && now.Before(s.deadForget.Add(d)) &&
		!now.Before(s.deadLatest.Add(d)) && !now.Before(s.goneLatest.Add(d))
}

// Members returns the mirrors alive or suspect, and those dead, at now. It
// lists the view only when the membership changed since the last call or a
// mirror's deadline passed; otherwise it returns the same lists, at no
// cost that grows with the view.
func (v *View) Members(now time.Time) Members {
	v.mu.RLock()
	c := v.members.Load()
	if c != nil && c.valid(v.membership, now, v.lag) {
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

	never := now.Add(100 * 365 * 24 * time.Hour)
	set := &membersSet{membership: membership, built: now, lag: lag, liveUntil: never, deadForget: never}
	if c != nil {
		set.m.Gen = c.m.Gen + 1
	}
	forget := v.cfg.ForgetAfter
	for _, e := range entries {
		if e.st.Liveness.State == protocol.StateLeaving {
			continue // in neither list, whatever the time
		}
		_, deadAt := v.deadlines(e.st, e.susp, lag)
		switch {
		case now.Before(deadAt):
			set.m.Live = append(set.m.Live, e.st.Signer)
			set.liveUntil = minTime(set.liveUntil, deadAt)
		case forget > 0 && !now.Before(deadAt.Add(forget)):
			if g := deadAt.Add(forget); g.After(set.goneLatest) {
				set.goneLatest = g
			}
		default:
			set.m.Dead = append(set.m.Dead, e.st.Signer)
			if deadAt.After(set.deadLatest) {
				set.deadLatest = deadAt
			}
			if forget > 0 {
				set.deadForget = minTime(set.deadForget, deadAt.Add(forget))
			}
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
