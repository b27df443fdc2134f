package swim

import (
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestFloodLog(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var f FloodLog
	a, b := peer.ID("a"), peer.ID("b")
	for _, s := range []struct {
		p    peer.ID
		at   time.Duration
		want bool
	}{
		{a, 0, true},
		{a, time.Second, false},
		{b, time.Second, true}, // per peer
		{a, 59 * time.Second, false},
		{a, time.Minute, true},
		{a, time.Minute + time.Second, false},
		{b, time.Minute + time.Second, true},
	} {
		if got := f.Log(s.p, t0.Add(s.at)); got != s.want {
			t.Fatalf("Log(%s, +%s) = %v, want %v", s.p, s.at, got, s.want)
		}
	}
}

// TestFloodLogBounded: a flood from many keys keeps at most MaxPeers
// entries; past it every peer is forgotten, so each logs once more.
func TestFloodLogBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	f := FloodLog{MaxPeers: 8}
	for i := range 100 {
		if !f.Log(peer.ID(fmt.Sprint(i)), now) {
			t.Fatalf("peer %d: first refusal not logged", i)
		}
		if len(f.at) > f.MaxPeers {
			t.Fatalf("%d peers remembered, bound %d", len(f.at), f.MaxPeers)
		}
	}
	if f.Log("99", now) {
		t.Fatal("the last peer logged twice within a minute")
	}
	if !f.Log("0", now) {
		t.Fatal("a forgotten peer was not logged again")
	}
}
