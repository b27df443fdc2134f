package probe

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/protocol"
)

const assignDomain = "mirrornet-probe-assign/1"

// EpochOf returns floor(unix milliseconds of t / length).
func EpochOf(t time.Time, length time.Duration) uint64 {
	ms := t.UnixMilli()
	if ms < 0 {
		return 0
	}
	return uint64(ms / length.Milliseconds())
}

// score is SHA-256(domain || be64(epoch) || uvarint-prefixed target ||
// uvarint-prefixed observer), as specified in package protocol.
func score(epoch uint64, target, observer peer.ID) [32]byte {
	if scoreHook != nil {
		scoreHook()
	}
	b := make([]byte, 0, len(assignDomain)+8+2*(binary.MaxVarintLen64+40))
	b = append(b, assignDomain...)
	b = binary.BigEndian.AppendUint64(b, epoch)
	b = binary.AppendUvarint(b, uint64(len(target)))
	b = append(b, target...)
	b = binary.AppendUvarint(b, uint64(len(observer)))
	b = append(b, observer...)
	return sha256.Sum256(b)
}

// scoreHook, if set (tests), is called for every score computed: the
// cost of committee questions is counted in scores.
var scoreHook func()

type scored struct {
	id peer.ID
	s  [32]byte
}

func less(a, b scored) int {
	if c := bytes.Compare(a.s[:], b.s[:]); c != 0 {
		return c
	}
	return bytes.Compare([]byte(a.id), []byte(b.id))
}

// Observers returns target's n observers in epoch: the members of alive
// other than target with the lowest score, best first. Duplicates in alive
// are ignored. The result is a new slice.
func Observers(epoch uint64, target peer.ID, alive []peer.ID, n int) []peer.ID {
	cands := make([]scored, 0, len(alive))
	seen := make(map[peer.ID]bool, len(alive))
	for _, p := range alive {
		if p == target || seen[p] {
			continue
		}
		seen[p] = true
		cands = append(cands, scored{p, score(epoch, target, p)})
	}
	slices.SortFunc(cands, less)
	if n > len(cands) {
		n = len(cands)
	}
	out := make([]peer.ID, 0, max(n, 0))
	for _, c := range cands[:max(n, 0)] {
		out = append(out, c.id)
	}
	return out
}

// Assigned reports whether observer is one of target's n observers in
// epoch, given the alive set. Observer need not be in alive (a checker's
// view may lag the observer's own): it is assigned when fewer than n other
// alive mirrors (not target) score below it, which is what Observers would
// answer had it been in alive.
func Assigned(epoch uint64, observer, target peer.ID, alive []peer.ID, n int) bool {
	if observer == target || n <= 0 {
		return false
	}
	me := scored{observer, score(epoch, target, observer)}
	below := 0
	seen := make(map[peer.ID]bool, len(alive))
	for _, p := range alive {
		if p == target || p == observer || seen[p] {
			continue
		}
		seen[p] = true
		if less(scored{p, score(epoch, target, p)}, me) < 0 {
			below++
			if below >= n {
				return false
			}
		}
	}
	return true
}

// Targets returns the members of alive (other than self) that self is
// assigned to probe in epoch, in alive's order.
func Targets(epoch uint64, self peer.ID, alive []peer.ID, n int) []peer.ID {
	var out []peer.ID
	seen := map[peer.ID]bool{}
	for _, t := range alive {
		if t == self || seen[t] {
			continue
		}
		seen[t] = true
		if Assigned(epoch, self, t, alive, n) {
			out = append(out, t)
		}
	}
	return out
}

// RoundOf returns the round of t within its epoch: (unix ms of t - epoch
// start) * protocol.ProbeRoundsPerEpoch / length. With the epoch, the
// target and the observer it derives a challenge's nonce
// (protocol.ProbeNonce): one challenge per observer, target and round.
func RoundOf(t time.Time, length time.Duration) uint64 {
	ms := t.UnixMilli()
	l := length.Milliseconds()
	if ms < 0 || l <= 0 {
		return 0
	}
	return uint64((ms % l) * protocol.ProbeRoundsPerEpoch / l)
}

// Nonce is the nonce of the challenge observer puts to target at t.
func Nonce(t time.Time, length time.Duration, target, observer peer.ID) (epoch, round uint64, nonce [16]byte) {
	epoch, round = EpochOf(t, length), RoundOf(t, length)
	return epoch, round, protocol.ProbeNonce(epoch, round, target.String(), observer.String())
}
