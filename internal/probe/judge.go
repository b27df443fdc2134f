package probe

import (
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/protocol"
)

// Result is one accepted probe result as verdicts see it: who probed whom,
// in which epoch and round, when, and whether it passed (a pass was
// checked to carry the target's receipts before it got here).
type Result struct {
	Observer, Target peer.ID
	Epoch, Round     uint64
	Seq              uint64
	At               time.Time
	Pass             bool
	// Canary marks a canary challenge (a block nobody holds): it says
	// nothing about the target; a pass says the observer lies.
	Canary bool
}

// Input is everything a verdict depends on. Nothing else is read: the same
// input gives the same verdicts on any machine (a ledger can recompute
// them from gossiped evidence).
type Input struct {
	Config Config
	// Results in any order; those outside the window are ignored.
	Results []Result
	// Alive are the mirrors alive at Now.
	Alive []peer.ID
	// Domain places a peer in a failure domain ("" is DomainUnknown).
	Domain func(peer.ID) string
	// CanaryPass is, per observer, the time of its latest passed canary,
	// if any (evidence remembers them longer than the window).
	CanaryPass map[peer.ID]time.Time
	Now        time.Time
	// Committees, when set, returns target's committee in epoch over
	// Alive exactly as [Committee] draws it (a [Draw] does, faster), or
	// false to have Judge draw it. A ledger judging a day of rounds sets
	// it; the verdicts are the same either way.
	Committees func(target peer.ID, epoch uint64) ([]Seat, bool)
}

// Judgement is the verdict on every target of the input, and the weight
// each observer carried.
type Judgement struct {
	Targets map[peer.ID]TargetStatus
	// Weights are the observers' final weights in (0, 1].
	Weights map[peer.ID]float64
}

// Weights and thresholds of the verdict.
const (
	// lifeguardMinTargets: an observer is judged sick (Lifeguard) only
	// once it has probed this many distinct targets.
	lifeguardMinTargets = 3
	// minWeight is the floor of an observer's weight.
	minWeight = 0.05
	// healthyWeight is the weight at or above which a domain's vote
	// counts as one of the K (or Confirmations) witnesses.
	healthyWeight = 0.5
	// canaryMemory is how long passing a canary costs an observer its
	// weight.
	canaryMemory = 24 * time.Hour
	// contradictionMinTargets: an observer's agreement with committee
	// majorities is judged once it reported on this many decided targets.
	contradictionMinTargets = 2
)

