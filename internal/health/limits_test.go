package health_test

import (
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/internal/health"
	"github.com/mirrornet/mirrornet/protocol"
)

// A full view refuses alive strangers, lets them replace dead or suspect
// strangers, and lets a mirror with evidence push out the stalest stranger.
func TestLimitsMaxMirrors(t *testing.T) {
	v := health.New(testCfg)
	friend := newSigner(t, 100)
	v.SetLimits(health.Limits{MaxMirrors: 3, Protected: func(id peer.ID) bool { return id == friend.id }})
	for i := range 3 {
		if ok, err := v.Add(newSigner(t, i).sign(t, 1, t0.Add(time.Duration(i)*time.Millisecond), protocol.StateUp), t0); !ok || err != nil {
			t.Fatalf("stranger %d: %v %v", i, ok, err)
		}
	}
	if ok, err := v.Add(newSigner(t, 3).sign(t, 1, t0, protocol.StateUp), t0); ok || !errors.Is(err, health.ErrViewFull) {
		t.Fatalf("fourth alive stranger: %v %v, want ErrViewFull", ok, err)
	}
	// Existing members still refresh.
	if ok, err := v.Add(newSigner(t, 1).sign(t, 2, t0.Add(time.Second), protocol.StateUp), t0.Add(time.Second)); !ok || err != nil {
		t.Fatalf("refresh: %v %v", ok, err)
	}
	// A mirror with evidence evicts the stalest stranger (0).
	if ok, err := v.Add(friend.sign(t, 1, t0.Add(time.Second), protocol.StateUp), t0.Add(time.Second)); !ok || err != nil {
		t.Fatalf("protected newcomer: %v %v", ok, err)
	}
	if _, ok := v.Mirror(newSigner(t, 0).id, t0.Add(time.Second)); ok {
		t.Fatal("stalest stranger not evicted")
	}
	// Once stranger 2 is suspect (and 1 is not), a new stranger replaces it.
	now := t0.Add(2500 * time.Millisecond)
	if ok, err := v.Add(newSigner(t, 4).sign(t, 1, now, protocol.StateUp), now); !ok || err != nil {
		t.Fatalf("stranger vs suspect stranger: %v %v", ok, err)
	}
	if _, ok := v.Mirror(newSigner(t, 2).id, now); ok {
		t.Fatal("suspect stranger not evicted")
	}
	if v.Len() != 3 {
		t.Fatalf("Len = %d, want 3", v.Len())
	}
}

// The byte budget holds whatever the statements' sizes, and the counted
// bytes return to zero when everything is forgotten.
func TestLimitsMaxBytes(t *testing.T) {
	v := health.New(testCfg)
	big := make([]string, 400)
	for i := range big {
		big[i] = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52z" + string(rune('a'+i%26)) + string(rune('a'+i/26))
	}
	one := health.StatementCost(newSigner(t, 0).sign(t, 1, t0, protocol.StateUp, big...))
	v.SetLimits(health.Limits{MaxBytes: 5 * one})
	refused := 0
	for i := range 50 {
		ok, err := v.Add(newSigner(t, i).sign(t, 1, t0, protocol.StateUp, big...), t0)
		if !ok {
			if !errors.Is(err, health.ErrOverBudget) {
				t.Fatalf("%d: %v", i, err)
			}
			refused++
		}
		if v.Bytes() > 5*one {
			t.Fatalf("bytes %d over budget %d", v.Bytes(), 5*one)
		}
	}
	if refused != 45 {
		t.Fatalf("refused %d, want 45", refused)
	}
	v.Prune(t0.Add(time.Hour))
	if v.Bytes() != 0 || v.Len() != 0 {
		t.Fatalf("after prune: %d bytes, %d mirrors", v.Bytes(), v.Len())
	}
}
