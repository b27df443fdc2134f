package probe

import (
	"github.com/libp2p/go-libp2p/core/peer"
)

// Seating answers the questions asked of committees and assignments (is
// this peer assigned to that target, does it hold a seat, is that domain
// seated, how many seats are there) with the answers [Committee],
// [Assigned] and [Seated] give, without computing a whole committee per
// question.
//
// Build one per alive set with [NewSeating]: it groups the alive mirrors
// by failure domain once, O(N) domain lookups. Every score is a hash, so a
// question stops as soon as its answer is known: a peer is not the seat
// holder of its domain as soon as one member of that domain scores below
// it, and a domain is not seated as soon as n other domains have a member
// below its best. With N alive mirrors and committees of n seats, a
// question costs an expected O(n log N) scores (the rank of a hash among
// N is uniform) instead of the N scores of a committee, which made one
// probe round over ten thousand strangers cost N² hashes. [DomainSeated]
// also scores every member of the domain asked about once.
//
// A Seating is immutable and safe for concurrent use; it does not keep
// the alive slice.
type Seating struct {
	domainOf func(peer.ID) string
	// members are the distinct alive peers, in alive's order.
	members []peer.ID
	// domains groups members by domain, in order of first appearance.
	domains []seatDomain
	// index maps a member to its domain's position in domains.
	index map[peer.ID]int
	// byName maps a domain name to its position in domains.
	byName map[string]int
}

type seatDomain struct {
	name    string
	members []peer.ID
}

// NewSeating groups alive (duplicates ignored) by domainOf ("" is
// [DomainUnknown]; nil places everyone there).
func NewSeating(alive []peer.ID, domainOf func(peer.ID) string) *Seating {
	s := &Seating{domainOf: domainOf, index: make(map[peer.ID]int, len(alive)), byName: map[string]int{}}
	s.members = make([]peer.ID, 0, len(alive))
	for _, p := range alive {
		if _, dup := s.index[p]; dup {
			continue
		}
		d := s.domain(p)
		i, ok := s.byName[d]
		if !ok {
			i = len(s.domains)
			s.byName[d] = i
			s.domains = append(s.domains, seatDomain{name: d})
		}
		s.domains[i].members = append(s.domains[i].members, p)
		s.index[p] = i
		s.members = append(s.members, p)
	}
	return s
}

func (s *Seating) domain(p peer.ID) string {
	if s.domainOf != nil {
		if d := s.domainOf(p); d != "" {
			return d
		}
	}
	return DomainUnknown
}

// Len is the number of distinct alive mirrors.
func (s *Seating) Len() int { return len(s.members) }

// Members returns the distinct alive mirrors in alive's order. The caller
// must not modify the slice.
func (s *Seating) Members() []peer.ID { return s.members }

// Domain is p's domain as the Seating placed it (p need not be alive).
func (s *Seating) Domain(p peer.ID) string {
	if i, ok := s.index[p]; ok {
		return s.domains[i].name
	}
	return s.domain(p)
}

// Assigned is [Assigned] over the alive set: whether observer is among
// target's n observers in epoch. Expected cost: O(n log N) scores.
func (s *Seating) Assigned(epoch uint64, observer, target peer.ID, n int) bool {
	if observer == target || n <= 0 {
		return false
	}
	me := scored{observer, score(epoch, target, observer)}
	below := 0
	for _, p := range s.members {
		if p == target || p == observer {
			continue
		}
		if less(scored{p, score(epoch, target, p)}, me) < 0 {
			if below++; below >= n {
				return false
			}
		}
	}
	return true
}

// overlay is the alive set with extra mirrors: Committee over
// append(alive, extra...).
type overlay struct {
	s *Seating
	// extra are the extra peers not alive, grouped by domain: those of
	// alive domains by position, the others by name.
	extraIn  map[int][]peer.ID
	extraNew map[string][]peer.ID
	newNames []string
}

func (s *Seating) with(extra []peer.ID) overlay {
	o := overlay{s: s}
	for _, p := range extra {
		if _, alive := s.index[p]; alive {
			continue
		}
		d := s.domain(p)
		if i, ok := s.byName[d]; ok {
			if o.extraIn == nil {
				o.extraIn = map[int][]peer.ID{}
			}
			if !contains(o.extraIn[i], p) {
				o.extraIn[i] = append(o.extraIn[i], p)
			}
			continue
		}
		if o.extraNew == nil {
			o.extraNew = map[string][]peer.ID{}
		}
		if _, ok := o.extraNew[d]; !ok {
			o.newNames = append(o.newNames, d)
		}
		if !contains(o.extraNew[d], p) {
			o.extraNew[d] = append(o.extraNew[d], p)
		}
	}
	return o
}

