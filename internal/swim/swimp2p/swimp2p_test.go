package swimp2p_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/internal/netsim"
	"github.com/mirrornet/mirrornet/internal/swim"
	"github.com/mirrornet/mirrornet/internal/swim/swimp2p"
	"github.com/mirrornet/mirrornet/protocol"
)

// fakeView is a swimp2p.View: a map of targets, a sequence number and the
// refutations asked for.
type fakeView struct {
	mu      sync.Mutex
	targets map[peer.ID]swimp2p.Target
	seq     uint64
	refuted []uint64
}

func (v *fakeView) Lookup(p peer.ID) (swimp2p.Target, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	t, ok := v.targets[p]
	return t, ok
}

func (v *fakeView) Seq() uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.seq
}

func (v *fakeView) Refute(_ peer.ID, seq uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.refuted = append(v.refuted, seq)
}

type mirror struct {
	nw   *netsim.Network
	h    host.Host
	view *fakeView
	svc  *swimp2p.Service
	bad  map[string]int
	mu   sync.Mutex
}

func (m *mirror) badCount(reason string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bad[reason]
}

// newMirrors starts n hosts on a netsim network (10 ms links), none
// connected to another, each serving the ping protocol.
func newMirrors(t *testing.T, n int) []*mirror {
	t.Helper()
	nw, err := netsim.New(netsim.Config{Latency: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out []*mirror
	t.Cleanup(func() {
		cancel()
		for _, m := range out {
			m.svc.Stop()
			m.h.Close()
		}
	})
	for i := range n {
		sk, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		h, err := nw.NewHost(netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), sk)
		if err != nil {
			t.Fatal(err)
		}
		m := &mirror{nw: nw, h: h, view: &fakeView{targets: map[peer.ID]swimp2p.Target{}, seq: 100}, bad: map[string]int{}}
		m.svc, err = swimp2p.New(swimp2p.Config{
			Host: h, View: m.view, Probe: swim.ForPeriod(time.Second), Rate: 2, Burst: 3,
			OnBadInput: func(r string) { m.mu.Lock(); m.bad[r]++; m.mu.Unlock() },
		})
		if err != nil {
			t.Fatal(err)
		}
		m.svc.Start(ctx)
		out = append(out, m)
	}
	return out
}

func addrsOf(h host.Host) []string {
	var out []string
	for _, a := range h.Addrs() {
		out = append(out, a.String())
	}
	return out
}

// TestProbeDialsAtSignedAddresses: a mirror probes, directly and through
// a helper, mirrors it was never connected to, at the addresses the view
// holds for them; without them the probe fails.
func TestProbeDialsAtSignedAddresses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ms := newMirrors(t, 3)
		a, b, c := ms[0], ms[1], ms[2]
		ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
		defer cancel()
		if err := a.svc.Ping(ctx, b.h.ID()); err == nil {
			t.Fatal("probe of a mirror whose addresses the view does not hold succeeded")
		}
		a.view.targets[b.h.ID()] = swimp2p.Target{Seq: 1, Addrs: addrsOf(b.h)}
		a.view.targets[c.h.ID()] = swimp2p.Target{Seq: 1, Addrs: addrsOf(c.h)}
		c.view.targets[b.h.ID()] = swimp2p.Target{Seq: 1, Addrs: addrsOf(b.h)}
		ctx2, cancel2 := context.WithTimeout(context.Background(), 400*time.Millisecond)
		defer cancel2()
		if err := a.svc.Ping(ctx2, b.h.ID()); err != nil {
			t.Fatalf("direct probe at the view's addresses: %v", err)
		}
		ctx3, cancel3 := context.WithTimeout(context.Background(), 400*time.Millisecond)
		defer cancel3()
		if err := a.svc.PingVia(ctx3, c.h.ID(), b.h.ID()); err != nil {
			t.Fatalf("indirect probe through a helper that knows the target's addresses: %v", err)
		}
		if a.svc.BytesSent() == 0 || b.svc.BytesReceived() == 0 {
			t.Fatal("ping bytes not counted")
		}
	})
}

