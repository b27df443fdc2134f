package relsyncp2p_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/mirrornet/mirrornet/internal/relsync"
	"github.com/mirrornet/mirrornet/internal/relsync/relsyncp2p"
	"github.com/mirrornet/mirrornet/protocol"
)

// store is a relsyncp2p.Store in memory. Apply keeps records that start
// with "ok " (as verification would) and refuses the rest; a record names
// its app and version: "ok APP VERSION".
type store struct {
	mu      sync.Mutex
	gen     uint64
	apps    map[string]*relsync.AppRecords
	refused int
}

func newStore() *store { return &store{apps: map[string]*relsync.AppRecords{}} }

func (s *store) Generation() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen
}

func (s *store) Snapshot() []relsync.AppRecords {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []relsync.AppRecords
	for _, a := range s.apps {
		out = append(out, *a)
	}
	return out
}

func (s *store) Apply(raw []byte) bool {
	var app string
	var v uint64
	if _, err := fmt.Sscanf(string(raw), "ok %s %d", &app, &v); err != nil {
		s.mu.Lock()
		s.refused++
		s.mu.Unlock()
		return false
	}
	return s.add(app, v)
}

func (s *store) add(app string, v uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.apps[app]
	if a == nil {
		a = &relsync.AppRecords{App: app}
		s.apps[app] = a
	}
	if a.Latest() >= v {
		return false
	}
	a.Releases = append(a.Releases, relsync.Record{Version: v, Raw: []byte(fmt.Sprintf("ok %s %d", app, v))})
	s.gen++
	return true
}

func (s *store) latest(app string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.apps[app]; a != nil {
		return a.Latest()
	}
	return 0
}

func appID(name string) string {
	return protocol.DeriveAppID(name, protocol.MaintainerSet{Keys: []string{"12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"}, Threshold: 1})
}

type counts struct {
	mu   sync.Mutex
	pull map[string]int
	bad  map[string]int
}

func (c *counts) onPull(o string, _ int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pull[o]++
}

func (c *counts) onBad(r string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bad[r]++
}

func (c *counts) get(m map[string]int, k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return m[k]
}

const interval = 5 * time.Second

// pair makes two connected hosts with a service each; peers lists only the
// other host.
func pair(t *testing.T, mn mocknet.Mocknet, sa, sb *store) (a, b *relsyncp2p.Service, ca, cb *counts, ha, hb host.Host) {
	return pairServing(t, mn, sa, sb, nil)
}

// pairServing is pair with a's Config.Serve set to serve.
func pairServing(t *testing.T, mn mocknet.Mocknet, sa, sb *store, serve func(peer.ID) bool) (a, b *relsyncp2p.Service, ca, cb *counts, ha, hb host.Host) {
	t.Helper()
	hs := make([]host.Host, 2)
	for i := range hs {
		h, err := mn.GenPeer()
		if err != nil {
			t.Fatal(err)
		}
		hs[i] = h
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := mn.ConnectPeers(hs[0].ID(), hs[1].ID()); err != nil {
		t.Fatal(err)
	}
	mk := func(h host.Host, other peer.ID, st *store, serve func(peer.ID) bool) (*relsyncp2p.Service, *counts) {
		c := &counts{pull: map[string]int{}, bad: map[string]int{}}
		s, err := relsyncp2p.New(relsyncp2p.Config{
			Host: h, Store: st, Interval: interval, Peers: func() []peer.ID { return []peer.ID{other} },
			Rate: 4 / interval.Seconds(), Burst: 4, OnPull: c.onPull, OnBadInput: c.onBad, Serve: serve,
		})
		if err != nil {
			t.Fatal(err)
		}
		return s, c
	}
	a, ca = mk(hs[0], hs[1].ID(), sa, serve)
	b, cb = mk(hs[1], hs[0].ID(), sb, nil)
	return a, b, ca, cb, hs[0], hs[1]
}

// A store that missed records gets them at its next pull, within 1.25
// intervals of virtual time; in sync, pulls exchange a digest only.
func TestMissedRecordsArriveAtNextPull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mn := mocknet.New()
		defer mn.Close()
		sa, sb := newStore(), newStore()
		x, y := appID("x"), appID("y")
		sa.add(x, 1)
		sa.add(x, 2)
		sb.add(x, 1)
		sb.add(y, 7) // B holds one A lacks: A learns it too
		a, b, ca, cb, _, _ := pair(t, mn, sa, sb)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		a.Start(ctx)
		b.Start(ctx)
		defer a.Close()
		defer b.Close()
		// Virtual time: every pull starts within 1.25 intervals, and the
		// exchange completes before the bubble is idle again.
		time.Sleep(interval * 5 / 4)
		synctest.Wait()
		if sb.latest(x) != 2 || sa.latest(y) != 7 {
			t.Fatalf("not in sync after one pull each: B has x@%d, A has y@%d", sb.latest(x), sa.latest(y))
		}
		if cb.get(cb.pull, relsyncp2p.OutcomeLearned) != 1 || ca.get(ca.pull, relsyncp2p.OutcomeLearned) != 1 {
			t.Fatalf("pull outcomes: A %v, B %v", ca.pull, cb.pull)
		}
		sent := a.BytesSent() + b.BytesSent()
		time.Sleep(3 * interval)
		synctest.Wait()
		if n := ca.get(ca.pull, relsyncp2p.OutcomeSame) + cb.get(cb.pull, relsyncp2p.OutcomeSame); n < 2 {
			t.Fatalf("in sync, %d pulls said same: A %v, B %v", n, ca.pull, cb.pull)
		}
		perPull := float64(a.BytesSent()+b.BytesSent()-sent) / float64(ca.get(ca.pull, relsyncp2p.OutcomeSame)+cb.get(cb.pull, relsyncp2p.OutcomeSame))
		if perPull > 100 {
			t.Fatalf("in sync, a pull costs %.0f bytes; want one digest and an empty frame", perPull)
		}
	})
}

