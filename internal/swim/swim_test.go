package swim_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/internal/swim"
)

func ids(n int) []peer.ID {
	out := make([]peer.ID, n)
	for i := range out {
		out[i] = peer.ID(fmt.Sprintf("peer-%03d", i))
	}
	return out
}

// In every slot each member is probed by exactly one of its k probers
// (the neighbourhoods agree), in large networks and in small ones where
// everyone probes everyone; a member that leaves is no longer scheduled.
func TestScheduledProbersTakeTurns(t *testing.T) {
	for _, n := range []int{200, 5, 2} {
		members := ids(n)
		const k = 8
		nbs := map[peer.ID][]peer.ID{}
		for _, m := range members {
			nbs[m] = swim.Neighbourhood(m, members, k)
		}
		for slot := int64(-3); slot < 40; slot++ {
			probed := map[peer.ID]int{}
			for _, m := range members {
				p, ok := swim.Scheduled(nbs[m], slot)
				if !ok {
					t.Fatalf("N=%d: %s has no target in slot %d", n, m, slot)
				}
				probed[p]++
			}
			for _, m := range members {
				if probed[m] != 1 {
					t.Fatalf("N=%d slot %d: %s probed %d times, want once", n, slot, m, probed[m])
				}
			}
		}
	}
	if _, ok := swim.Scheduled(nil, 7); ok {
		t.Fatal("a target among no members")
	}
	period := time.Second
	at := time.Unix(1_000_000, 0)
	if s := swim.Slot(at, period); s != 1_000_000 || swim.Slot(at.Add(-time.Nanosecond), period) != s-1 {
		t.Fatalf("Slot(%v) = %d", at, s)
	}
}

// fakeNet answers probes in virtual time: a peer in down never answers; a
// pair in cut cannot reach each other (a lossy link); every answer takes
// rtt.
type fakeNet struct {
	self peer.ID
	rtt  time.Duration

	mu      sync.Mutex
	down    map[peer.ID]bool
	cut     map[[2]peer.ID]bool
	pings   int
	vias    int
	targets []peer.ID // of Ping, in order
}

func (f *fakeNet) reach(a, b peer.ID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.down[b] && !f.cut[[2]peer.ID{a, b}] && !f.cut[[2]peer.ID{b, a}]
}

func (f *fakeNet) wait(ctx context.Context, ok bool) error {
	if !ok {
		<-ctx.Done()
		return ctx.Err()
	}
	select {
	case <-time.After(f.rtt):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *fakeNet) Ping(ctx context.Context, target peer.ID) error {
	f.mu.Lock()
	f.pings++
	f.targets = append(f.targets, target)
	f.mu.Unlock()
	return f.wait(ctx, f.reach(f.self, target))
}

func (f *fakeNet) PingVia(ctx context.Context, via, target peer.ID) error {
	f.mu.Lock()
	f.vias++
	f.mu.Unlock()
	if !f.reach(f.self, via) {
		return f.wait(ctx, false)
	}
	if !f.reach(via, target) {
		return errors.New("target did not answer the helper")
	}
	return f.wait(ctx, true)
}

type recorder struct {
	mu        sync.Mutex
	suspected []peer.ID
	outcomes  map[swim.Outcome]int
}

func (r *recorder) suspect(p peer.ID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.suspected = append(r.suspected, p)
}

func (r *recorder) observe(_ peer.ID, o swim.Outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.outcomes == nil {
		r.outcomes = map[swim.Outcome]int{}
	}
	r.outcomes[o]++
}

// A crashed member is suspected within one round of probes; a member
// that only this prober cannot reach (a lossy link) answers the indirect
// probes and is never suspected; nobody else is.
func TestDetectorSuspectsOnlyTheSilent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		self, members := peer.ID("self"), ids(8)
		crashed, lossy := members[3], members[5]
		net := &fakeNet{self: self, rtt: 10 * time.Millisecond,
			down: map[peer.ID]bool{crashed: true},
			cut:  map[[2]peer.ID]bool{{self, lossy}: true}}
		rec := &recorder{}
		cfg := swim.ForPeriod(time.Second)
		d := swim.New(cfg, net, swim.Members{Live: func() []peer.ID { return members }}, rec.suspect,
			swim.WithSeed(7), swim.WithObserver(rec.observe))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); d.Run(ctx) }()
		// Two rounds, the last probe included.
		time.Sleep(2*time.Duration(len(members))*cfg.Period + cfg.Period/2)
		cancel()
		<-done
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if len(rec.suspected) != 2 || rec.suspected[0] != crashed || rec.suspected[1] != crashed {
			t.Fatalf("suspected %v, want %s once per round", rec.suspected, crashed)
		}
		if rec.outcomes[swim.AckedIndirect] != 2 {
			t.Errorf("outcomes %v: want the lossy member acked indirectly once per round", rec.outcomes)
		}
		if rec.outcomes[swim.Acked] != 2*(len(members)-2) {
			t.Errorf("outcomes %v", rec.outcomes)
		}
	})
}