// TestDirectProbesShareOneStream: the direct probes of one target go over
// one kept stream, each a frame each way: after the first, a probe costs
// well under the ~380 bytes on the wire that a stream of its own costs
// (set-up, protocol negotiation, close).
func TestDirectProbesShareOneStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ms := newMirrors(t, 2)
		a, b := ms[0], ms[1]
		a.view.targets[b.h.ID()] = swimp2p.Target{Seq: 1, Addrs: addrsOf(b.h)}
		probe := func() {
			ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
			defer cancel()
			if err := a.svc.Ping(ctx, b.h.ID()); err != nil {
				t.Fatal(err)
			}
		}
		probe()                 // dials, opens the stream
		time.Sleep(time.Second) // virtual: under the target's rate limit
		sent0, recv0 := a.nw.Totals()
		pay0, ack0 := a.svc.BytesSent(), b.svc.BytesSent()
		const probes = 5
		for range probes {
			probe()
			time.Sleep(time.Second)
		}
		sent1, recv1 := a.nw.Totals()
		streams := 0
		for _, c := range a.h.Network().ConnsToPeer(b.h.ID()) {
			for _, st := range c.GetStreams() {
				if st.Protocol() == protocol.PingProtocolID {
					streams++
				}
			}
		}
		if streams != 1 {
			t.Errorf("%d ping streams open to the target after %d probes, want 1 kept stream", streams, probes+1)
		}
		// A mirror in good standing is probed with "{}" and answers
		// {"ok":true}: no sequence numbers (a frame's length prefix is one
		// byte).
		if got := (a.svc.BytesSent() - pay0) / probes; got != 3 {
			t.Errorf("a probe of a mirror in good standing is %d bytes of payload, want 3 (\"{}\" framed)", got)
		}
		if got := (b.svc.BytesSent() - ack0) / probes; got != 12 {
			t.Errorf("an answer to it is %d bytes of payload, want 12 ({\"ok\":true} framed)", got)
		}
		// Both directions, every byte netsim carried (yamux, Noise, frames).
		per := float64(sent1-sent0+recv1-recv0) / 2 / probes
		if per > 80 {
			t.Errorf("a probe on the kept stream costs %.0f bytes on the wire, want < 80", per)
		}
		t.Logf("%.0f bytes on the wire per probe", per)
	})
}

// TestSuspectedMirrorRefutes: a probe that says the prober suspects the
// target at its current sequence number makes the target refute; one
// about an older sequence does not.
func TestSuspectedMirrorRefutes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ms := newMirrors(t, 2)
		a, b := ms[0], ms[1]
		a.view.targets[b.h.ID()] = swimp2p.Target{Seq: 99, Suspect: true, Addrs: addrsOf(b.h)}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := a.svc.Ping(ctx, b.h.ID()); err != nil {
			t.Fatal(err)
		}
		if len(b.view.refuted) != 0 {
			t.Fatalf("refuted a suspicion about an older statement: %v", b.view.refuted)
		}
		a.view.targets[b.h.ID()] = swimp2p.Target{Seq: 100, Suspect: true, Addrs: addrsOf(b.h)}
		if err := a.svc.Ping(ctx, b.h.ID()); err != nil {
			t.Fatal(err)
		}
		if len(b.view.refuted) != 1 || b.view.refuted[0] != 100 {
			t.Fatalf("refutations %v, want one at 100", b.view.refuted)
		}
	})
}

// TestPingFloodRefused: probes over the per-peer limit are refused and
// counted by reason.
func TestPingFloodRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ms := newMirrors(t, 2)
		a, b := ms[0], ms[1]
		a.view.targets[b.h.ID()] = swimp2p.Target{Seq: 1, Addrs: addrsOf(b.h)}
		failed := 0
		for range 10 { // at once: burst 3
			ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
			if err := a.svc.Ping(ctx, b.h.ID()); err != nil {
				failed++
			}
			cancel()
		}
		if failed < 5 || b.badCount(swimp2p.ReasonFlood) != failed {
			t.Fatalf("%d of 10 probes refused, %d counted as flood; want most refused and all counted", failed, b.badCount(swimp2p.ReasonFlood))
		}
	})
}

