package health_test

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/internal/health"
	"github.com/mirrornet/mirrornet/protocol"
)

// wantMembers derives Members' lists from a full listing of the view.
func wantMembers(v *health.View, now time.Time) (live, dead []peer.ID) {
	for _, m := range v.Mirrors(now) {
		switch m.State {
		case health.StateAlive, health.StateSuspect:
			live = append(live, m.Peer)
		case health.StateDead:
			dead = append(dead, m.Peer)
		}
	}
	return live, dead
}

// TestMembersFollowEveryChange: whatever happens to the view (refreshes
// with longer or shorter TTLs, suspicions, refutations, leaving, time
// passing deadlines, the local lag, pruning), Members lists exactly the
// alive and suspect mirrors and the dead ones a full listing gives.
func TestMembersFollowEveryChange(t *testing.T) {
	signers := make([]signer, 8)
	for i := range signers {
		signers[i] = newSigner(t, 300+i)
	}
	for seed := range uint64(12) {
		rng := rand.New(rand.NewPCG(seed, 1))
		v := health.New(suspCfg)
		now := time.Unix(1e9, 0)
		seq := make([]uint64, len(signers))
		for step := range 300 {
			i := rng.IntN(len(signers))
			s := signers[i]
			switch rng.IntN(10) {
			case 0, 1: // a refresh, with a TTL from none to a minute
				seq[i]++
				v.Apply(s.signTTL(t, seq[i], now, time.Duration(rng.IntN(60))*time.Second), now)
			case 2:
				seq[i]++
				v.Apply(s.sign(t, seq[i], now, protocol.StateLeaving), now)
			case 3: // a suspicion about the current (or an older) statement
				if inc := seq[i] - uint64(rng.IntN(2)); inc > 0 {
					o := signers[(i+1)%len(signers)]
					_, _ = v.AddSuspicion(suspicion(t, o, s, inc, now), now)
				}
			case 4, 5:
				now = now.Add(time.Duration(rng.IntN(20_000)) * time.Millisecond)
			case 6, 7, 8:
				v.SetLocalLag(time.Duration(rng.IntN(3)) * time.Second)
			case 9:
				v.Prune(now)
			}
			m := v.Members(now)
			live, dead := wantMembers(v, now)
			if !slices.Equal(m.Live, live) || !slices.Equal(m.Dead, dead) {
				t.Fatalf("seed %d step %d: Members live %v dead %v, the full listing live %v dead %v", seed, step, m.Live, m.Dead, live, dead)
			}
		}
	}
}

// TestMembersListOnlyOnChange: refreshes of mirrors in good standing and
// holdings leave the lists as they are (same generation: nothing
// relisted); a mirror's deadline passing, a suspicion and a refutation
// each give new lists.
func TestMembersListOnlyOnChange(t *testing.T) {
	a, b, c := newSigner(t, 401), newSigner(t, 402), newSigner(t, 403)
	v := health.New(suspCfg)
	now := time.Unix(1e9, 0)
	v.Apply(a.signTTL(t, 1, now, time.Minute), now)
	v.Apply(b.signTTL(t, 1, now, time.Minute), now)
	v.Apply(c.signTTL(t, 1, now, 10*time.Second), now)
	m0 := v.Members(now)
	if len(m0.Live) != 3 || len(m0.Dead) != 0 {
		t.Fatalf("Members %+v, want three live", m0)
	}
	for k := range 5 {
		now = now.Add(time.Second)
		v.Apply(a.signTTL(t, uint64(2+k), now, time.Minute), now)
		if m := v.Members(now); m.Gen != m0.Gen {
			t.Fatalf("a refresh of a mirror in good standing relisted the view (generation %d, was %d)", m.Gen, m0.Gen)
		}
	}
	// c's TTL (10 s) plus DeadAfter (4 s) after its statement: dead, with
	// no change to the view.
	now = now.Add(9 * time.Second)
	m1 := v.Members(now)
	if m1.Gen == m0.Gen || !slices.Contains(m1.Dead, c.id) || slices.Contains(m1.Live, c.id) {
		t.Fatalf("after c's deadline: Members %+v, want c dead in new lists", m1)
	}
	if _, err := v.AddSuspicion(suspicion(t, a, b, 1, now), now); err != nil {
		t.Fatal(err)
	}
	now = now.Add(suspCfg.SuspicionTimeout)
	m2 := v.Members(now)
	if m2.Gen == m1.Gen || !slices.Contains(m2.Dead, b.id) {
		t.Fatalf("after a suspicion of b timed out: Members %+v, want b dead", m2)
	}
	v.Apply(b.signTTL(t, 2, now, time.Minute), now) // b refutes
	m3 := v.Members(now)
	if m3.Gen == m2.Gen || !slices.Contains(m3.Live, b.id) {
		t.Fatalf("after b refuted: Members %+v, want b live", m3)
	}
	// A refresh that promises less (no TTL: dead DeadAfter after it) moves
	// a's deadline earlier: the lists must follow it.
	v.Apply(a.signTTL(t, 10, now, 0), now)
	v.Members(now)
	now = now.Add(suspCfg.DeadAfter)
	if m4 := v.Members(now); !slices.Contains(m4.Dead, a.id) {
		t.Fatalf("%s after a refresh without TTL: Members %+v, want a dead", suspCfg.DeadAfter, m4)
	}
}