// With no other member to ask, a silent target is suspected after the
// direct probes alone; a live one never.
func TestDetectorAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		target := peer.ID("target")
		net := &fakeNet{self: "self", rtt: time.Millisecond, down: map[peer.ID]bool{}}
		rec := &recorder{}
		d := swim.New(swim.ForPeriod(time.Second), net, swim.Members{Live: func() []peer.ID { return []peer.ID{target} }}, rec.suspect, swim.WithSeed(1))
		if out := d.Probe(t.Context(), target, nil); out != swim.Acked || len(rec.suspected) != 0 {
			t.Fatalf("live target: %s, suspected %v", out, rec.suspected)
		}
		net.down[target] = true
		start := time.Now()
		if out := d.Probe(t.Context(), target, nil); out != swim.Suspected || len(rec.suspected) != 1 {
			t.Fatalf("silent target: %s, suspected %v", out, rec.suspected)
		}
		cfg := swim.ForPeriod(time.Second)
		if took := time.Since(start); took != cfg.Timeout+cfg.IndirectTimeout {
			t.Errorf("a failed probe took %s, want Timeout+IndirectTimeout", took)
		}
	})
}

// Mirrors that agree on who is dead take turns reviving them: in a round
// every dead mirror is pinged once, by one mirror each, and in the next
// round by another one. (Each picking at random, the seeds below leave
// some unpinged.)
func TestRevivalsTakeTurns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 6
		var dead []peer.ID
		down := map[peer.ID]bool{}
		for i := range n {
			p := peer.ID(fmt.Sprintf("dead-%d", i))
			dead, down[p] = append(dead, p), true
		}
		cfg := swim.ForPeriod(time.Second)
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		nets := make([]*fakeNet, n)
		for rank := range n {
			nets[rank] = &fakeNet{self: peer.ID(fmt.Sprintf("live-%d", rank)), rtt: time.Millisecond, down: down}
			d := swim.New(cfg, nets[rank], swim.Members{
				Live: func() []peer.ID { return nil },
				Dead: func() []peer.ID { return dead },
				Rank: func() (int, int) { return rank, n },
			}, (&recorder{}).suspect, swim.WithSeed(uint64(rank+1)))
			wg.Go(func() { d.Run(ctx) })
		}
		time.Sleep(2*time.Duration(cfg.ReviveEvery)*cfg.Period + time.Millisecond) // two revival rounds
		cancel()
		wg.Wait()
		for round := range 2 {
			got := map[peer.ID]int{}
			for rank, nt := range nets {
				if len(nt.targets) != 2 {
					t.Fatalf("mirror %d pinged %v, want one dead mirror per round", rank, nt.targets)
				}
				got[nt.targets[round]]++
				if round == 1 && nt.targets[1] == nt.targets[0] {
					t.Errorf("mirror %d pinged %s in both rounds", rank, nt.targets[0])
				}
			}
			if len(got) != n {
				t.Errorf("round %d pinged %d of %d dead mirrors: %v", round, len(got), n, got)
			}
		}
	})
}

// ReviveTarget spreads any number of live mirrors over any number of dead
// ones: each round pings min(live, dead) distinct dead mirrors, and over
// enough rounds every dead mirror is pinged.
func TestReviveTarget(t *testing.T) {
	ids := func(n int) []peer.ID {
		out := make([]peer.ID, n)
		for i := range out {
			out[i] = peer.ID(fmt.Sprintf("p%05d", i))
		}
		return out
	}
	for _, tc := range []struct{ live, dead, rounds int }{{150, 150, 1}, {500, 500, 1}, {10, 1000, 100}, {1000, 3, 1}, {7, 13, 2}, {1, 1, 1}} {
		dead := ids(tc.dead)
		seen := map[peer.ID]bool{}
		for r := range tc.rounds {
			round := map[peer.ID]bool{}
			for rank := range tc.live {
				p := swim.ReviveTarget(dead, rank, tc.live, int64(1_000_000+r))
				round[p], seen[p] = true, true
			}
			if len(round) != min(tc.live, tc.dead) {
				t.Errorf("%d live, %d dead: round %d pinged %d distinct", tc.live, tc.dead, r, len(round))
			}
		}
		if len(seen) != tc.dead {
			t.Errorf("%d live, %d dead: %d rounds pinged %d of them", tc.live, tc.dead, tc.rounds, len(seen))
		}
	}
}

