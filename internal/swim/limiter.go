package swim

import (
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Limiter is a per-peer token bucket for incoming probes: an honest mirror
// sends another about one direct probe per round plus a few indirect ones,
// so a peer over the limit is flooding. It is pure (now is passed in), not
// safe for concurrent use, and its memory is bounded: at most MaxPeers
// buckets, idle (full) ones dropped first.
type Limiter struct {
	// Rate is how many probes a peer may send per second, sustained;
	// Burst how many at once.
	Rate  float64
	Burst float64
	// MaxPeers bounds the buckets held (0: 4096).
	MaxPeers int

	buckets map[peer.ID]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// Allow takes one token from p's bucket at now and reports whether there
// was one.
func (l *Limiter) Allow(p peer.ID, now time.Time) bool {
	if l.buckets == nil {
		l.buckets = map[peer.ID]*bucket{}
	}
	b := l.buckets[p]
	if b == nil {
		if max := l.maxPeers(); len(l.buckets) >= max {
			l.shed(now)
			if len(l.buckets) >= max {
				return false // every bucket is busy: a flood from many peers
			}
		}
		b = &bucket{tokens: l.Burst, at: now}
		l.buckets[p] = b
	}
	if dt := now.Sub(b.at).Seconds(); dt > 0 {
		b.tokens = min(l.Burst, b.tokens+dt*l.Rate)
		b.at = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (l *Limiter) maxPeers() int {
	if l.MaxPeers > 0 {
		return l.MaxPeers
	}
	return 4096
}

// shed drops the buckets that have refilled by now (their peers are idle).
func (l *Limiter) shed(now time.Time) {
	for p, b := range l.buckets {
		if b.tokens+now.Sub(b.at).Seconds()*l.Rate >= l.Burst {
			delete(l.buckets, p)
		}
	}
}
