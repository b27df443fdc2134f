package health

import (
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
)

// Refusals of [View.Add]. Both are "ignore" verdicts for gossip: the
// statement may be genuine, there is just no room for it.
var (
	// ErrViewFull: the view holds Limits.MaxMirrors mirrors and none of
	// them is weaker than the newcomer.
	ErrViewFull = errors.New("health: view full")
	// ErrOverBudget: the statement would take the view's statements over
	// Limits.MaxBytes and nothing weaker can make room.
	ErrOverBudget = errors.New("health: statement byte budget exhausted")
)

// Default limits.
const (
	// DefaultMaxMirrors bounds the mirrors kept in the view: ten thousand
	// is far more than any app needs, and a status page of that size is
	// still quick to render.
	DefaultMaxMirrors = 10_000
	// DefaultMaxBytes bounds the memory the view's statements take (as
	// counted by [StatementCost]): an honest liveness statement (a few
	// addresses and bundles) costs well under 1 KiB, so 16 MiB fits ten
	// thousand of them, while the same budget caps a flood of near-limit
	// statements (512 bundles, about 45 KiB each) at about 370. The status
	// page and sync responses grow with it, so it is kept small.
	DefaultMaxBytes = 16 << 20
)

// Limits bound what strangers can make a view hold. The zero value means
// no limit at all (pure tests); nodes use DefaultLimits.
type Limits struct {
	// MaxMirrors is the most mirrors the view keeps (0: unbounded).
	MaxMirrors int
	// MaxBytes bounds the sum of [StatementCost] over the kept statements
	// (0: unbounded).
	MaxBytes int64
	// Protected, if set, says which mirrors this node has evidence for
	// (verified by probes, or connected to it directly): they are evicted
	// only after every stranger. Called with the view's lock held: it must
	// be quick and must not call back into the view.
	Protected func(peer.ID) bool
}

// DefaultLimits are the limits a node starts with.
func DefaultLimits() Limits { return Limits{MaxMirrors: DefaultMaxMirrors, MaxBytes: DefaultMaxBytes} }

// StatementCost is what one kept statement counts against Limits.MaxBytes:
// its signed bytes, what its decoded payload takes beyond them (attest
// decodes liveness in place: string headers, and only strings with
// escapes copied; see protocol.Liveness.Footprint), and a fixed overhead
// for the map entry and the Statement.
func StatementCost(st *attest.Statement) int64 {
	cost := int64(len(st.Raw)) + 256
	if st.Liveness != nil {
		cost += st.Liveness.Footprint(st.Raw)
	}
	return cost
}

// SetLimits sets the view's limits. They apply to later statements; a
// view already above them shrinks as its mirrors are replaced or forgotten.
func (v *View) SetLimits(l Limits) {
	v.mu.Lock()
	v.limits = l
	v.fullUntil = time.Time{}
	v.mu.Unlock()
}

// Bytes is the sum of StatementCost over the statements the view holds.
func (v *View) Bytes() int64 {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.bytes
}

// Len is how many mirrors the view holds (forgotten ones included until
// Prune).
func (v *View) Len() int {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return len(v.entries)
}

// rank orders entries for eviction: lower is evicted first. Strangers
// (not protected) go before mirrors this node has evidence for; within
// each, left before dead before suspect before alive; within a state, the
// longest silent first.
type rank struct {
	protected bool
	state     int
	lastSeen  time.Time
}

func stateRank(s State) int {
	switch s {
	case StateAlive:
		return 3
	case StateSuspect:
		return 2
	case StateDead:
		return 1
	}
	return 0
}

// below reports whether a is strictly weaker than b, ignoring lastSeen: a
// newcomer never evicts an equal (a stranger cannot push out another
// alive stranger), so a flood of strangers cannot churn the view.
func (a rank) below(b rank) bool {
	if a.protected != b.protected {
		return !a.protected
	}
	return a.state < b.state
}

func (a rank) weaker(b rank) bool {
	if a.protected != b.protected || a.state != b.state {
		return a.below(b)
	}
	return a.lastSeen.Before(b.lastSeen)
}

