package probe

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestDrawEqualsCommittee: a Draw answers what Committee answers, for
// every target (in the alive set or not), farms, unobserved mirrors,
// duplicates in alive, and any number of seats.
func TestDrawEqualsCommittee(t *testing.T) {
	if !stateIsDigest() {
		t.Error("this toolchain's marshaled SHA-256 state is not the digest: Draw falls back to Sum (correct, slower)")
	}
	ms := mirrors(t, 80, 31)
	all := ids(ms)
	rng := rand.New(rand.NewPCG(4, 5))
	for trial := range 40 {
		dm := domainMap{}
		for i, m := range ms {
			switch rng.IntN(4) {
			case 0: // unobserved
			case 1:
				dm[m.id] = "net:203.0.113.0/24" // a farm
			default:
				dm[m.id] = fmt.Sprintf("net:10.0.%d.0/24", rng.IntN(20+i))
			}
		}
		alive := slices.Clone(all[:20+rng.IntN(60)])
		rng.Shuffle(len(alive), func(i, j int) { alive[i], alive[j] = alive[j], alive[i] })
		if trial%3 == 0 {
			alive = append(alive, alive[:5]...) // duplicates
		}
		n := []int{0, 1, 3, 6, 200}[trial%5]
		epoch := uint64(trial * 7919)
		d := NewDraw(epoch, alive, dm.Domain, n)
		for _, target := range all {
			want := Committee(epoch, target, alive, dm.Domain, n)
			if got := d.Committee(target); !reflect.DeepEqual(got, want) {
				t.Fatalf("trial %d, n %d, target %s:\n draw      %v\n committee %v", trial, n, target, got, want)
			}
		}
	}
}

// TestJudgeWithDrawnCommittees: Judge gives the same judgement with
// committees from a Draw as when it draws them itself, including targets
// whose observers are not in the alive set (Judge draws those).
func TestJudgeWithDrawnCommittees(t *testing.T) {
	cfg := DefaultConfig()
	ms := mirrors(t, 40, 32)
	alive := ids(ms[:36]) // four observers are not alive in this view
	dm := domainMap{}
	for i, m := range ms {
		if i%5 != 0 {
			dm[m.id] = fmt.Sprintf("net:10.0.%d.0/24", i%13)
		}
	}
	now := time.UnixMilli(1_800_000_000_000)
	epoch := EpochOf(now, cfg.EpochLength)
	rng := rand.New(rand.NewPCG(6, 7))
	var rs []Result
	for _, target := range ids(ms) {
		for _, obs := range ms {
			if obs.id == target || rng.IntN(3) != 0 {
				continue
			}
			rs = append(rs, Result{Observer: obs.id, Target: target, Epoch: epoch, Round: uint64(rng.IntN(10)),
				Seq: uint64(len(rs)), At: now.Add(-time.Duration(rng.IntN(200)) * time.Second), Pass: rng.IntN(5) != 0})
		}
	}
	in := Input{Config: cfg, Results: rs, Alive: alive, Domain: dm.Domain, Now: now}
	want := Judge(in)
	d := NewDraw(epoch, alive, dm.Domain, cfg.Observers)
	drawn := 0
	in.Committees = func(target peer.ID, e uint64) ([]Seat, bool) {
		if e != epoch {
			return nil, false
		}
		drawn++
		return d.Committee(target), true
	}
	got := Judge(in)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("judgements differ:\n drawn %+v\n judge %+v", got, want)
	}
	if drawn == 0 {
		t.Fatal("Judge never asked for a drawn committee")
	}
	verified := 0
	for _, st := range want.Targets {
		if st.State == StateVerified {
			verified++
		}
	}
	if verified == 0 || verified == len(want.Targets) {
		t.Fatalf("%d of %d targets verified: the comparison says little", verified, len(want.Targets))
	}
}

// BenchmarkCommittees draws the committees of 1,000 targets over 1,000
// alive mirrors in 250 domains, with Committee and with a Draw.
func BenchmarkCommittees(b *testing.B) {
	ms := mirrors(b, 1000, 33)
	alive := ids(ms)
	dm := domainMap{}
	for i, m := range ms {
		dm[m.id] = fmt.Sprintf("net:10.%d.%d.0/24", i/250, i%250)
	}
	b.Run("Committee", func(b *testing.B) {
		for i := range b.N {
			for _, t := range alive {
				Committee(uint64(i), t, alive, dm.Domain, 6)
			}
		}
	})
	b.Run("Draw", func(b *testing.B) {
		for i := range b.N {
			d := NewDraw(uint64(i), alive, dm.Domain, 6)
			for _, t := range alive {
				d.Committee(t)
			}
		}
	})
}
