// Package health keeps a node's view of the other mirrors: per mirror, the
// latest verified liveness statement and a state derived from its age.
//
// The view is a pure state machine: it starts no goroutine, does no I/O and
// never reads the clock. Every method that depends on time takes `now`, and
// ages are measured from each statement's own signed time, so every node
// given the same statements and the same `now` computes the same view,
// whatever order the statements arrived in.
//
// A mirror is
//
//   - alive while its latest statement is younger than its TTL (the
//     signer's promise to sign again, protocol.Liveness.TTL; 0 for a
//     heartbeat statement) plus [Config.SuspectAfter], and nobody has
//     reported it unresponsive,
//   - suspect once its statement is that old, or once a verified
//     suspicion (a failure detector's signed report, see [View.AddSuspicion])
//     names its current sequence number,
//   - dead once the statement is TTL plus [Config.DeadAfter] old, or once a
//     suspicion has stood unrefuted for [Config.SuspicionTimeout] and the
//     statement is at least DeadAfter old (a mirror is never declared dead
//     sooner than DeadAfter after its last signed word), and
//   - left once its latest statement says "leaving" (a graceful stop).
//
// A suspicion is refuted by the subject's own newer liveness statement (a
// higher sequence number); nobody else can sign one.
//
// Dead and left mirrors are forgotten [Config.ForgetAfter] after they became
// so. A statement with a higher sequence number always replaces a lower one,
// so a mirror that left and came back (a newer "up") is alive again.
//
// Typical use (in the node's gossip validator and sync client):
//
//	st, err := attest.Verify(raw, now)
//	if attest.Classify(err) == attest.Accept {
//		view.Apply(st, now)
//	}
//
// A node whose own timers fire late (CPU starvation, GC, a paused process)
// must not blame its peers for its own slowness; it reports the lateness it
// observed with [View.SetLocalLag], which stretches the suspect and dead
// thresholds by that much (Lifeguard's local health awareness).
package health

import (
	"bytes"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/protocol"
)

// State is a mirror's health as this node sees it. It is a string so that
// later states (verified by probes, degraded) can be added without breaking
// metrics labels or JSON.
type State string

// States derived from liveness statements.
const (
	StateAlive   State = "alive"
	StateSuspect State = "suspect"
	StateDead    State = "dead"
	StateLeft    State = "left"
)

// States lists the states the view derives, in order of decreasing health.
func States() []State { return []State{StateAlive, StateSuspect, StateDead, StateLeft} }

// Mirror is one mirror as the view sees it at some `now`.
type Mirror struct {
	Peer  peer.ID
	State State
	// LastSeen is the signed time of the latest statement.
	LastSeen time.Time
	// Seq is the latest statement's sequence number.
	Seq uint64
	// Liveness is the latest statement's payload. Shared: do not modify.
	Liveness *protocol.Liveness
	// Raw is the latest statement's signed bytes. Shared: do not modify.
	Raw []byte
	// Bundles are the root CIDs the mirror holds, sorted: listed in its
	// statement, or in the holdings statement its statement names by
	// digest. While the view does not hold that one yet (see
	// [View.Pending]) they are the mirror's previous signed list, if the
	// view holds one (its holdings changed a moment ago), else nil.
	// Shared: do not modify.
	Bundles []string
}

// View is the health view. Its methods are safe for concurrent use; none
// blocks on anything but the view's own lock.
type View struct {
	cfg Config

	mu      sync.RWMutex
	lag     time.Duration
	entries map[peer.ID]*attest.Statement
	// suspicions holds, per subject, the standing suspicion about its
	// current statement (the earliest report of the highest incarnation).
	suspicions map[peer.ID]*attest.Statement
	// holdings holds, per mirror, the holdings statement its current
	// statement names (see holdings.go).
	holdings map[peer.ID]heldSet
	// bytes is the sum of StatementCost over entries and holdingsCost
	// over holdings.
	bytes  int64
	limits Limits
	// fullUntil: until then no stranger can be admitted (nothing it may
	// evict), so strangers are refused without a scan.
	fullUntil time.Time
	// version rises with every change of entries, suspicions or lag.
	version uint64
	// snap caches the sorted listing readers share for one version (see
	// snapshot.go); every change clears it, so it never keeps a replaced
	// statement alive.
	snap atomic.Pointer[snapshot]
	// alive caches the alive set for one (version, now).
	alive atomic.Pointer[aliveSet]
	// membership rises with every change that may move a mirror between
	// the lists of [View.Members] (all changes but refreshes that keep a
	// mirror's standing and holdings); members caches those lists.
	membership uint64
	members    atomic.Pointer[membersSet]
	// wanting holds the mirrors whose current statement names a holdings
	// digest the view holds no statement for (see [View.Pending]).
	wanting map[peer.ID]struct{}
}

// changedLocked records a change that may move mirrors between states: a
// new version and membership, and no cached listing.
func (v *View) changedLocked() {
	v.membership++
	v.contentChangedLocked()
}

// contentChangedLocked records a change that moves no mirror between
// states: a new version, and no cached listing.
func (v *View) contentChangedLocked() {
	v.version++
	v.snap.Store(nil)
	v.alive.Store(nil)
}