// Dead members are pinged now and then (so that a healed partition is
// noticed), never suspected again.
func TestDetectorRevivesDead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dead := peer.ID("dead")
		net := &fakeNet{self: "self", rtt: time.Millisecond, down: map[peer.ID]bool{dead: true}}
		rec := &recorder{}
		cfg := swim.ForPeriod(time.Second)
		d := swim.New(cfg, net, swim.Members{Live: func() []peer.ID { return nil }, Dead: func() []peer.ID { return []peer.ID{dead} }}, rec.suspect, swim.WithSeed(1))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); d.Run(ctx) }()
		time.Sleep(10*cfg.Period + time.Millisecond)
		cancel()
		<-done
		if net.pings != 10/cfg.ReviveEvery || len(rec.suspected) != 0 {
			t.Fatalf("%d pings of the dead member, suspected %v; want %d pings, none", net.pings, rec.suspected, 10/cfg.ReviveEvery)
		}
	})
}

func TestLimiter(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	l := swim.Limiter{Rate: 2, Burst: 5, MaxPeers: 3}
	a := peer.ID("a")
	allowed := 0
	for range 100 {
		if l.Allow(a, now) {
			allowed++
		}
	}
	if allowed != 5 {
		t.Fatalf("a burst of 100 let %d through, want 5", allowed)
	}
	if !l.Allow(a, now.Add(600*time.Millisecond)) || l.Allow(a, now.Add(600*time.Millisecond)) {
		t.Fatal("refill: want one more after half a second")
	}
	// Other peers are not affected; the number of buckets is bounded.
	if !l.Allow("b", now) || !l.Allow("c", now) {
		t.Fatal("other peers refused")
	}
	if l.Allow("d", now) {
		t.Fatal("a fourth peer got a bucket while three busy ones are held")
	}
	// Once the others have refilled (idle), room is made.
	if !l.Allow("d", now.Add(time.Minute)) {
		t.Fatal("no room after the others went idle")
	}
}

func TestConfigValidate(t *testing.T) {
	if err := swim.ForPeriod(time.Second).Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []swim.Config{{}, {Period: time.Second}, {Period: time.Second, Timeout: 2 * time.Second, IndirectTimeout: 1}, {Period: time.Second, Timeout: 1, IndirectTimeout: 1, IndirectProbes: -1}} {
		if err := c.Validate(); !errors.Is(err, swim.ErrConfig) {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

// TestNeighbourhoodGivesEveryMemberKProbers: over a network of 200
// members with identical views, every member is probed by exactly k
// others, and each probes k.
func TestNeighbourhoodGivesEveryMemberKProbers(t *testing.T) {
	var members []peer.ID
	for i := range 200 {
		members = append(members, peer.ID(fmt.Sprintf("member-%03d", i)))
	}
	const k = 8
	probers := map[peer.ID]int{}
	for _, m := range members {
		nb := swim.Neighbourhood(m, members, k)
		if len(nb) != k {
			t.Fatalf("%s probes %d, want %d", m, len(nb), k)
		}
		seen := map[peer.ID]bool{}
		for _, p := range nb {
			if p == m || seen[p] {
				t.Fatalf("%s's neighbourhood %v holds itself or a duplicate", m, nb)
			}
			seen[p] = true
			probers[p]++
		}
	}
	for _, m := range members {
		if probers[m] != k {
			t.Fatalf("%s has %d probers, want %d", m, probers[m], k)
		}
	}
	// Small networks: everyone probes everyone else.
	if nb := swim.Neighbourhood(members[0], members[:5], k); len(nb) != 4 || slices.Contains(nb, members[0]) {
		t.Fatalf("5 members: %v, want the 4 others", nb)
	}
}

// TestLocalLagStretchesTimeouts: answers that come later than the probe
// timeouts (a starved prober reads them late) make a suspect, unless the
// prober's own lag stretches the timeouts; the stretch is capped.
func TestLocalLagStretchesTimeouts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		self, members := peer.ID("self"), ids(4)
		net := &fakeNet{self: self, rtt: 700 * time.Millisecond}
		cfg := swim.ForPeriod(time.Second) // 400 ms direct, 500 ms indirect
		live := func() []peer.ID { return members }
		rec := &recorder{}
		plain := swim.New(cfg, net, swim.Members{Live: live}, rec.suspect, swim.WithSeed(1))
		if out := plain.Probe(t.Context(), members[0], members); out != swim.Suspected {
			t.Fatalf("without lag: %s, want %s", out, swim.Suspected)
		}
		lag := time.Second
		stretched := swim.New(cfg, net, swim.Members{Live: live}, rec.suspect, swim.WithSeed(1),
			swim.WithLocalLag(func() time.Duration { return lag }))
		if out := stretched.Probe(t.Context(), members[0], members); out != swim.Acked {
			t.Fatalf("with 1 s of local lag: %s, want %s", out, swim.Acked)
		}
		// A huge lag is capped at two periods: a target silent for good
		// is still suspected, after at most Timeout + IndirectTimeout + 4
		// periods.
		lag = time.Hour
		net.down = map[peer.ID]bool{members[1]: true}
		start := time.Now()
		if out := stretched.Probe(t.Context(), members[1], members); out != swim.Suspected {
			t.Fatalf("silent target under a huge lag: %s, want %s", out, swim.Suspected)
		}
		if took := time.Since(start); took > cfg.Timeout+cfg.IndirectTimeout+4*cfg.Period {
			t.Fatalf("probe took %s: the stretch is not capped", took)
		}
	})
}

