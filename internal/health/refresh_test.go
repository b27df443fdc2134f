package health

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/mirrornet/mirrornet/protocol"
)

// TestRefreshScheduleOutlastsAMissedRefresh: whatever the view's size does
// (steady, filling up at start, growing to a thousand, shrinking after a
// partition), every statement's TTL lasts until the refresh after next has
// been signed, even when each refresh goes out a heartbeat late (the
// heartbeat tick that publishes it): a receiver that missed one refresh
// still holds the mirror alive when the next one arrives. With the TTL
// equal to the refresh interval (the schedule before), the refresh after
// next came up to 1.9 intervals after a statement, long after its TTL.
func TestRefreshScheduleOutlastsAMissedRefresh(t *testing.T) {
	steady := func(n int) func(int) int { return func(int) int { return n } }
	sizes := map[string]func(k int) int{
		"steady 13": steady(13),
		"fills up":  func(k int) int { return min(1+6*k, 13) },
		"grows to a thousand": func(k int) int {
			return min(1+100*k, 1000)
		},
		"shrinks": func(k int) int {
			if k < 5 {
				return 1000
			}
			return 5
		},
		"flaps": func(k int) int { return []int{1, 1000, 13, 500, 2}[k%5] },
	}
	for _, name := range ProfileNames() {
		p, _ := ProfileByName(name)
		for sname, size := range sizes {
			t.Run(fmt.Sprintf("%s/%s", name, sname), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(1, 2))
				var s RefreshSchedule
				now := time.Unix(1e9, 0)
				type signed struct {
					at  time.Time
					ttl time.Duration
				}
				var sts []signed
				for k := range 200 {
					ttl, refreshAt := s.Next(p, now, size(k), rng.Float64())
					if ttl > protocol.MaxLivenessTTL || ttl <= refreshAt.Sub(now) {
						t.Fatalf("statement %d: TTL %s, refresh in %s (limit %s)", k, ttl, refreshAt.Sub(now), protocol.MaxLivenessTTL)
					}
					if refreshAt.Sub(now) < p.Heartbeat {
						t.Fatalf("statement %d: refresh in %s, under a heartbeat", k, refreshAt.Sub(now))
					}
					sts = append(sts, signed{now, ttl})
					if k >= 2 {
						prev := sts[k-2]
						if expiry := prev.at.Add(prev.ttl); now.After(expiry) {
							t.Fatalf("statement %d signed %s after statement %d's TTL (%s) ran out", k, now.Sub(expiry), k-2, prev.ttl)
						}
					}
					now = refreshAt.Add(p.Heartbeat)
				}
			})
		}
	}
}

// TestRefreshScheduleKeepsThePace: the longer TTLs cost no refreshes. On a
// view of steady size the refreshes come every 85% to 95% of the refresh
// interval, as before, and a mirror's first refresh comes within the
// first quarter of it.
func TestRefreshScheduleKeepsThePace(t *testing.T) {
	p, _ := ProfileByName("lan")
	for _, n := range []int{1, 13, 100, 449, 1000} {
		interval := p.RefreshInterval(n)
		rng := rand.New(rand.NewPCG(3, 4))
		var s RefreshSchedule
		now := time.Unix(1e9, 0)
		for k := range 100 {
			_, refreshAt := s.Next(p, now, n, rng.Float64())
			gap := refreshAt.Sub(now)
			lo, hi := time.Duration(0.85*float64(interval)), time.Duration(0.95*float64(interval))
			if k == 0 {
				lo, hi = 0, interval/4
			}
			if gap < lo || gap > hi {
				t.Fatalf("n=%d statement %d: refresh after %s, want %s to %s (interval %s)", n, k, gap, lo, hi, interval)
			}
			now = refreshAt
		}
	}
	if got, want := p.RefreshInterval(13), 52*time.Second; got != want {
		t.Errorf("lan, 13 mirrors: refresh interval %s, want %s", got, want)
	}
	// The network's refresh traffic stays flat (RefreshRate refreshes a
	// second) up to 900 mirrors on lan, TTLs of two gaps included.
	for _, n := range []int{100, 450, 899} {
		if got, want := p.RefreshInterval(n), time.Duration(float64(n)/p.RefreshRate)*time.Second; got != want {
			t.Errorf("lan, %d mirrors: refresh interval %s, want %s (n / RefreshRate)", n, got, want)
		}
	}
	if got := p.RefreshInterval(1e6); 2*got+p.Heartbeat > protocol.MaxLivenessTTL {
		t.Errorf("longest refresh interval %s: two of them and a heartbeat exceed MaxLivenessTTL", got)
	}
}
