package swim

import (
	"math/rand/v2"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Ring picks probe targets round-robin from a shuffled list, reshuffled
// every round (memberlist's order): each member is probed once per round,
// and a member that joins mid-round waits at most one round. It is pure
// (its randomness is the caller's source) and not safe for concurrent use.
type Ring struct {
	rng   *rand.Rand
	order []peer.ID
	next  int
}

// NewRing returns a ring drawing from rng.
func NewRing(rng *rand.Rand) *Ring { return &Ring{rng: rng} }

// Next returns the next target among members (skipping any that are no
// longer members), or false if members is empty.
func (r *Ring) Next(members []peer.ID) (peer.ID, bool) {
	if len(members) == 0 {
		return "", false
	}
	for range 2 {
		for r.next < len(r.order) {
			p := r.order[r.next]
			r.next++
			if slices.Contains(members, p) {
				return p, true
			}
		}
		// A new round: this round's members, shuffled.
		r.order = append(r.order[:0], members...)
		r.rng.Shuffle(len(r.order), func(i, j int) { r.order[i], r.order[j] = r.order[j], r.order[i] })
		r.next = 0
	}
	return "", false
}