// meshNet is one virtual-time network of many detectors: it records every
// direct probe (when, of whom) and answers unless the target is down.
type meshNet struct {
	rtt time.Duration

	mu     sync.Mutex
	down   map[peer.ID]bool
	probes map[peer.ID][]time.Time
}

type meshPort struct {
	net  *meshNet
	self peer.ID
}

func (p meshPort) Ping(ctx context.Context, target peer.ID) error {
	p.net.mu.Lock()
	p.net.probes[target] = append(p.net.probes[target], time.Now())
	down := p.net.down[target]
	p.net.mu.Unlock()
	return (&fakeNet{rtt: p.net.rtt}).wait(ctx, !down)
}

func (p meshPort) PingVia(ctx context.Context, via, target peer.ID) error {
	p.net.mu.Lock()
	down := p.net.down[target] || p.net.down[via]
	p.net.mu.Unlock()
	return (&fakeNet{rtt: p.net.rtt}).wait(ctx, !down)
}

// Forty detectors, each probing its eight neighbours: every mirror is
// probed once in every period, so a crash at any moment is probed within
// one period and suspected within 1.9 periods by its probers. (A random
// order leaves a mirror unprobed for several periods now and then.)
func TestDetectorsProbeEveryMirrorEveryPeriod(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		members := ids(40)
		cfg := swim.ForPeriod(time.Second)
		net := &meshNet{rtt: 5 * time.Millisecond, down: map[peer.ID]bool{}, probes: map[peer.ID][]time.Time{}}
		crashed := members[17]
		var mu sync.Mutex
		var suspectedAt []time.Duration
		start := time.Now()
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		for i, m := range members {
			live := func() []peer.ID {
				net.mu.Lock()
				defer net.mu.Unlock()
				var up []peer.ID
				for _, o := range members {
					if !net.down[o] || o == crashed {
						up = append(up, o)
					}
				}
				return swim.Neighbourhood(m, up, cfg.Monitors)
			}
			suspect := func(p peer.ID) {
				mu.Lock()
				defer mu.Unlock()
				if p != crashed {
					t.Errorf("%s suspected %s, which is up", m, p)
				}
				suspectedAt = append(suspectedAt, time.Since(start))
			}
			d := swim.New(cfg, meshPort{net, m}, swim.Members{Live: live}, suspect, swim.WithSeed(uint64(i)))
			wg.Go(func() { d.Run(ctx) })
		}
		// Twenty periods up, then the crash at an odd moment.
		time.Sleep(20*cfg.Period + 370*time.Millisecond)
		net.mu.Lock()
		net.down[crashed] = true
		net.mu.Unlock()
		crashAt := time.Since(start)
		time.Sleep(10 * cfg.Period)
		cancel()
		wg.Wait()

		first := swim.Slot(start, cfg.Period) + 1
		for _, m := range members {
			perSlot := map[int64]int{}
			for _, at := range net.probes[m] {
				perSlot[swim.Slot(at, cfg.Period)]++
			}
			for s := first; s < first+20; s++ {
				if perSlot[s] != 1 {
					t.Fatalf("%s probed %d times in slot %d, want once (probes %v)", m, perSlot[s], s-first, net.probes[m])
				}
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if len(suspectedAt) == 0 {
			t.Fatal("the crashed mirror was never suspected")
		}
		if late := suspectedAt[0] - crashAt; late > cfg.Period+cfg.Timeout+cfg.IndirectTimeout {
			t.Fatalf("first suspicion %s after the crash, want within a period plus the probe timeouts", late)
		}
	})
}