// Judge gives the verdict on every target with results in the window. It
// is pure.
//
// Committee: a target's results count only from observers whose failure
// domain holds a seat of its committee in the result's epoch
// ([Committee], Config.Observers seats). Each seated domain casts one
// vote, whatever the number of its members: pass when it has a pass and
// its weighted failure fraction is under DegradedRate, fail otherwise
// (failing-grade at FailingRate). One lost request cannot condemn a
// mirror: a verdict needs a majority of the seats. A vote weighs the
// largest weight among the domain's observers. With S the number of seats
// in the current epoch:
//
//   - failing: failing-grade votes weigh more than S/2, and more than the
//     pass votes, from at least Confirmations healthy domains, over at
//     least MinSamples weighted results;
//   - degraded: likewise with every fail vote;
//   - verified: the target is alive, pass votes weigh more than S/2 and
//     more than the fail votes, from at least K healthy domains;
//   - unverified otherwise.
//
// Weights: an observer starts at 1 and loses weight when it fails against
// more than half of at least three targets (Lifeguard: it is more likely
// sick than they are), when it passed a canary within 24 hours (minimum
// weight), and when its own reports contradict the committee's verdict on
// targets where a verdict was reached (by the fraction contradicted).
func Judge(in Input) Judgement {
	cut := in.Now.Add(-in.Config.Window)
	late := in.Now.Add(protocol.MaxClockDisparity)
	alive := make(map[peer.ID]bool, len(in.Alive))
	for _, p := range in.Alive {
		alive[p] = true
	}
	doms := map[peer.ID]string{}
	domainOf := func(p peer.ID) string {
		d, ok := doms[p]
		if !ok {
			if in.Domain != nil {
				d = in.Domain(p)
			}
			if d == "" {
				d = DomainUnknown
			}
			doms[p] = d
		}
		return d
	}
	byTarget := map[peer.ID][]Result{}
	// own[observer][target] = pass and fail counts of the observer.
	own := map[peer.ID]map[peer.ID]*[2]int{}
	for _, r := range in.Results {
		if r.At.Before(cut) || r.At.After(late) || r.Canary {
			continue
		}
		byTarget[r.Target] = append(byTarget[r.Target], r)
		m := own[r.Observer]
		if m == nil {
			m = map[peer.ID]*[2]int{}
			own[r.Observer] = m
		}
		c := m[r.Target]
		if c == nil {
			c = &[2]int{}
			m[r.Target] = c
		}
		if r.Pass {
			c[0]++
		} else {
			c[1]++
		}
	}

	// Base weights: Lifeguard and canaries.
	weights := map[peer.ID]float64{}
	for o, ts := range own {
		w := 1.0
		if len(ts) >= lifeguardMinTargets {
			failing := 0
			for _, c := range ts {
				if c[1] > c[0] {
					failing++
				}
			}
			if frac := float64(failing) / float64(len(ts)); frac > 0.5 {
				w = max(minWeight, 1-(frac-0.5)*2)
			}
		}
		weights[o] = w
	}
	for o, at := range in.CanaryPass {
		if in.Now.Sub(at) < canaryMemory {
			weights[o] = minWeight
		}
	}

	// Committee questions: one Seating for the alive set; whether a
	// domain is seated is asked once per (target, epoch, domain).
	seating := NewSeating(in.Alive, domainOf)
	type ted struct {
		t peer.ID
		e uint64
		d string
	}
	seatedMemo := map[ted]bool{}
	type te struct {
		t peer.ID
		e uint64
	}
	type answer struct {
		seats []Seat
		ok    bool
	}
	drawn := map[te]answer{}
	// Observers that vouch for a target are alive as far as the committee
	// is concerned, even when this view lags theirs.
	seated := func(t peer.ID, e uint64, d string, observers []peer.ID) bool {
		k := ted{t, e, d}
		s, ok := seatedMemo[k]
		if !ok && len(observers) == 0 && in.Committees != nil {
			a, asked := drawn[te{t, e}]
			if !asked {
				a.seats, a.ok = in.Committees(t, e)
				drawn[te{t, e}] = a
			}
			if a.ok {
				s, ok = Seated(a.seats, d), true
				seatedMemo[k] = s
			}
		}
		if !ok {
			s = seating.DomainSeated(e, t, d, in.Config.Observers, observers...)
			seatedMemo[k] = s
		}
		return s
	}
	observersOf := func(rs []Result) []peer.ID {
		var out []peer.ID
		seen := map[peer.ID]bool{}
		for _, r := range rs {
			if !seen[r.Observer] && !alive[r.Observer] {
				seen[r.Observer] = true
				out = append(out, r.Observer)
			}
		}
		return out
	}

	decide := func(t peer.ID, rs []Result, w map[peer.ID]float64) TargetStatus {
		st := TargetStatus{Target: t, State: StateUnverified}
		obs := observersOf(rs)
		st.Seats = seating.Seats(t, in.Config.Observers, obs...)
		type vote struct {
			n         int
			sum, fail float64
			pass      bool
			strength  float64
		}
		votes := map[string]*vote{}
		var order []string
		for _, r := range rs {
			d := domainOf(r.Observer)
			if !seated(t, r.Epoch, d, obs) {
				continue
			}
			v := votes[d]
			if v == nil {
				v = &vote{}
				votes[d] = v
				order = append(order, d)
			}
			ow := w[r.Observer]
			v.sum += ow
			st.Samples += ow
			if r.Pass {
				v.pass = true
			} else {
				v.fail += ow
			}
			v.strength = max(v.strength, ow)
		}
		var passW, failW, failingW, failed float64
		for _, d := range order {
			v := votes[d]
			failed += v.fail
			if v.sum <= 0 {
				continue
			}
			ff := v.fail / v.sum
			switch {
			case v.pass && ff < in.Config.DegradedRate:
				passW += v.strength
				if v.strength >= healthyWeight {
					st.PassDomains++
				}
			case ff >= in.Config.DegradedRate:
				failW += v.strength
				if ff >= in.Config.FailingRate {
					failingW += v.strength
				}
				if v.strength >= healthyWeight {
					st.FailDomains++
				}
			}
		}
		if st.Samples > 0 {
			st.FailRate = failed / st.Samples
		}
		half := float64(st.Seats) / 2
		confirmed := st.FailDomains >= in.Config.Confirmations && st.Samples >= in.Config.MinSamples && failW > passW
		switch {
		case confirmed && failingW > half:
			st.State = StateFailing
		case confirmed && failW > half:
			st.State = StateDegraded
		case alive[t] && st.PassDomains >= in.Config.K && passW > half && passW > failW:
			st.State = StateVerified
		}
		return st
	}
	run := func(w map[peer.ID]float64) map[peer.ID]TargetStatus {
		out := make(map[peer.ID]TargetStatus, len(byTarget))
		for t, rs := range byTarget {
			out[t] = decide(t, rs, w)
		}
		return out
	}

	first := run(weights)
	// Contradiction: an observer whose own majority on decided targets
	// disagrees with the committee's loses that fraction of its weight.
	final := make(map[peer.ID]float64, len(weights))
	for o, w := range weights {
		judged, contra := 0, 0
		for t, c := range own[o] {
			var maj bool
			switch first[t].State {
			case StateVerified:
				maj = true
			case StateDegraded, StateFailing:
				maj = false
			default:
				continue
			}
			judged++
			if (c[0] >= c[1]) != maj {
				contra++
			}
		}
		if judged >= contradictionMinTargets && contra > 0 {
			w = max(minWeight, w*(1-float64(contra)/float64(judged)))
		}
		final[o] = w
	}
	return Judgement{Targets: run(final), Weights: final}
}
