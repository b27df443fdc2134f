package swim

import (
	"crypto/sha256"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Neighbourhood returns the k members that follow self on a ring of the
// members ordered by the SHA-256 of their peer IDs (self need not be among
// members, and is never returned): the mirrors self probes. Every mirror
// then has k probers (its k predecessors, as long as views agree), whatever
// the network's size, and probes only k mirrors, so it keeps a fixed set of
// about 2k connections for probing instead of dialling every mirror in
// turn (at a thousand mirrors, more than a connection manager keeps, so
// every probe would set up a new connection). With k or fewer other
// members (or k <= 0) it returns them all. The order is the ring's, from
// self's successor on: the one [Scheduled] relies on.
func Neighbourhood(self peer.ID, members []peer.ID, k int) []peer.ID {
	type pos struct {
		h  [sha256.Size]byte
		id peer.ID
	}
	ring := make([]pos, 0, len(members))
	for _, m := range members {
		if m != self {
			ring = append(ring, pos{sha256.Sum256([]byte(m)), m})
		}
	}
	if k <= 0 || k > len(ring) {
		k = len(ring)
	}
	cmp := func(a, b pos) int {
		if c := compareBytes(a.h[:], b.h[:]); c != 0 {
			return c
		}
		return compareBytes([]byte(a.id), []byte(b.id))
	}
	slices.SortFunc(ring, cmp)
	me := pos{sha256.Sum256([]byte(self)), self}
	start, _ := slices.BinarySearchFunc(ring, me, cmp)
	out := make([]peer.ID, 0, k)
	for i := range k {
		out = append(out, ring[(start+i)%len(ring)].id)
	}
	return out
}

func compareBytes(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return len(a) - len(b)
}
