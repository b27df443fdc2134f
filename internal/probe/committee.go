package probe

import (
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"
)

// DomainUnknown is the one failure domain of every mirror nobody has
// observed: however many such mirrors there are, they count once (one
// committee seat, one witness toward k, one unit of effective redundancy).
const DomainUnknown = "unknown"

// Seat is one seat of a target's committee: a failure domain, and the
// member of that domain who holds the seat in the epoch.
type Seat struct {
	Domain string
	Holder peer.ID
}

// Committee returns target's committee in epoch: one seat per failure
// domain among alive (target excluded), held by the domain's member with
// the lowest assignment score (the score of [Observers]); of those, the n
// seats whose holders score lowest, best first. domainOf places a peer
// ("" is [DomainUnknown]). Everything but the domains is public, so two
// receivers that agree on the domains agree on the committee; thirty
// identities in one domain hold one seat, as do all unobserved mirrors
// together.
func Committee(epoch uint64, target peer.ID, alive []peer.ID, domainOf func(peer.ID) string, n int) []Seat {
	best := map[string]scored{}
	for _, p := range alive {
		if p == target {
			continue
		}
		d := domainOf(p)
		if d == "" {
			d = DomainUnknown
		}
		s := scored{p, score(epoch, target, p)}
		if b, ok := best[d]; !ok || less(s, b) < 0 {
			best[d] = s
		}
	}
	type seat struct {
		d string
		s scored
	}
	seats := make([]seat, 0, len(best))
	for d, s := range best {
		seats = append(seats, seat{d, s})
	}
	slices.SortFunc(seats, func(a, b seat) int { return less(a.s, b.s) })
	if n > len(seats) {
		n = len(seats)
	}
	out := make([]Seat, 0, max(n, 0))
	for _, s := range seats[:max(n, 0)] {
		out = append(out, Seat{Domain: s.d, Holder: s.s.id})
	}
	return out
}

// Seated reports whether domain d has a seat in seats.
func Seated(seats []Seat, d string) bool {
	for _, s := range seats {
		if s.Domain == d {
			return true
		}
	}
	return false
}
