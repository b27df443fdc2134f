package health_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/health"
	"github.com/mirrornet/mirrornet/protocol"
)

// simResult is what one observer saw in a simulated run.
type simResult struct {
	detect      time.Duration // from the crash until the observer saw it dead
	falseDead   []string      // healthy mirrors the observer called dead, and when (the first 10)
	maxSuspects int
}

type delivery struct {
	at time.Time
	st *attest.Statement
}

// simulate runs n mirrors publishing on profile p's heartbeat in virtual
// time, as one observer receives them over gossip: each statement
// arrives 5–300 ms after signing, 1% are lost, each mirror's clock is off by
// up to ±200 ms. Mirror 0 crashes at 20 s. Once that is detected (2 s after
// DeadAfter) the observer itself is starved for 3.5 s (its timers fire that late and it processes nothing);
// with lifeguard it reports that lateness with SetLocalLag. Every 10 ms of
// virtual time it evaluates every mirror first and then applies what
// arrived, the worst order for false positives.
func simulate(t *testing.T, p health.Profile, n int, lifeguard bool, seed uint64) simResult {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 99))
	crash := t0.Add(20 * time.Second)
	starveFrom, starveFor := crash.Add(p.Health.DeadAfter+2*time.Second), 3500*time.Millisecond
	end := starveFrom.Add(starveFor + 2*p.Health.DeadAfter)

	ids := make([]peer.ID, n)
	var ds []delivery
	for i := range n {
		ids[i] = peer.ID(fmt.Sprintf("mirror-%03d", i))
		skew := time.Duration(rng.Int64N(int64(400*time.Millisecond))) - 200*time.Millisecond
		phase := time.Duration(rng.Int64N(int64(p.Heartbeat)))
		seq := uint64(0)
		for at := t0.Add(phase); at.Before(end); at = at.Add(p.Heartbeat) {
			if i == 0 && at.After(crash) {
				break
			}
			seq++
			if rng.IntN(100) == 0 {
				continue // lost
			}
			st := &attest.Statement{
				Kind: attest.KindLiveness, Signer: ids[i], Seq: seq, Time: at.Add(skew).Truncate(time.Millisecond),
				Raw:      []byte(fmt.Sprintf("%s/%d", ids[i], seq)),
				Liveness: &protocol.Liveness{Peer: string(ids[i]), State: protocol.StateUp, Seq: seq},
			}
			delay := 5*time.Millisecond + time.Duration(rng.Int64N(int64(295*time.Millisecond)))
			ds = append(ds, delivery{at.Add(delay), st})
		}
	}
	slices.SortStableFunc(ds, func(a, b delivery) int { return a.at.Compare(b.at) })

	v := health.New(p.Health)
	res := simResult{detect: -1}
	const tick = 10 * time.Millisecond
	next := 0
	for now := t0; now.Before(end); now = now.Add(tick) {
		if !now.Before(starveFrom) && now.Before(starveFrom.Add(starveFor)) {
			continue // the observer is starved: nothing runs
		}
		if lifeguard {
			switch {
			case now.Equal(starveFrom.Add(starveFor)):
				v.SetLocalLag(starveFor) // the tick due at starveFrom fired this late
			case now.Equal(starveFrom.Add(starveFor + 5*time.Second)):
				v.SetLocalLag(0) // on time again for a while
			}
		}
		if now.After(t0.Add(5 * time.Second)) { // past the warm-up
			suspects := 0
			for i, id := range ids {
				m, ok := v.Mirror(id, now)
				switch {
				case !ok:
				case m.State == health.StateSuspect:
					suspects++
				case m.State == health.StateDead && i == 0:
					if res.detect < 0 {
						res.detect = now.Sub(crash)
					}
				case m.State == health.StateDead:
					if len(res.falseDead) < 10 { // enough to report
						res.falseDead = append(res.falseDead, fmt.Sprintf("%s at %s", id, now.Sub(t0)))
					}
				}
			}
			res.maxSuspects = max(res.maxSuspects, suspects)
		}
		for ; next < len(ds) && !ds[next].at.After(now); next++ {
			v.Apply(ds[next].st, now)
		}
	}
	return res
}

// TestLANDetectsCrashInHalfMemberlistTime checks the goal from the field
// notes: memberlist's LAN config makes a crash known in about 9 s at N=50;
// the lan profile must take at most half that, with no false positives, even
// when the observer is starved for 3.5 s.
func TestLANDetectsCrashInHalfMemberlistTime(t *testing.T) {
	lan, err := health.ProfileByName("lan")
	if err != nil {
		t.Fatal(err)
	}
	for seed := range uint64(3) {
		res := simulate(t, lan, 50, true, seed)
		if res.detect < 0 || res.detect > 4500*time.Millisecond {
			t.Errorf("seed %d: crash detected after %s, want at most 4.5s", seed, res.detect)
		}
		if len(res.falseDead) > 0 {
			t.Errorf("seed %d: healthy mirrors declared dead: %v", seed, res.falseDead[:min(5, len(res.falseDead))])
		}
		t.Logf("seed %d: detected in %s, at most %d suspects at once", seed, res.detect, res.maxSuspects)
	}
}

// TestStarvedObserverWithoutLifeguard is the control: the same run without
// SetLocalLag declares healthy mirrors dead, so the lag is what prevents it.
func TestStarvedObserverWithoutLifeguard(t *testing.T) {
	lan, _ := health.ProfileByName("lan")
	res := simulate(t, lan, 50, false, 0)
	if len(res.falseDead) == 0 {
		t.Fatal("a 3.5 s starved observer without lifeguard saw no false deaths; the simulation does not exercise SetLocalLag")
	}
}

func TestProfilesDetectWithoutFalsePositives(t *testing.T) {
	for _, name := range health.ProfileNames() {
		p, _ := health.ProfileByName(name)
		if name == "local" {
			continue // 300 ms gossip jitter is not a loopback network; covered by the node's tests
		}
		res := simulate(t, p, 20, true, 7)
		if res.detect < 0 || res.detect > p.Health.DeadAfter+500*time.Millisecond {
			t.Errorf("%s: crash detected after %s (DeadAfter %s)", name, res.detect, p.Health.DeadAfter)
		}
		if len(res.falseDead) > 0 {
			t.Errorf("%s: false deaths %v", name, res.falseDead[:min(5, len(res.falseDead))])
		}
	}
}
