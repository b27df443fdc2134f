package health

import (
	"time"

	"github.com/mirrornet/mirrornet/protocol"
)

// RefreshSchedule paces one mirror's liveness statements: for each
// statement it signs, the TTL to declare and when to refresh it. It is
// pure (the caller passes the time and a random number) and not safe for
// concurrent use. The zero value is ready: the next statement is the
// first since the mirror started.
//
// A receiver that misses a refresh (gossip does not guarantee delivery: a
// peer outside every mesh for a heartbeat, a message whose IHAVE went to
// others) must not hold a live mirror suspect. So every statement's TTL
// covers two refresh gaps: the one to its own refresh, and the next one,
// which is cut short when need be. For every statement k, refresh k+2 is
// due a heartbeat before statement k's TTL runs out, and arrives within
// the receiver's SuspectAfter of it: one missed refresh costs nothing.
// What the network signs per second is set by the refresh gaps, not the
// TTLs, so the longer TTLs cost no traffic.
type RefreshSchedule struct {
	// interval is the refresh interval of the last statement (0: none
	// yet), expiry when its TTL runs out.
	interval time.Duration
	expiry   time.Time
}

// The steady refresh gap, as a fraction of the refresh interval: uniform
// in [refreshFracLo, refreshFracHi).
const refreshFracLo, refreshFracHi = 0.85, 0.95

// MeanRefreshGap is the mean time between two refreshes of a mirror that
// sees n mirrors, once its view is steady.
func (p Profile) MeanRefreshGap(n int) time.Duration {
	return time.Duration((refreshFracLo + refreshFracHi) / 2 * float64(p.RefreshInterval(n)))
}

// Next is called as a statement is signed at now by a mirror that sees n
// mirrors; r is a random number in [0, 1). It returns the TTL the
// statement declares and when the next refresh is due (the mirror signs
// sooner when what it says changes).
//
// The refresh comes between 85% and 95% of the refresh interval
// (Profile.RefreshInterval), and at least a heartbeat before the interval
// ends: the random tenth keeps mirrors that refreshed together from
// staying in step, and the later the mean gap, the fewer refreshes the
// network signs and gossips for the same TTLs (from 75% - 95%, 6% fewer).
// When the interval grew a lot (the view filled up: at
// start, or after a partition healed) it comes anywhere in it instead:
// mirrors that learnt the network together would otherwise refresh
// together, in bursts, ever after. A mirror's first statement since it
// started went out while its connections and gossip meshes were still
// forming and may have missed mirrors (they learn it at its first
// refresh), so the first refresh comes early, within the first quarter of
// the interval. In every case it comes at least two heartbeats before the
// previous statement's TTL runs out (one for the heartbeat tick that
// publishes it, one for delivery), and at least a heartbeat after now.
//
// The TTL is the gap to that refresh, plus the interval (the most the
// next gap may be), plus a heartbeat, at most protocol.MaxLivenessTTL.
func (s *RefreshSchedule) Next(p Profile, now time.Time, n int, r float64) (ttl time.Duration, refreshAt time.Time) {
	interval := p.RefreshInterval(n)
	hb := p.Heartbeat
	frac := refreshFracLo + (refreshFracHi-refreshFracLo)*r
	switch {
	case s.interval == 0:
		frac = 0.05 + 0.2*r
	case interval > 2*s.interval:
		frac = 0.05 + 0.9*r
	}
	gap := min(time.Duration(float64(interval)*frac), interval-hb)
	if !s.expiry.IsZero() {
		gap = min(gap, s.expiry.Sub(now)-2*hb)
	}
	gap = max(gap, hb)
	ttl = min(gap+interval+hb, protocol.MaxLivenessTTL)
	s.interval, s.expiry = interval, now.Add(ttl)
	return ttl, now.Add(gap)
}