func (v *View) rankLocked(id peer.ID, st *attest.Statement, now time.Time) rank {
	s, _ := v.stateLocked(st, now)
	return rank{protected: v.limits.Protected != nil && v.limits.Protected(id), state: stateRank(s), lastSeen: st.Time}
}

// makeRoomLocked evicts the weakest entries strictly below the newcomer's
// rank until one more entry of cost bytes fits (replacing old, if the
// signer is already held). It changes nothing and returns the reason when
// room cannot be made.
func (v *View) makeRoomLocked(st *attest.Statement, now time.Time) error {
	l := v.limits
	if l.MaxMirrors <= 0 && l.MaxBytes <= 0 {
		return nil
	}
	cost := StatementCost(st)
	old, replacing := v.entries[st.Signer]
	need := func() (mirrors bool, bytes bool) {
		count, total := len(v.entries), v.bytes+cost
		if replacing {
			total -= StatementCost(old)
		} else {
			count++
		}
		return l.MaxMirrors > 0 && count > l.MaxMirrors, l.MaxBytes > 0 && total > l.MaxBytes
	}
	tooMany, tooBig := need()
	if !tooMany && !tooBig {
		return nil
	}
	me := v.rankLocked(st.Signer, st, now)
	if !me.protected && now.Before(v.fullUntil) {
		return v.refusal(tooMany)
	}
	// Pick victims first, evict only if enough room can be made.
	var victims []peer.ID
	freedMirrors, freedBytes := 0, int64(0)
	taken := map[peer.ID]bool{}
	for tooMany || tooBig {
		var best peer.ID
		var bestRank rank
		found := false
		nextWeak := time.Time{}
		for id, e := range v.entries {
			if id == st.Signer || taken[id] {
				continue
			}
			r := v.rankLocked(id, e, now)
			if !r.below(me) {
				if !me.protected && !r.protected && r.state == 3 {
					// This alive stranger becomes evictable by a
					// stranger once it turns suspect.
					t, _ := v.deadlinesLocked(e)
					if nextWeak.IsZero() || t.Before(nextWeak) {
						nextWeak = t
					}
				}
				continue
			}
			if !found || r.weaker(bestRank) {
				best, bestRank, found = id, r, true
			}
		}
		if !found {
			if !me.protected {
				// Nothing a stranger may evict until some alive
				// stranger turns suspect: refuse the next ones
				// without scanning.
				v.fullUntil = nextWeak
				if nextWeak.IsZero() || nextWeak.Sub(now) > v.cfg.SuspectAfter {
					v.fullUntil = now.Add(v.cfg.SuspectAfter)
				}
			}
			return v.refusal(tooMany)
		}
		taken[best] = true
		victims = append(victims, best)
		freedMirrors++
		freedBytes += StatementCost(v.entries[best])
		count, total := len(v.entries)-freedMirrors, v.bytes-freedBytes+cost
		if replacing {
			total -= StatementCost(old)
		} else {
			count++
		}
		tooMany, tooBig = l.MaxMirrors > 0 && count > l.MaxMirrors, l.MaxBytes > 0 && total > l.MaxBytes
	}
	for _, id := range victims {
		v.removeLocked(id)
	}
	return nil
}

func (v *View) refusal(tooMany bool) error {
	if tooMany {
		return fmt.Errorf("%w: %d mirrors (limit %d) and none weaker than the newcomer", ErrViewFull, len(v.entries), v.limits.MaxMirrors)
	}
	return fmt.Errorf("%w: %d of %d bytes in use and nothing weaker to evict", ErrOverBudget, v.bytes, v.limits.MaxBytes)
}

func (v *View) removeLocked(id peer.ID) {
	if v.dropLocked(id) {
		v.changedLocked()
	}
}

// dropLocked forgets id's statement, suspicion and holdings, and reports
// whether the view held a statement of id. The caller records the change.
func (v *View) dropLocked(id peer.ID) bool {
	e, ok := v.entries[id]
	if ok {
		v.bytes -= StatementCost(e)
		delete(v.entries, id)
	}
	delete(v.suspicions, id)
	delete(v.wanting, id)
	v.dropHoldingsLocked(id)
	return ok
}
