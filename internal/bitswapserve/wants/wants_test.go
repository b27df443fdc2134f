package wants

import (
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
)

func testCid(t *testing.T, s string) cid.Cid {
	t.Helper()
	c, err := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}.Sum([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testConfig() Config {
	return Config{ResendAfter: time.Second, MaxResendInterval: 8 * time.Second, MaxResends: 3,
		ActiveWindow: 30 * time.Second, MaxWantsPerPeer: 4096}
}

const kubo = peer.ID("kubo")

// TestTrackerResendsAWantTheClientKeptAfterTheRace replays what boxo
// v0.43.0's client does to a mirror when it loses track of a want: block
// delivered, cancel, the same want-block again at once, the block again
// (the client drops it as unwanted and neither cancels nor re-asks). The
// want stays open, so the block is offered again, with backoff.
func TestTrackerResendsAWantTheClientKeptAfterTheRace(t *testing.T) {
	tr := New(testConfig())
	x := testCid(t, "x")
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	tr.Received(kubo, false, []Entry{{Cid: x, WantBlock: true, Held: true}}, at(0))
	tr.Sent(kubo, []cid.Cid{x}, nil, at(10*time.Millisecond))
	tr.Received(kubo, false, []Entry{{Cid: x, Cancel: true}}, at(20*time.Millisecond))
	if got := tr.Due(at(time.Hour), 10); len(got) != 0 {
		t.Fatalf("a cancelled want is re-sent: %v", got)
	}
	// the racy want-block, answered again
	tr.Received(kubo, false, []Entry{{Cid: x, WantBlock: true, Held: true}}, at(30*time.Millisecond))
	tr.Sent(kubo, []cid.Cid{x}, nil, at(40*time.Millisecond))

	if got := tr.Due(at(500*time.Millisecond), 10); len(got) != 0 {
		t.Fatalf("re-sent before ResendAfter: %v", got)
	}
	var sends []time.Duration
	for d := 100 * time.Millisecond; d < 29*time.Second; d += 100 * time.Millisecond {
		for _, r := range tr.Due(at(d), 10) {
			if r.Peer != kubo || r.Cid != x {
				t.Fatalf("unexpected re-send %v", r)
			}
			sends = append(sends, d)
		}
	}
	// 1 s, then 2 s and 4 s later; MaxResends is 3
	want := []time.Duration{1100 * time.Millisecond, 3100 * time.Millisecond, 7100 * time.Millisecond}
	if len(sends) != len(want) {
		t.Fatalf("re-sent at %v, want %v", sends, want)
	}
	for i := range want {
		if sends[i] != want[i] {
			t.Fatalf("re-sent at %v, want %v", sends, want)
		}
	}
	st := tr.Stats(at(9 * time.Second))
	if len(st) != 1 || st[0].WantsOpen != 1 || st[0].BlocksResent != 3 || st[0].OldestOpenWant < 8.9 {
		t.Fatalf("stats %+v", st)
	}

	// Silent for longer than ActiveWindow: nothing more; back (the client
	// starts fetching again): re-sending starts over.
	if got := tr.Due(at(40*time.Second), 10); len(got) != 0 {
		t.Fatalf("re-sent to an idle peer: %v", got)
	}
	// Wants for blocks this mirror does not serve (a busy client's
	// broadcasts) are not fetching from it.
	tr.Received(kubo, false, []Entry{{Cid: testCid(t, "elsewhere"), Held: false}}, at(50*time.Second))
	if got := tr.Due(at(53*time.Second), 10); len(got) != 0 {
		t.Fatalf("re-sent to a peer fetching elsewhere: %v", got)
	}
	other := testCid(t, "other")
	tr.Received(kubo, false, []Entry{{Cid: other, WantBlock: false, Held: true}}, at(100*time.Second))
	if got := tr.Due(at(101*time.Second), 10); len(got) != 1 || got[0].Cid != x {
		t.Fatalf("after the peer came back: %v", got)
	}
	// The client takes it this time and cancels: nothing more.
	tr.Received(kubo, false, []Entry{{Cid: x, Cancel: true}}, at(101*time.Second+time.Millisecond))
	if got := tr.Due(at(200*time.Second), 10); len(got) != 0 {
		t.Fatalf("re-sent after the cancel: %v", got)
	}
}

// TestTrackerNoResends covers wants that must never be re-sent.
func TestTrackerNoResends(t *testing.T) {
	x := testCid(t, "x")
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		name string
		run  func(tr *Tracker)
	}{
		{"peer never cancels", func(tr *Tracker) {
			tr.Received(kubo, false, []Entry{{Cid: x, WantBlock: true, Held: true}}, t0)
			tr.Sent(kubo, []cid.Cid{x}, nil, t0)
		}},
		{"not delivered yet", func(tr *Tracker) {
			tr.Received(kubo, false, []Entry{{Cid: testCid(t, "y"), Cancel: true}}, t0)
			tr.Received(kubo, false, []Entry{{Cid: x, WantBlock: true, Held: true}}, t0)
		}},
		{"want-have answered with HAVE", func(tr *Tracker) {
			tr.Received(kubo, false, []Entry{{Cid: testCid(t, "y")}}, t0)
			tr.Received(kubo, false, []Entry{{Cid: testCid(t, "y"), Cancel: true}}, t0)
			tr.Received(kubo, false, []Entry{{Cid: x, Held: true}}, t0)
			tr.Sent(kubo, nil, []cid.Cid{x}, t0)
		}},
		{"not held", func(tr *Tracker) {
			tr.Received(kubo, false, []Entry{{Cid: testCid(t, "y")}}, t0)
			tr.Received(kubo, false, []Entry{{Cid: testCid(t, "y"), Cancel: true}}, t0)
			tr.Received(kubo, false, []Entry{{Cid: x, WantBlock: true}}, t0)
			tr.Sent(kubo, []cid.Cid{x}, nil, t0)
		}},
		{"disconnected", func(tr *Tracker) {
			tr.Received(kubo, false, []Entry{{Cid: testCid(t, "y")}}, t0)
			tr.Received(kubo, false, []Entry{{Cid: testCid(t, "y"), Cancel: true}}, t0)
			tr.Received(kubo, false, []Entry{{Cid: x, WantBlock: true, Held: true}}, t0)
			tr.Sent(kubo, []cid.Cid{x}, nil, t0)
			tr.Disconnected(kubo)
		}},
		{"full wantlist without it", func(tr *Tracker) {
			tr.Received(kubo, false, []Entry{{Cid: testCid(t, "y")}}, t0)
			tr.Received(kubo, false, []Entry{{Cid: testCid(t, "y"), Cancel: true}}, t0)
			tr.Received(kubo, false, []Entry{{Cid: x, WantBlock: true, Held: true}}, t0)
			tr.Sent(kubo, []cid.Cid{x}, nil, t0)
			tr.Received(kubo, true, nil, t0)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := New(testConfig())
			tc.run(tr)
			for d := time.Duration(0); d < 20*time.Second; d += 250 * time.Millisecond {
				if got := tr.Due(t0.Add(d), 10); len(got) != 0 {
					t.Fatalf("re-sent %v at +%s", got, d)
				}
			}
		})
	}
}

// TestTrackerStats: open, unanswered and the oldest open want for a block
// the mirror serves; bounded per peer.
func TestTrackerStats(t *testing.T) {
	cfg := testConfig()
	cfg.MaxWantsPerPeer = 3
	tr := New(cfg)
	t0 := time.Unix(1000, 0)
	a, b, c, d := testCid(t, "a"), testCid(t, "b"), testCid(t, "c"), testCid(t, "d")
	tr.Received(kubo, false, []Entry{{Cid: a, WantBlock: false, Held: false}}, t0)                   // broadcast want-have, not ours
	tr.Received(kubo, false, []Entry{{Cid: b, WantBlock: true, Held: true}}, t0.Add(time.Second))    // ours, queued
	tr.Received(kubo, false, []Entry{{Cid: c, WantBlock: false, Held: true}}, t0.Add(2*time.Second)) // want-have, answered HAVE
	tr.Sent(kubo, nil, []cid.Cid{c}, t0.Add(2*time.Second))
	tr.Received(kubo, false, []Entry{{Cid: d, WantBlock: true, Held: true}}, t0.Add(3*time.Second)) // over the bound
	st := tr.Stats(t0.Add(11 * time.Second))
	if len(st) != 1 {
		t.Fatalf("stats %+v", st)
	}
	s := st[0]
	if s.WantsOpen != 3 || s.WantsUnanswered != 2 || s.OldestOpenWant != 10 {
		t.Fatalf("stats %+v, want 3 open, 2 unanswered, oldest 10 s", s)
	}
}
