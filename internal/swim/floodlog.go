package swim

import (
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// FloodLog says when to log a peer's refused input: at most once per
// Every per peer, so a flooding peer costs a log line a minute, not one
// per message. It is pure (now is passed in), not safe for concurrent use
// (guard it with the lock of the Limiter it goes with), and its memory is
// bounded: past MaxPeers peers it forgets them all (a flood from many
// keys then logs each again once).
type FloodLog struct {
	// Every is the least time between two lines about one peer (0: a
	// minute).
	Every time.Duration
	// MaxPeers bounds the peers remembered (0: 1024).
	MaxPeers int

	at map[peer.ID]time.Time
}

// Log reports whether to log input refused from p at now, and if so
// records that it was logged.
func (f *FloodLog) Log(p peer.ID, now time.Time) bool {
	every := f.Every
	if every <= 0 {
		every = time.Minute
	}
	if last, seen := f.at[p]; seen && now.Sub(last) < every {
		return false
	}
	maxPeers := f.MaxPeers
	if maxPeers <= 0 {
		maxPeers = 1024
	}
	if f.at == nil {
		f.at = map[peer.ID]time.Time{}
	}
	if len(f.at) >= maxPeers {
		clear(f.at)
	}
	f.at[p] = now
	return true
}