// A peer over the request rate limit is refused (counted), and a store
// never applies what it refuses.
func TestFloodIsRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mn := mocknet.New()
		defer mn.Close()
		sa, sb := newStore(), newStore()
		sa.add(appID("x"), 1)
		a, b, ca, _, ha, _ := pair(t, mn, sa, sb)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		a.Start(ctx) // serves; B pulls by hand
		defer a.Close()
		var failed int
		for range 10 {
			if _, err := b.Pull(ctx, ha.ID()); err != nil {
				failed++
			}
		}
		if failed != 6 || ca.get(ca.bad, relsyncp2p.ReasonFlood) != 6 {
			t.Fatalf("10 pulls at once against burst 4: %d failed, %d counted as flood", failed, ca.get(ca.bad, relsyncp2p.ReasonFlood))
		}
	})
}

// A peer Serve refuses (not a mirror) gets no answer: a summary can be far
// larger than the request, and strangers cost nothing to make.
func TestStrangerIsRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mn := mocknet.New()
		defer mn.Close()
		sa, sb := newStore(), newStore()
		sa.add(appID("x"), 1)
		a, b, ca, _, ha, _ := pairServing(t, mn, sa, sb, func(peer.ID) bool { return false })
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		a.Start(ctx)
		defer a.Close()
		if _, err := b.Pull(ctx, ha.ID()); err == nil {
			t.Fatal("a stranger's pull was answered")
		}
		if ca.get(ca.bad, relsyncp2p.ReasonStranger) != 1 || sb.latest(appID("x")) != 0 {
			t.Fatalf("stranger: counted %v, B has x@%d", ca.bad, sb.latest(appID("x")))
		}
	})
}

// A lying responder cannot make a requester read past the bounds: an
// oversized summary, a malformed one, or an endless stream of records.
func TestMaliciousResponderIsBounded(t *testing.T) {
	x := appID("x")
	for _, tc := range []struct {
		name  string
		serve func(w *bufio.Writer)
	}{
		{"oversized summary", func(w *bufio.Writer) {
			protocol.WriteFrame(w, []byte(strings.Repeat(" ", protocol.MaxReleaseSummarySize+1)))
		}},
		{"malformed summary", func(w *bufio.Writer) {
			protocol.WriteFrame(w, []byte(`{"apps":[{"app":"nope","version":1,"hash":"00"}]}`))
		}},
		{"endless records", func(w *bufio.Writer) {
			sum, _ := json.Marshal(protocol.ReleaseSummary{Apps: []protocol.ReleaseAppSummary{{App: x, Version: 9, Hash: protocol.ReleaseAppHash(nil)}}})
			protocol.WriteFrame(w, sum)
			w.Flush()
			for v := range protocol.MaxReleaseSyncRecords + 10 {
				if protocol.WriteFrame(w, []byte(fmt.Sprintf("ok %s %d", x, v+1))) != nil {
					return
				}
			}
			protocol.WriteFrame(w, nil)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				mn := mocknet.New()
				defer mn.Close()
				sa, sb := newStore(), newStore()
				_, b, _, cb, ha, _ := pair(t, mn, sa, sb)
				ha.SetStreamHandler(protocol.ReleaseSyncProtocolID, func(s network.Stream) {
					defer s.Close()
					r := bufio.NewReader(s)
					if _, err := protocol.ReadFrame(r, protocol.MaxReleaseDigestSize); err != nil {
						s.Reset()
						return
					}
					w := bufio.NewWriter(s)
					go func() { // drain the want frame
						_, _ = protocol.ReadFrame(r, protocol.MaxReleaseDigestSize)
					}()
					tc.serve(w)
					w.Flush()
				})
				_, err := b.Pull(context.Background(), ha.ID())
				if err == nil {
					t.Fatal("pull from a lying responder succeeded")
				}
				if cb.get(cb.bad, relsyncp2p.ReasonMalformed) != 1 || cb.get(cb.pull, relsyncp2p.OutcomeFailed) != 1 {
					t.Fatalf("not counted: bad %v, pulls %v (err %v)", cb.bad, cb.pull, err)
				}
				if got := sb.latest(x); got > protocol.MaxReleaseSyncRecords {
					t.Fatalf("requester applied %d records, bound %d", got, protocol.MaxReleaseSyncRecords)
				}
				if tc.name == "endless records" && !errors.Is(err, relsyncp2p.ErrBadAnswer) {
					t.Fatalf("err %v, want ErrBadAnswer", err)
				}
			})
		})
	}
}

func TestConfigValidate(t *testing.T) {
	if _, err := relsyncp2p.New(relsyncp2p.Config{}); !errors.Is(err, relsyncp2p.ErrConfig) {
		t.Fatalf("empty config: %v", err)
	}
}
