package probe

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/protocol"
)

// Reasons Evidence.Add drops a statement. None of them says the statement
// is forged (attest.Verify decides that, receipts included); they say it
// is not evidence.
var (
	ErrNotProbe    = errors.New("probe: statement is not a probe result")
	ErrNotAssigned = errors.New("probe: observer holds no seat for this target in this epoch")
	ErrNotHeld     = errors.New("probe: target does not attest holding the bundle")
	ErrEpoch       = errors.New("probe: epoch or round does not match the result's time")
	ErrStale       = errors.New("probe: result is outside the evidence window")
	ErrDuplicate   = errors.New("probe: result already counted")
	ErrBadPeer     = errors.New("probe: result names an invalid peer ID")
)

// View is what Evidence needs of the health view. Implementations must be
// safe for concurrent use; neither method may block on the network.
type View interface {
	// Alive returns the mirrors alive at now, in any order. The caller
	// does not modify or keep the slice.
	Alive(now time.Time) []peer.ID
	// Holds reports whether target's latest liveness statement (as of
	// now) lists bundle as held.
	Holds(target peer.ID, bundle string, now time.Time) bool
}

// Domains places a peer in a failure domain (see internal/domain). An
// empty answer means unobserved: the peer is in [DomainUnknown], with
// every other unobserved peer.
type Domains interface {
	Domain(p peer.ID) string
}

// State is a target's verdict.
type State string

const (
	// StateUnverified: not enough independent passing evidence yet.
	StateUnverified State = "unverified"
	// StateVerified: passes, bound to the target's receipts, from a
	// majority of the committee's seated domains and at least K of them.
	StateVerified State = "verified"
	// StateDegraded: failures from a majority of the seated domains.
	StateDegraded State = "degraded"
	// StateFailing: most probes fail, from a majority of the seats.
	StateFailing State = "failing"
)

// TargetStatus is the verdict on one mirror with the numbers behind it.
type TargetStatus struct {
	Target peer.ID
	State  State
	// Seats is the size of the target's committee now (seated failure
	// domains); PassDomains and FailDomains count the seated domains
	// voting pass and fail with a healthy weight.
	Seats, PassDomains, FailDomains int
	// Samples is the weighted number of counted recent results; FailRate
	// their weighted failure fraction.
	Samples, FailRate float64
	// PassRate24h is the weighted pass fraction over the last 24 hours
	// (0 when Samples24h is 0).
	PassRate24h, Samples24h float64
	// LastPass is the time of the latest passing result, or zero.
	LastPass time.Time
}

type bucket struct {
	hour        int64
	pass, total float64
}

type targetData struct {
	recent   []Result
	hours    [24]bucket
	lastPass time.Time
}

// Evidence accumulates verified probe results and derives verdicts with
// [Judge]. It is safe for concurrent use. Memory is bounded by the window:
// per target it keeps at most a window's worth of results per observer,
// plus 24 hourly counters, and per observer the time of its latest passed
// canary.
type Evidence struct {
	cfg     Config
	view    View
	domains Domains

	mu      sync.Mutex
	adds    int
	targets map[peer.ID]*targetData
	canary  map[peer.ID]time.Time
	// The latest judgement, valid for (adds, now, alive) it was made at.
	cached      *Judgement
	cachedAdds  int
	cachedNow   time.Time
	cachedAlive string
	// cachedAliveIDs is the alive slice the cache was judged on.
	cachedAliveIDs []peer.ID
}

// NewEvidence returns empty evidence. domains may be nil (every peer
// unobserved: one domain). It returns an error when cfg is invalid.
func NewEvidence(cfg Config, view View, domains Domains) (*Evidence, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Evidence{cfg: cfg, view: view, domains: domains, targets: map[peer.ID]*targetData{}, canary: map[peer.ID]time.Time{}}, nil
}

func (e *Evidence) domainOf(p peer.ID) string {
	if e.domains != nil {
		if d := e.domains.Domain(p); d != "" {
			return d
		}
	}
	return DomainUnknown
}