// Version rises whenever the view changes (a statement applied or
// evicted, a mirror pruned, the local lag set): callers may cache what
// they derive from it for one (version, now).
func (v *View) Version() uint64 {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.version
}

// New returns an empty view. It panics if cfg is invalid: validate
// configuration from users with [Config.Validate] first.
func New(cfg Config) *View {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	return &View{cfg: cfg, entries: map[peer.ID]*attest.Statement{}, suspicions: map[peer.ID]*attest.Statement{}, holdings: map[peer.ID]heldSet{}, wanting: map[peer.ID]struct{}{}}
}

// Apply adds a verified liveness statement. It keeps, per signer, the
// statement with the highest sequence number (ties between different bytes
// of the same sequence, which only an equivocating signer produces, go to the
// greater bytes so that order does not matter). It reports whether the view
// changed. Statements of other kinds, statements further in the future than
// protocol.MaxClockDisparity, and statements so old that the mirror would
// already be forgotten are not applied. The view keeps st: do not modify it.
func (v *View) Apply(st *attest.Statement, now time.Time) bool {
	changed, _ := v.Add(st, now)
	return changed
}

// Add is Apply that also says why a statement was refused for want of
// room: ErrViewFull or ErrOverBudget (see [View.SetLimits]). When the view
// is at its limits, a statement evicts the weakest mirrors (strangers
// before mirrors with evidence; left, dead and suspect before alive; the
// longest silent first) only if they rank strictly below it, so a flood of
// strangers cannot push out alive mirrors nor churn the view.
func (v *View) Add(st *attest.Statement, now time.Time) (bool, error) {
	if st == nil || st.Kind != attest.KindLiveness || st.Liveness == nil || st.Signer == "" {
		return false, nil
	}
	if st.Time.After(now.Add(protocol.MaxClockDisparity)) {
		return false, nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if cur, ok := v.entries[st.Signer]; ok && !newer(st, cur) {
		return false, nil
	}
	if _, gone := v.stateLocked(st, now); gone {
		return false, nil
	}
	if err := v.makeRoomLocked(st, now); err != nil {
		return false, err
	}
	cur, known := v.entries[st.Signer]
	susp := v.suspicions[st.Signer]
	held, hasHeld := v.holdings[st.Signer]
	v.dropLocked(st.Signer)
	if susp != nil && susp.Seq >= st.Seq {
		v.suspicions[st.Signer] = susp // not refuted by this one
	}
	if hasHeld && !st.Liveness.Inline() {
		// A refresh that names the same holdings keeps them; one that
		// names new holdings keeps the old list until the new one
		// arrives (see Mirror.Bundles).
		v.holdings[st.Signer] = held
		v.bytes += holdingsCost(held.st)
	}
	v.entries[st.Signer] = st
	v.bytes += StatementCost(st)
	v.trackWantLocked(st.Signer)
	if known && v.sameStanding(st, v.suspicions[st.Signer], cur, susp, now) {
		v.contentChangedLocked()
	} else {
		v.changedLocked()
	}
	return true, nil
}

// newer reports whether a should replace b.
func newer(a, b *attest.Statement) bool {
	if a.Seq != b.Seq {
		return a.Seq > b.Seq
	}
	return bytes.Compare(a.Raw, b.Raw) > 0
}

// stateLocked derives st's state at now, and whether it is to be forgotten.
func (v *View) stateLocked(st *attest.Statement, now time.Time) (s State, gone bool) {
	return v.stateOf(st, v.suspicions[st.Signer], v.lag, now)
}

// stateOf derives st's state at now under the standing suspicion susp
// (nil: none) and the local lag, and whether it is to be forgotten.
func (v *View) stateOf(st, susp *attest.Statement, lag time.Duration, now time.Time) (s State, gone bool) {
	forget := v.cfg.ForgetAfter
	if st.Liveness.State == protocol.StateLeaving {
		return StateLeft, forget > 0 && now.Sub(st.Time) >= forget
	}
	suspectAt, deadAt := v.deadlines(st, susp, lag)
	switch {
	case !now.Before(deadAt):
		return StateDead, forget > 0 && now.Sub(deadAt) >= forget
	case !now.Before(suspectAt):
		return StateSuspect, false
	default:
		return StateAlive, false
	}
}

// deadlinesLocked returns when st's mirror turns suspect and dead, unless
// a newer statement comes.
func (v *View) deadlinesLocked(st *attest.Statement) (suspectAt, deadAt time.Time) {
	return v.deadlines(st, v.suspicions[st.Signer], v.lag)
}

// deadlines returns when st's mirror turns suspect and dead, unless a
// newer statement comes: TTL plus SuspectAfter (DeadAfter) after st's
// time, stretched by the local lag, or sooner under a standing suspicion
// susp (nil: none).
func (v *View) deadlines(st, susp *attest.Statement, lag time.Duration) (suspectAt, deadAt time.Time) {
	ttl := st.Liveness.TTLDuration()
	suspectAt = st.Time.Add(ttl + v.cfg.SuspectAfter + lag)
	deadAt = st.Time.Add(ttl + v.cfg.DeadAfter + lag)
	if susp != nil && susp.Seq >= st.Seq {
		suspectAt = minTime(suspectAt, susp.Time)
		d := susp.Time.Add(v.cfg.suspicionTimeout() + lag)
		if floor := st.Time.Add(v.cfg.DeadAfter + lag); d.Before(floor) {
			d = floor
		}
		deadAt = minTime(deadAt, d)
	}
	return suspectAt, deadAt
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func (v *View) mirrorLocked(st *attest.Statement, now time.Time) (Mirror, bool) {
	s, gone := v.stateLocked(st, now)
	if gone {
		return Mirror{}, false
	}
	return Mirror{Peer: st.Signer, State: s, LastSeen: st.Time, Seq: st.Seq, Liveness: st.Liveness, Raw: st.Raw,
		Bundles: bundlesOf(st.Liveness, v.heldFor(st.Signer))}, true
}

// Mirror returns one mirror's state at now; false if it is unknown or
// forgotten.
func (v *View) Mirror(id peer.ID, now time.Time) (Mirror, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	st, ok := v.entries[id]
	if !ok {
		return Mirror{}, false
	}
	return v.mirrorLocked(st, now)
}

// Mirrors returns every mirror not forgotten at now, sorted by peer ID. The
// slice is the caller's.
func (v *View) Mirrors(now time.Time) []Mirror {
	return v.filter(now, func(Mirror) bool { return true })
}

// Holders returns the alive mirrors that hold root (see [Mirror.Bundles]),
// sorted by peer ID. The slice is the caller's.
func (v *View) Holders(root string, now time.Time) []Mirror {
	return v.filter(now, func(m Mirror) bool {
		if m.State != StateAlive {
			return false
		}
		_, found := slices.BinarySearch(m.Bundles, root)
		return found
	})
}

func (v *View) filter(now time.Time, keep func(Mirror) bool) []Mirror {
	sn := v.snapshot()
	out := make([]Mirror, 0, len(sn.items))
	for _, it := range sn.items {
		if m, ok := v.mirrorOf(it, sn.lag, now); ok && keep(m) {
			out = append(out, m)
		}
	}
	return out
}

func cmpPeer(a, b peer.ID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Counts returns how many mirrors are in each state at now. Every state of
// [States] is present, with 0 where none is.
func (v *View) Counts(now time.Time) map[State]int {
	out := make(map[State]int, 4)
	for _, s := range States() {
		out[s] = 0
	}
	sn := v.snapshot()
	for _, it := range sn.items {
		if s, gone := v.stateOf(it.st, it.susp, sn.lag, now); !gone {
			out[s]++
		}
	}
	return out
}

// Statements returns the latest signed statement of every mirror the view
// holds (dead and left ones included: they tell a late joiner who is gone),
// ordered by peer ID, then the standing suspicions in the same order, for a sync response. Forgotten mirrors are omitted once
// [View.Prune] or [View.Apply] has run after they were forgotten. The outer
// slice is the caller's; the byte slices are shared and must not be
// modified.
func (v *View) Statements() [][]byte {
	sn := v.snapshot()
	out := make([][]byte, len(sn.items), len(sn.items)+sn.suspicions)
	for i, it := range sn.items {
		out[i] = it.st.Raw
	}
	for _, it := range sn.items {
		if it.susp != nil {
			out = append(out, it.susp.Raw)
		}
	}
	return out
}

// Held returns the latest liveness statement of every mirror the view
// holds (forgotten ones included until Prune), in no particular order:
// the verified statements themselves, for a consumer that keeps them
// (evidence) without verifying and decoding them again. The slice is the
// caller's; the statements are shared and must not be modified.
func (v *View) Held() []*attest.Statement {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]*attest.Statement, 0, len(v.entries))
	for _, st := range v.entries {
		out = append(out, st)
	}
	return out
}

// Prune drops the mirrors forgotten at now and returns how many it dropped.
// Queries already omit them; Prune frees their memory. Call it now and then
// (every heartbeat is fine).
func (v *View) Prune(now time.Time) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := 0
	for id, st := range v.entries {
		if _, gone := v.stateLocked(st, now); gone {
			v.removeLocked(id)
			n++
		}
	}
	if n > 0 {
		v.fullUntil = time.Time{}
	}
	return n
}

// SetLocalLag tells the view how late this node's own timers have been
// firing recently (for example the largest lateness of the heartbeat ticker
// over the last few ticks). While lag is positive, SuspectAfter and DeadAfter
// are stretched by lag, so a starved observer does not declare healthy peers
// dead because it processed their statements late. Negative lag counts as 0;
// set 0 again once the node keeps time.
func (v *View) SetLocalLag(lag time.Duration) {
	v.mu.Lock()
	if l := max(lag, 0); l != v.lag {
		v.lag = l
		// Members checks its lists against the lag itself: the lag
		// changes nearly every heartbeat, and shifts every deadline alike.
		v.contentChangedLocked()
	}
	v.mu.Unlock()
}

// LocalLag returns the lag last set with SetLocalLag.
func (v *View) LocalLag() time.Duration {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.lag
}