// TestPingFloodOnOneStreamRefused: the per-peer limit holds for every
// request on a stream, not only its first: a peer that keeps one stream
// open and writes request after request gets answers for the burst (3),
// then the stream is reset and the excess counted as a flood.
func TestPingFloodOnOneStreamRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ms := newMirrors(t, 2)
		a, b := ms[0], ms[1]
		s := rawPingStream(t, a, b)
		defer s.Close()
		body, _ := json.Marshal(protocol.Ping{})
		r := bufio.NewReader(s)
		answered := 0
		for range 10 { // at once: burst 3, 2 a second
			if err := protocol.WriteFrame(s, body); err != nil {
				break
			}
			if _, err := protocol.ReadFrame(r, protocol.MaxPingSize); err != nil {
				break
			}
			answered++
		}
		if answered != 3 {
			t.Fatalf("%d of 10 requests on one stream answered, want the burst of 3", answered)
		}
		if n := b.badCount(swimp2p.ReasonFlood); n != 1 {
			t.Fatalf("%d floods counted, want 1 (the request that reset the stream)", n)
		}
	})
}

// TestLateAnswerIsNotAnAck: an answer that comes after the probe's
// deadline does not count: that probe fails, the next probe (which the
// target does not answer) is not taken as answered by the late frame, and
// once the target answers again, probes succeed on a kept stream as
// before.
func TestLateAnswerIsNotAnAck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ms := newMirrors(t, 2)
		a, b := ms[0], ms[1]
		a.view.targets[b.h.ID()] = swimp2p.Target{Seq: 1, Addrs: addrsOf(b.h)}
		// b answers its first request 600 ms late, then none until
		// prompt is set, then every request at once.
		b.svc.Stop()
		var (
			mu       sync.Mutex
			requests int
			prompt   bool
			streams  int
		)
		b.h.SetStreamHandler(protocol.PingProtocolID, func(s network.Stream) {
			defer s.Close()
			mu.Lock()
			streams++
			mu.Unlock()
			r := bufio.NewReader(s)
			for {
				if _, err := protocol.ReadFrame(r, protocol.MaxPingSize); err != nil {
					s.Reset()
					return
				}
				mu.Lock()
				requests++
				first, now := requests == 1, prompt
				mu.Unlock()
				switch {
				case first:
					time.Sleep(600 * time.Millisecond) // the slow target
				case !now:
					continue
				}
				body, _ := json.Marshal(protocol.Ack{OK: true, Seq: 7})
				if err := protocol.WriteFrame(s, body); err != nil {
					return
				}
			}
		})
		probe := func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
			defer cancel()
			return a.svc.Ping(ctx, b.h.ID())
		}
		if err := probe(); err == nil {
			t.Fatal("a probe answered after its deadline succeeded")
		}
		if err := probe(); err == nil {
			t.Fatal("a probe the target never answered succeeded (the previous probe's late answer taken for its own)")
		}
		time.Sleep(time.Second) // the late answer has come and gone
		mu.Lock()
		prompt = true
		mu.Unlock()
		for i := range 3 {
			if err := probe(); err != nil {
				t.Fatalf("probe %d after the target recovered: %v", i, err)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		// One stream for the late probe, one for the unanswered one, one
		// kept for the three that succeeded.
		if streams != 3 {
			t.Fatalf("%d streams opened, want 3 (a failed probe's stream is not reused; a good one is)", streams)
		}
	})
}

// rawPingStream opens a ping stream from a to b, for tests that write
// frames by hand.
func rawPingStream(t *testing.T, a, b *mirror) network.Stream {
	t.Helper()
	a.h.Peerstore().AddAddrs(b.h.ID(), b.h.Addrs(), time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s, err := a.h.NewStream(ctx, b.h.ID(), protocol.PingProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestMalformedPingCounted: a request that does not decode is refused and
// counted.
func TestMalformedPingCounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ms := newMirrors(t, 2)
		a, b := ms[0], ms[1]
		s := rawPingStream(t, a, b)
		_ = protocol.WriteFrame(s, []byte("{not json"))
		_ = s.CloseWrite()
		buf := make([]byte, 16)
		if _, err := s.Read(buf); err == nil {
			t.Fatal("a malformed request got an answer")
		}
		s.Close()
		if b.badCount(swimp2p.ReasonMalformed) != 1 {
			t.Fatalf("malformed requests counted: %d, want 1", b.badCount(swimp2p.ReasonMalformed))
		}
	})
}

func TestConfigValidate(t *testing.T) {
	if _, err := swimp2p.New(swimp2p.Config{}); !errors.Is(err, swimp2p.ErrConfig) {
		t.Fatalf("empty config: %v, want ErrConfig", err)
	}
}