// Add counts a verified probe statement (from attest.Verify, which checked
// its nonce and receipts) received at now, or says why it is not evidence:
// results from observers that hold no seat of the target's committee in
// the result's epoch (neither among the Observers assigned, nor in a
// seated domain, by the alive set at now), about a bundle the target does
// not attest holding, whose epoch or round does not match their time,
// outside the window, or already counted.
func (e *Evidence) Add(st *attest.Statement, now time.Time) error {
	if st == nil || st.Kind != attest.KindProbe || st.Probe == nil {
		return ErrNotProbe
	}
	p := st.Probe
	target, err := peer.Decode(p.Target)
	if err != nil {
		return fmt.Errorf("%w: target: %v", ErrBadPeer, err)
	}
	at := time.UnixMilli(p.Time)
	if at.After(now.Add(protocol.MaxClockDisparity)) || now.Sub(at) > e.cfg.Window {
		return fmt.Errorf("%w: result time %s, now %s", ErrStale, at.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if EpochOf(at, e.cfg.EpochLength) != p.Epoch || RoundOf(at, e.cfg.EpochLength) != p.Round {
		return fmt.Errorf("%w: epoch %d round %d, time says %d and %d", ErrEpoch, p.Epoch, p.Round, EpochOf(at, e.cfg.EpochLength), RoundOf(at, e.cfg.EpochLength))
	}
	if !e.view.Holds(target, p.Bundle, now) {
		return fmt.Errorf("%w: %s does not list %s", ErrNotHeld, target, p.Bundle)
	}
	seats := NewSeating(e.view.Alive(now), e.domainOf)
	if !seats.Assigned(p.Epoch, st.Signer, target, e.cfg.Observers) &&
		!seats.DomainSeated(p.Epoch, target, e.domainOf(st.Signer), e.cfg.Observers, st.Signer) {
		return fmt.Errorf("%w: %s for %s in epoch %d", ErrNotAssigned, st.Signer, target, p.Epoch)
	}
	_, canary, _ := protocol.ChallengeNonce(p.Challenge)
	r := Result{Observer: st.Signer, Target: target, Epoch: p.Epoch, Round: p.Round, Seq: p.Seq, At: at,
		Pass: p.Outcome == protocol.OutcomePass, Canary: canary}

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.adds++; e.adds%pruneEvery == 0 {
		e.pruneAllLocked(now)
	}
	td := e.targets[target]
	if td == nil {
		td = &targetData{}
		e.targets[target] = td
	}
	e.pruneLocked(td, now)
	n := 0
	oldest := -1
	for i, old := range td.recent {
		if old.Observer == r.Observer {
			if old.Seq == r.Seq || old.Epoch == r.Epoch && old.Round == r.Round {
				return ErrDuplicate
			}
			if n++; oldest < 0 {
				oldest = i
			}
		}
	}
	// An observer gets at most a window's worth of rounds (plus slack) in
	// the verdict, however many results it signs.
	if limit := int(e.cfg.Window/e.cfg.Interval) + 2; n >= limit {
		td.recent = append(td.recent[:oldest], td.recent[oldest+1:]...)
	}
	td.recent = append(td.recent, r)
	if canary {
		// A canary says nothing about the target; passing one says the
		// observer lies.
		if r.Pass && r.At.After(e.canary[r.Observer]) {
			e.canary[r.Observer] = r.At
		}
		return nil
	}
	if r.Pass && r.At.After(td.lastPass) {
		td.lastPass = r.At
	}
	w := 1.0
	if e.cached != nil {
		if cw, ok := e.cached.Weights[r.Observer]; ok {
			w = cw
		}
	}
	if e.canary[r.Observer].After(now.Add(-canaryMemory)) {
		w = minWeight
	}
	h := at.Unix() / 3600
	b := &td.hours[h%24]
	if b.hour != h {
		*b = bucket{hour: h}
	}
	b.total += w
	if r.Pass {
		b.pass += w
	}
	return nil
}

// pruneLocked drops results older than the window.
func (e *Evidence) pruneLocked(td *targetData, now time.Time) {
	cut := now.Add(-e.cfg.Window)
	keep := td.recent[:0]
	for _, r := range td.recent {
		if !r.At.Before(cut) {
			keep = append(keep, r)
		}
	}
	clear(td.recent[len(keep):])
	td.recent = keep
}

// pruneEvery is how many Adds pass between automatic prunes.
const pruneEvery = 4096

// Prune forgets targets with no result in the last 24 hours, canaries
// older than a day, and trims every window. Add also does it every few
// thousand results, so calling Prune is optional.
func (e *Evidence) Prune(now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.pruneAllLocked(now)
}

func (e *Evidence) pruneAllLocked(now time.Time) {
	cur := now.Unix() / 3600
	for id, td := range e.targets {
		e.pruneLocked(td, now)
		live := len(td.recent) > 0
		for _, b := range td.hours {
			if b.total > 0 && cur-b.hour < 24 {
				live = true
			}
		}
		if !live {
			delete(e.targets, id)
		}
	}
	for o, at := range e.canary {
		if now.Sub(at) >= canaryMemory {
			delete(e.canary, o)
		}
	}
	e.cached = nil
}

// Results returns a copy of every result held (the window's worth per
// target), in no particular order: the evidence [Judge] works from.
func (e *Evidence) Results(now time.Time) []Result {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Result
	for _, td := range e.targets {
		e.pruneLocked(td, now)
		out = append(out, td.recent...)
	}
	return out
}

// Judge returns the verdict on every target at now ([Judge] over the held
// results, this node's alive set and domains). It is cached until a
// result is added, now changes or the alive set changes. The caller must
// not modify the returned maps.
func (e *Evidence) Judge(now time.Time) Judgement {
	alive := e.view.Alive(now)
	e.mu.Lock()
	// A view that hands back the very same slice for the same now (the
	// node caches it) has not changed: skip sorting ten thousand IDs per
	// call, which made a status page over a large view quadratic.
	if e.cached != nil && e.cachedAdds == e.adds && e.cachedNow.Equal(now) && sameSlice(alive, e.cachedAliveIDs) {
		defer e.mu.Unlock()
		return *e.cached
	}
	e.mu.Unlock()
	key := aliveKey(alive)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cached != nil && e.cachedAdds == e.adds && e.cachedNow.Equal(now) && e.cachedAlive == key {
		e.cachedAliveIDs = alive
		return *e.cached
	}
	in := Input{Config: e.cfg, Alive: alive, Domain: e.domainOf, Now: now, CanaryPass: make(map[peer.ID]time.Time, len(e.canary))}
	for o, at := range e.canary {
		in.CanaryPass[o] = at
	}
	for _, td := range e.targets {
		e.pruneLocked(td, now)
		in.Results = append(in.Results, td.recent...)
	}
	j := Judge(in)
	e.cached, e.cachedAdds, e.cachedNow, e.cachedAlive, e.cachedAliveIDs = &j, e.adds, now, key, alive
	return j
}

// sameSlice reports whether a and b are the same slice (same backing
// array and length), not merely equal.
func sameSlice(a, b []peer.ID) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

func aliveKey(alive []peer.ID) string {
	s := make([]string, len(alive))
	for i, p := range alive {
		s[i] = string(p)
	}
	slices.Sort(s)
	n := 0
	for _, x := range s {
		n += len(x) + 1
	}
	b := make([]byte, 0, n)
	for _, x := range s {
		b = append(b, x...)
		b = append(b, 0)
	}
	return string(b)
}

// Weight returns observer's current weight (1 for an observer with no
// recent results).
func (e *Evidence) Weight(observer peer.ID, now time.Time) float64 {
	if w, ok := e.Judge(now).Weights[observer]; ok {
		return w
	}
	return 1
}

// Status returns target's verdict at now (see [Judge]) with its 24-hour
// pass rate and latest pass.
func (e *Evidence) Status(target peer.ID, now time.Time) TargetStatus {
	j := e.Judge(now)
	st, ok := j.Targets[target]
	if !ok {
		st = TargetStatus{Target: target, State: StateUnverified}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	td := e.targets[target]
	if td == nil {
		return st
	}
	st.LastPass = td.lastPass
	cur := now.Unix() / 3600
	var pass24, total24 float64
	for _, b := range td.hours {
		if b.total > 0 && cur-b.hour < 24 && cur >= b.hour {
			pass24 += b.pass
			total24 += b.total
		}
	}
	st.Samples24h = total24
	if total24 > 0 {
		st.PassRate24h = pass24 / total24
	}
	return st
}
