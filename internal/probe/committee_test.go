package probe

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/protocol"
)

// TestCommitteeDeterministic: the committee is a function of public values
// and the domains: any order of the alive set, any receiver, same seats;
// one seat per domain; a farm of thirty in one domain holds one seat; the
// seats rotate with the epoch.
func TestCommitteeDeterministic(t *testing.T) {
	ms := mirrors(t, 60, 21)
	alive := ids(ms)
	target := alive[0]
	dm := domainMap{}
	for i, m := range ms {
		switch {
		case i >= 1 && i <= 30:
			dm[m.id] = "net:203.0.113.0/24" // the farm
		case i > 50:
			// unobserved: "" is unknown
		default:
			dm[m.id] = fmt.Sprintf("net:10.0.%d.0/24", i)
		}
	}
	changed := 0
	for epoch := uint64(0); epoch < 30; epoch++ {
		seats := Committee(epoch, target, alive, dm.Domain, 6)
		if len(seats) != 6 {
			t.Fatalf("epoch %d: %d seats", epoch, len(seats))
		}
		shuffled := slices.Clone(alive)
		rand.New(rand.NewPCG(epoch, 9)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if again := Committee(epoch, target, shuffled, dm.Domain, 6); !slices.Equal(seats, again) {
			t.Fatalf("epoch %d: order of alive changes the committee", epoch)
		}
		seen := map[string]bool{}
		for _, s := range seats {
			if seen[s.Domain] {
				t.Fatalf("epoch %d: domain %s seated twice", epoch, s.Domain)
			}
			seen[s.Domain] = true
			if s.Holder == target {
				t.Fatal("target on its own committee")
			}
			d := dm.Domain(s.Holder)
			if d == "" {
				d = DomainUnknown
			}
			if d != s.Domain {
				t.Fatalf("holder %s is in %s, not %s", s.Holder, d, s.Domain)
			}
			// The holder is its domain's best scorer: no member of its
			// domain scores lower.
			for _, p := range alive {
				if p != s.Holder && p != target && dm.Domain(p) == dm.Domain(s.Holder) &&
					less(scored{p, score(epoch, target, p)}, scored{s.Holder, score(epoch, target, s.Holder)}) < 0 {
					t.Fatalf("seat of %s held by a member that is not the best scorer", s.Domain)
				}
			}
		}
		if epoch > 0 && !slices.Equal(seats, Committee(epoch-1, target, alive, dm.Domain, 6)) {
			changed++
		}
	}
	if changed < 20 {
		t.Errorf("committee changed in only %d of 29 epochs", changed)
	}
	// Thirty farm identities and ten unobserved ones: two seats at most,
	// although they are two thirds of the network.
	farmSeats := 0
	for epoch := uint64(0); epoch < 30; epoch++ {
		for _, s := range Committee(epoch, target, alive, dm.Domain, 6) {
			if s.Domain == "net:203.0.113.0/24" || s.Domain == DomainUnknown {
				farmSeats++
			}
		}
	}
	if farmSeats > 2*30 {
		t.Errorf("farm and unknown held %d seats over 30 epochs", farmSeats)
	}
	// Every assigned observer is in a seated domain.
	for epoch := uint64(0); epoch < 10; epoch++ {
		seats := Committee(epoch, target, alive, dm.Domain, 6)
		for _, o := range Observers(epoch, target, alive, 6) {
			d := dm.Domain(o)
			if d == "" {
				d = DomainUnknown
			}
			if !Seated(seats, d) {
				t.Fatalf("epoch %d: assigned observer %s in unseated domain %s", epoch, o, d)
			}
		}
	}
}

// TestCanaryCostsWeight: an observer that passes a canary (a block nobody
// holds; only a colluding target could sign for it) drops to the minimum
// weight for a day, and its passes stop counting as a witness.
func TestCanaryCostsWeight(t *testing.T) {
	cfg := DefaultConfig()
	ms := mirrors(t, 12, 22)
	view := &fakeView{alive: ids(ms)}
	ev := newEvidence(t, cfg, view, distinct(ms))
	liar := ms[1]
	// Find a target and a time at which the liar's challenge is a canary.
	now := t0
	var target peer.ID
search:
	for i := 0; i < 500; i++ {
		for _, m := range ms {
			if m == liar {
				continue
			}
			if _, _, n := Nonce(now, cfg.EpochLength, m.id, liar.id); protocol.IsCanary(n) && Assigned(EpochOf(now, cfg.EpochLength), liar.id, m.id, view.alive, cfg.Observers) {
				target = m.id
				break search
			}
		}
		now = now.Add(cfg.EpochLength / protocol.ProbeRoundsPerEpoch)
	}
	if target == "" {
		t.Fatal("no canary found")
	}
	if w := ev.Weight(liar.id, now); w != 1 {
		t.Fatalf("weight before: %v", w)
	}
	if err := ev.Add(liar.report(t, cfg, target, now, protocol.OutcomePass), now); err != nil {
		t.Fatal(err)
	}
	if w := ev.Weight(liar.id, now); w != minWeight {
		t.Errorf("weight after passing a canary: %v, want %v", w, minWeight)
	}
	if w := ev.Weight(liar.id, now.Add(23*time.Hour)); w != minWeight {
		t.Errorf("weight 23 hours later: %v", w)
	}
	// The canary said nothing about the target.
	if st := ev.Status(target, now); st.Samples != 0 || !st.LastPass.IsZero() {
		t.Errorf("a canary counted for the target: %+v", st)
	}
}

// TestHonestCanaryFailureIsFree: failing a canary is what honest observers
// do; it neither costs weight nor counts against the target.
func TestHonestCanaryFailureIsFree(t *testing.T) {
	cfg := DefaultConfig()
	ms := mirrors(t, 12, 23)
	view := &fakeView{alive: ids(ms)}
	ev := newEvidence(t, cfg, view, distinct(ms))
	now := t0
	added := 0
	for i := 0; i < 400 && added == 0; i++ {
		for _, o := range ms[1:] {
			if _, _, n := Nonce(now, cfg.EpochLength, ms[0].id, o.id); protocol.IsCanary(n) {
				if err := ev.Add(o.result(t, cfg, ms[0].id, now, protocol.OutcomePass), now); err == nil {
					added++
					if w := ev.Weight(o.id, now); w != 1 {
						t.Errorf("honest canary failure cost weight %v", w)
					}
				}
			}
		}
		now = now.Add(cfg.EpochLength / protocol.ProbeRoundsPerEpoch)
	}
	if added == 0 {
		t.Fatal("no canary result added")
	}
	if st := ev.Status(ms[0].id, now); st.Samples != 0 || st.FailDomains != 0 {
		t.Errorf("canary failures counted against the target: %+v", st)
	}
}

// TestContradictionCostsWeight: an observer that fails targets a majority
// of their committees pass loses weight in proportion, even when it fails
// too few of its targets for Lifeguard to call it sick.
func TestContradictionCostsWeight(t *testing.T) {
	cfg := DefaultConfig()
	ms := mirrors(t, 14, 24)
	view := &fakeView{alive: ids(ms)}
	ev := newEvidence(t, cfg, view, distinct(ms))
	liar := ms[13]
	now := t0
	for range 4 {
		for _, o := range ms {
			for _, tg := range Targets(EpochOf(now, cfg.EpochLength), o.id, view.alive, cfg.Observers) {
				outcome := protocol.OutcomePass
				if o == liar && slices.Contains(ids(ms[:4]), tg) {
					outcome = protocol.OutcomeFail
				}
				if err := ev.Add(o.result(t, cfg, tg, now, outcome), now); err != nil {
					t.Fatal(err)
				}
			}
		}
		now = now.Add(cfg.Interval)
	}
	now = now.Add(-cfg.Interval)
	contra, judged := 0, 0
	for _, r := range ev.Results(now) {
		if r.Observer == liar.id && !r.Canary {
			judged++
			if !r.Pass {
				contra++
			}
		}
	}
	if contra == 0 || 2*contra > judged {
		t.Fatalf("setup: the liar failed %d of %d results (want some, at most half: Lifeguard must not be the reason)", contra, judged)
	}
	if w := ev.Weight(liar.id, now); w >= 1 || w < minWeight {
		t.Errorf("an observer contradicting some committees keeps weight %.2f", w)
	}
	for _, m := range ms[:13] {
		if w := ev.Weight(m.id, now); w != 1 {
			t.Errorf("honest observer %s has weight %.2f", m.id, w)
		}
		if st := ev.Status(m.id, now); st.State != StateVerified {
			t.Errorf("honest mirror %s: %+v", m.id, st)
		}
	}
}
