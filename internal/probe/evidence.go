package probe

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/protocol"
)

// Reasons Evidence.Add drops a statement. None of them says the statement
// is forged (attest.Verify decides that); they say it is not evidence.
var (
	ErrNotProbe    = errors.New("probe: statement is not a probe result")
	ErrNotAssigned = errors.New("probe: observer is not assigned to this target in this epoch")
	ErrNotHeld     = errors.New("probe: target does not attest holding the bundle")
	ErrEpoch       = errors.New("probe: epoch does not match the result's time")
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
// empty answer means unknown: the peer is then its own domain.
type Domains interface {
	Domain(p peer.ID) string
}

// State is a target's verdict.
type State string

const (
	// StateUnverified: not enough independent passing evidence yet.
	StateUnverified State = "unverified"
	// StateVerified: recent passes from at least K observers in distinct
	// failure domains, and no confirmed failure trend.
	StateVerified State = "verified"
	// StateDegraded: a significant share of recent probes fail,
	// confirmed by observers in distinct domains.
	StateDegraded State = "degraded"
	// StateFailing: most recent probes fail, confirmed likewise.
	StateFailing State = "failing"
)

// TargetStatus is the verdict on one mirror with the numbers behind it.
type TargetStatus struct {
	Target peer.ID
	State  State
	// PassDomains and FailDomains count distinct observer domains with a
	// recent pass, and with a recent failure from a healthy observer.
	PassDomains, FailDomains int
	// Samples is the weighted number of recent results; FailRate their
	// weighted failure fraction (see Status).
	Samples, FailRate float64
	// PassRate24h is the weighted pass fraction over the last 24 hours
	// (0 when Samples24h is 0).
	PassRate24h, Samples24h float64
	// LastPass is the time of the latest passing result, or zero.
	LastPass time.Time
}

type result struct {
	observer peer.ID
	seq      uint64
	at       time.Time
	pass     bool
}

type bucket struct {
	hour        int64
	pass, total float64
}

type targetData struct {
	recent   []result
	hours    [24]bucket
	lastPass time.Time
}

// Evidence accumulates verified probe results and derives verdicts. It is
// safe for concurrent use. Memory is bounded by the window: per target it
// keeps at most a window's worth of results per observer, plus 24 hourly
// counters.
type Evidence struct {
	cfg     Config
	view    View
	domains Domains

	mu      sync.Mutex
	adds    int
	targets map[peer.ID]*targetData
	// probed indexes, per observer, the targets it probed and when last,
	// for Lifeguard.
	probed map[peer.ID]map[peer.ID]time.Time
}

// NewEvidence returns empty evidence. domains may be nil (every peer its
// own domain). It returns an error when cfg is invalid.
func NewEvidence(cfg Config, view View, domains Domains) (*Evidence, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Evidence{cfg: cfg, view: view, domains: domains, targets: map[peer.ID]*targetData{}, probed: map[peer.ID]map[peer.ID]time.Time{}}, nil
}

// Add counts a verified probe statement (from attest.Verify) received at
// now, or says why it is not evidence: results from observers not assigned
// to the target in the result's epoch (by the alive set at now), about a
// bundle the target does not attest holding, whose epoch does not match
// their time, outside the window, or already counted.
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
	if EpochOf(at, e.cfg.EpochLength) != p.Epoch {
		return fmt.Errorf("%w: epoch %d, time says %d", ErrEpoch, p.Epoch, EpochOf(at, e.cfg.EpochLength))
	}
	if !e.view.Holds(target, p.Bundle, now) {
		return fmt.Errorf("%w: %s does not list %s", ErrNotHeld, target, p.Bundle)
	}
	if !Assigned(p.Epoch, st.Signer, target, e.view.Alive(now), e.cfg.Observers) {
		return fmt.Errorf("%w: %s for %s in epoch %d", ErrNotAssigned, st.Signer, target, p.Epoch)
	}
	r := result{observer: st.Signer, seq: p.Seq, at: at, pass: p.Outcome == protocol.OutcomePass}

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
		if old.observer == r.observer {
			if old.seq == r.seq {
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
	pt := e.probed[r.observer]
	if pt == nil {
		pt = map[peer.ID]time.Time{}
		e.probed[r.observer] = pt
	}
	if r.at.After(pt[target]) {
		pt[target] = r.at
	}
	if r.pass && r.at.After(td.lastPass) {
		td.lastPass = r.at
	}
	w := e.weightLocked(r.observer, now)
	h := at.Unix() / 3600
	b := &td.hours[h%24]
	if b.hour != h {
		*b = bucket{hour: h}
	}
	b.total += w
	if r.pass {
		b.pass += w
	}
	return nil
}

// pruneLocked drops results older than the window.
func (e *Evidence) pruneLocked(td *targetData, now time.Time) {
	cut := now.Add(-e.cfg.Window)
	keep := td.recent[:0]
	for _, r := range td.recent {
		if !r.at.Before(cut) {
			keep = append(keep, r)
		}
	}
	clear(td.recent[len(keep):])
	td.recent = keep
}

// pruneEvery is how many Adds pass between automatic prunes.
const pruneEvery = 4096

// Prune forgets targets with no result in the last 24 hours and trims
// every window. Add also does it every few thousand results, so calling
// Prune is optional.
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
	cut := now.Add(-e.cfg.Window)
	for obs, pt := range e.probed {
		for t, last := range pt {
			if last.Before(cut) {
				delete(pt, t)
			}
		}
		if len(pt) == 0 {
			delete(e.probed, obs)
		}
	}
}

// Lifeguard: an observer that fails against (nearly) every target it
// probes is more likely sick (starved, partitioned) than its targets. Its
// weight falls linearly from 1, when at most half of its recent targets
// fail, to minWeight when all do. It is judged only once it has probed
// lifeguardMinTargets distinct targets.
const (
	lifeguardMinTargets = 3
	minWeight           = 0.05
	// healthyWeight is the weight at or above which an observer's
	// failures count as a confirmation.
	healthyWeight = 0.5
)

// weightLocked computes observer's Lifeguard weight from its recent results.
func (e *Evidence) weightLocked(observer peer.ID, now time.Time) float64 {
	cut := now.Add(-e.cfg.Window)
	targets, failing := 0, 0
	for t, last := range e.probed[observer] {
		td := e.targets[t]
		if td == nil || last.Before(cut) {
			continue
		}
		pass, fail := 0, 0
		for _, r := range td.recent {
			if r.observer != observer || r.at.Before(cut) {
				continue
			}
			if r.pass {
				pass++
			} else {
				fail++
			}
		}
		if pass+fail == 0 {
			continue
		}
		targets++
		if fail > pass {
			failing++
		}
	}
	if targets < lifeguardMinTargets {
		return 1
	}
	frac := float64(failing) / float64(targets)
	if frac <= 0.5 {
		return 1
	}
	return max(minWeight, 1-(frac-0.5)*2)
}

func (e *Evidence) domainOf(p peer.ID) string {
	if e.domains != nil {
		if d := e.domains.Domain(p); d != "" {
			return d
		}
	}
	return "peer:" + p.String()
}

// wilsonLower is the lower bound of the Wilson score interval for a
// proportion phat over n samples, at z standard deviations.
func wilsonLower(phat, n, z float64) float64 {
	if n <= 0 {
		return 0
	}
	z2 := z * z
	centre := phat + z2/(2*n)
	spread := z * math.Sqrt(phat*(1-phat)/n+z2/(4*n*n))
	return (centre - spread) / (1 + z2/n)
}

// A failure verdict must be significant: the Wilson lower bound of the
// failure fraction, at three standard deviations, must exceed the loss an
// honest mirror may show (toleratedLoss) for degraded, and failingBound for
// failing. This keeps honest mirrors with a few percent of lost requests
// out of "degraded" through tens of thousands of mirror-rounds.
const (
	significance  = 3
	toleratedLoss = 0.2
	failingBound  = 0.4
)

// Status returns target's verdict at now from results in the window:
//
//   - failing: the weighted failure fraction (each result weighs its
//     observer's Lifeguard weight divided by the number of observers in its
//     domain) is at least FailingRate, its 3-sigma Wilson lower bound at least
//     0.4, over at least MinSamples, with failures from healthy observers in
//     at least Confirmations domains;
//   - degraded: likewise with DegradedRate and a lower bound of 0.2 (the
//     loss an honest mirror may show);
//   - verified: otherwise, when passes come from at least K domains and
//     the target is alive in the view (a mirror that stopped is not
//     verified, however recent its last pass);
//   - unverified: otherwise.
func (e *Evidence) Status(target peer.ID, now time.Time) TargetStatus {
	alive := slices.Contains(e.view.Alive(now), target)
	e.mu.Lock()
	defer e.mu.Unlock()
	st := TargetStatus{Target: target, State: StateUnverified}
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

	cut := now.Add(-e.cfg.Window)
	var recent []result
	weights := map[peer.ID]float64{}
	domainOf := map[peer.ID]string{}
	observersIn := map[string]int{}
	for _, r := range td.recent {
		if r.at.Before(cut) || r.at.After(now.Add(protocol.MaxClockDisparity)) {
			continue
		}
		recent = append(recent, r)
		if _, ok := weights[r.observer]; !ok {
			weights[r.observer] = e.weightLocked(r.observer, now)
			d := e.domainOf(r.observer)
			domainOf[r.observer] = d
			observersIn[d]++
		}
	}
	// A result weighs its observer's Lifeguard weight, shared among the
	// observers of its domain: a domain speaks with one observer's voice.
	passDomains, failDomains := map[string]bool{}, map[string]bool{}
	var failed float64
	for _, r := range recent {
		d := domainOf[r.observer]
		w := weights[r.observer] / float64(observersIn[d])
		st.Samples += w
		if r.pass {
			passDomains[d] = true
			continue
		}
		failed += w
		if weights[r.observer] >= healthyWeight {
			failDomains[d] = true
		}
	}
	st.PassDomains, st.FailDomains = len(passDomains), len(failDomains)
	if st.Samples > 0 {
		st.FailRate = failed / st.Samples
	}
	confirmed := st.Samples >= e.cfg.MinSamples && st.FailDomains >= e.cfg.Confirmations
	lower := wilsonLower(st.FailRate, st.Samples, significance)
	switch {
	case confirmed && st.FailRate >= e.cfg.FailingRate && lower >= failingBound:
		st.State = StateFailing
	case confirmed && st.FailRate >= e.cfg.DegradedRate && lower >= toleratedLoss:
		st.State = StateDegraded
	case st.PassDomains >= e.cfg.K && alive:
		st.State = StateVerified
	}
	return st
}
