package probe

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

// fakeIDs are cheap distinct peer IDs: scores hash the bytes, nothing
// decodes them.
func fakeIDs(n int, prefix string) []peer.ID {
	out := make([]peer.ID, n)
	for i := range out {
		out[i] = peer.ID(fmt.Sprintf("%s-%06d", prefix, i))
	}
	return out
}

// TestSeatingMatchesCommittee: every question a Seating answers gets the
// answer of the committee it stands for (Committee, Seated, Assigned), on
// random alive sets with a farm, unobserved mirrors, singletons, extras
// alive or not, duplicates, and targets alive or not.
func TestSeatingMatchesCommittee(t *testing.T) {
	for trial := range 200 {
		rng := rand.New(rand.NewPCG(uint64(trial), 7))
		all := fakeIDs(10+rng.IntN(60), fmt.Sprintf("t%d", trial))
		dm := domainMap{}
		nDomains := 1 + rng.IntN(8)
		for _, p := range all {
			switch r := rng.IntN(10); {
			case r < 3: // unobserved
			case r < 6:
				dm[p] = "net:farm"
			default:
				dm[p] = fmt.Sprintf("net:%d", rng.IntN(nDomains))
			}
		}
		var alive []peer.ID
		for _, p := range all {
			if rng.IntN(4) > 0 {
				alive = append(alive, p)
				if rng.IntN(10) == 0 {
					alive = append(alive, p) // duplicate
				}
			}
		}
		var extra []peer.ID
		for range rng.IntN(4) {
			extra = append(extra, all[rng.IntN(len(all))])
		}
		n := 1 + rng.IntN(7)
		epoch := rng.Uint64N(1000)
		s := NewSeating(alive, dm.Domain)
		for _, target := range []peer.ID{all[rng.IntN(len(all))], alive[0], "not-a-member"} {
			withExtra := append(slices.Clone(alive), extra...)
			c := Committee(epoch, target, withExtra, dm.Domain, n)
			if got := s.Seats(target, n, extra...); got != len(c) {
				t.Fatalf("trial %d: Seats = %d, committee has %d", trial, got, len(c))
			}
			for _, p := range append(slices.Clone(all), "not-a-member") {
				want := slices.ContainsFunc(c, func(st Seat) bool { return st.Holder == p })
				if got := s.HoldsSeat(epoch, target, p, n, extra...); got != want {
					t.Fatalf("trial %d: HoldsSeat(%s, %s) = %v, committee says %v (%v)", trial, target, p, got, want, c)
				}
				if got, want := s.Assigned(epoch, p, target, n), Assigned(epoch, p, target, alive, n); got != want {
					t.Fatalf("trial %d: Assigned(%s, %s) = %v, want %v", trial, p, target, got, want)
				}
			}
			for _, d := range []string{"", DomainUnknown, "net:farm", "net:0", "net:1", "net:5", "net:none"} {
				want := Seated(c, d)
				if d == "" {
					want = Seated(c, DomainUnknown)
				}
				if got := s.DomainSeated(epoch, target, d, n, extra...); got != want {
					t.Fatalf("trial %d: DomainSeated(%s, %q) = %v, committee says %v (%v)", trial, target, d, got, want, c)
				}
			}
		}
	}
}

// TestSeatingQuestionsAreCheap: deciding, for every target among N alive
// mirrors, whether this mirror is assigned or holds a seat costs far fewer
// than the N² scores of one committee per target: a flood of strangers
// (all in the unknown domain) must not make a probe round quadratic.
func TestSeatingQuestionsAreCheap(t *testing.T) {
	const n = 2000
	alive := fakeIDs(n, "stranger")
	self := peer.ID("self")
	dm := domainMap{self: "net:self"}
	for i, p := range alive[:40] {
		dm[p] = fmt.Sprintf("net:%d", i%8) // a few observed mirrors
	}
	alive = append(alive, self)
	var scores int
	scoreHook = func() { scores++ }
	t.Cleanup(func() { scoreHook = nil })
	s := NewSeating(alive, dm.Domain)
	for _, target := range alive {
		s.Assigned(9, self, target, 6)
		s.HoldsSeat(9, target, self, 6)
	}
	// Expected about 2 * 6 * ln(N) scores per target; N² is 4,000,000.
	if limit := 400 * n; scores > limit {
		t.Fatalf("%d scores for %d targets (%d per target), want at most %d", scores, len(alive), scores/len(alive), limit)
	}
	t.Logf("%d scores for %d targets (%.0f per target)", scores, len(alive), float64(scores)/float64(len(alive)))
}