func contains(ps []peer.ID, p peer.ID) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// eachDomain calls f with every domain's name and its member lists (alive,
// then extra) until f returns false.
func (o overlay) eachDomain(f func(name string, alive, extra []peer.ID) bool) {
	for i, d := range o.s.domains {
		if !f(d.name, d.members, o.extraIn[i]) {
			return
		}
	}
	for _, d := range o.newNames {
		if !f(d, nil, o.extraNew[d]) {
			return
		}
	}
}

// members returns domain d's alive and extra members.
func (o overlay) members(d string) (alive, extra []peer.ID) {
	if i, ok := o.s.byName[d]; ok {
		return o.s.domains[i].members, o.extraIn[i]
	}
	return nil, o.extraNew[d]
}

// anyBelow reports whether a member of the lists other than skip scores
// below bar, stopping at the first.
func anyBelow(epoch uint64, target peer.ID, bar scored, lists ...[]peer.ID) bool {
	for _, l := range lists {
		for _, p := range l {
			if p == target || p == bar.id {
				continue
			}
			if less(scored{p, score(epoch, target, p)}, bar) < 0 {
				return true
			}
		}
	}
	return false
}

// seatedAt reports whether a domain d whose best member is bar is among
// the n domains with the lowest best scores: fewer than n other domains
// have a member (not target) below bar.
func (o overlay) seatedAt(epoch uint64, target peer.ID, d string, bar scored, n int) bool {
	below := 0
	o.eachDomain(func(name string, alive, extra []peer.ID) bool {
		if name == d {
			return true
		}
		if anyBelow(epoch, target, bar, alive, extra) {
			below++
		}
		return below < n
	})
	return below < n
}

// HoldsSeat reports whether p holds a seat of target's committee in epoch
// ([Committee] over the alive set and extra): p is alive or extra, the
// member of its domain with the lowest score, and its domain is among the
// n domains whose holders score lowest. Expected cost: O(n log N) scores.
func (s *Seating) HoldsSeat(epoch uint64, target, p peer.ID, n int, extra ...peer.ID) bool {
	if p == target || n <= 0 {
		return false
	}
	o := s.with(extra)
	if _, alive := s.index[p]; !alive && !contains(extra, p) {
		return false
	}
	d := s.Domain(p)
	me := scored{p, score(epoch, target, p)}
	alive, ext := o.members(d)
	if anyBelow(epoch, target, me, alive, ext) {
		return false
	}
	return o.seatedAt(epoch, target, d, me, n)
}

// DomainSeated reports whether domain d ("" is [DomainUnknown]) has a seat
// of target's committee in epoch ([Seated] of [Committee] over the alive
// set and extra). It scores every member of d once, then stops as soon as
// n other domains have a member below d's best.
func (s *Seating) DomainSeated(epoch uint64, target peer.ID, d string, n int, extra ...peer.ID) bool {
	if n <= 0 {
		return false
	}
	if d == "" {
		d = DomainUnknown
	}
	o := s.with(extra)
	alive, ext := o.members(d)
	var best scored
	found := false
	for _, l := range [][]peer.ID{alive, ext} {
		for _, p := range l {
			if p == target {
				continue
			}
			c := scored{p, score(epoch, target, p)}
			if !found || less(c, best) < 0 {
				best, found = c, true
			}
		}
	}
	if !found {
		return false
	}
	return o.seatedAt(epoch, target, d, best, n)
}

// Seats is the size of target's committee ([Committee] over the alive set
// and extra): n, or fewer when fewer domains have a member other than
// target. It computes no score.
func (s *Seating) Seats(target peer.ID, n int, extra ...peer.ID) int {
	if n <= 0 {
		return 0
	}
	o := s.with(extra)
	count := 0
	o.eachDomain(func(_ string, alive, ext []peer.ID) bool {
		if hasOther(target, alive) || hasOther(target, ext) {
			count++
		}
		return count < n
	})
	return count
}

// hasOther reports whether ps holds a peer other than target.
func hasOther(target peer.ID, ps []peer.ID) bool {
	return len(ps) > 1 || len(ps) == 1 && ps[0] != target
}
