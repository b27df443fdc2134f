package adversary_test

import (
	"crypto/sha256"
	"sync"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pprotocol "github.com/libp2p/go-libp2p/core/protocol"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/protocol"
)

// rawGossip is a gossipsub peer with no validator: an attacker that
// publishes whatever it likes, or an observer that counts what arrives.
type rawGossip struct {
	ps    *pubsub.PubSub
	topic *pubsub.Topic

	mu    sync.Mutex
	cond  *sync.Cond
	from  map[peer.ID]int // statements received, by (unverified) signer
	extra map[string]*pubsub.Topic

	// outMu guards out alone: pubsub's event loop takes it (in the tracer
	// and in ready), while mu is held across calls into that loop (Join).
	outMu sync.Mutex
	out   map[peer.ID]bool // peers it has an outbound gossip stream to
}

// ready is the publish readiness of the attacker, whose only peer is the
// victim: the victim is in the topic and the attacker can send to it.
// gossipsub learns a peer's subscriptions from the peer's own stream, and
// may do so before it has set up its own way to that peer; a message
// published then is dropped ("no send queue for peer").
func (g *rawGossip) ready(rt pubsub.PubSubRouter, topic string) (bool, error) {
	if !rt.EnoughPeers(topic, 1) {
		return false, nil
	}
	g.outMu.Lock()
	defer g.outMu.Unlock()
	return len(g.out) > 0, nil
}

// streamTracer keeps rawGossip.out (pubsub calls it from its event loop).
type streamTracer struct{ g *rawGossip }

func (tr streamTracer) OnNewOutboundStream(p peer.ID, _ libp2pprotocol.ID) {
	tr.g.outMu.Lock()
	tr.g.out[p] = true
	tr.g.outMu.Unlock()
}

func (tr streamTracer) OnClosedOutboundStream(p peer.ID) {
	tr.g.outMu.Lock()
	delete(tr.g.out, p)
	tr.g.outMu.Unlock()
}

func (streamTracer) Join(string)                                          {}
func (streamTracer) Leave(string)                                         {}
func (streamTracer) Graft(peer.ID, string)                                {}
func (streamTracer) Prune(peer.ID, string)                                {}
func (streamTracer) ValidateMessage(*pubsub.Message)                      {}
func (streamTracer) DeliverMessage(*pubsub.Message)                       {}
func (streamTracer) RejectMessage(*pubsub.Message, string)                {}
func (streamTracer) DuplicateMessage(*pubsub.Message)                     {}
func (streamTracer) ThrottlePeer(peer.ID)                                 {}
func (streamTracer) RecvRPC(*pubsub.RPC)                                  {}
func (streamTracer) SendRPC(*pubsub.RPC, peer.ID)                         {}
func (streamTracer) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
func (streamTracer) DropRPC(*pubsub.RPC, peer.ID)                         {}
func (streamTracer) UndeliverableMessage(*pubsub.Message)                 {}

func newRawGossip(t testing.TB, h host.Host) *rawGossip {
	t.Helper()
	ctx := ctxFor(t, 10*time.Minute)
	g := &rawGossip{from: map[peer.ID]int{}, out: map[peer.ID]bool{}}
	g.cond = sync.NewCond(&g.mu)
	ps, err := pubsub.NewGossipSub(ctx, h,
		pubsub.WithRawTracer(streamTracer{g}),
		pubsub.WithFloodPublish(true),
		pubsub.WithMessageIdFn(func(m *pb.Message) string { h := sha256.Sum256(m.Data); return string(h[:]) }),
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
		pubsub.WithNoAuthor(),
		pubsub.WithMaxMessageSize(1<<20),
	)
	if err != nil {
		t.Fatal(err)
	}
	top, err := ps.Join(protocol.TopicLiveness)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := top.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	g.ps, g.topic = ps, top
	go func() {
		for {
			m, err := sub.Next(ctx)
			if err != nil {
				return
			}
			if id, _, err := attest.Peek(m.Data); err == nil {
				g.mu.Lock()
				g.from[id]++
				g.cond.Broadcast()
				g.mu.Unlock()
			}
		}
	}()
	return g
}

func (g *rawGossip) count(id peer.ID) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.from[id]
}

// waitFrom waits until a statement of id arrived; the deadline only
// guards against a hang.
func (g *rawGossip) waitFrom(t testing.TB, id peer.ID, within time.Duration) {
	t.Helper()
	if !g.arrived(id, within) {
		t.Fatalf("no statement of %s arrived within %s", id, within)
	}
}

// arrived reports whether a statement of id arrives within the given time.
func (g *rawGossip) arrived(id peer.ID, within time.Duration) bool {
	deadline := time.Now().Add(within)
	stop := time.AfterFunc(within, func() { g.mu.Lock(); g.cond.Broadcast(); g.mu.Unlock() })
	defer stop.Stop()
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.from[id] == 0 {
		if time.Now().After(deadline) {
			return false
		}
		g.cond.Wait()
	}
	return true
}

// One key publishing a thousand statements a second: the victim accepts,
// and so forwards, at most two per heartbeat (one per half heartbeat), and
// counts the rest as rate-limited.
func TestFloodOneSignerIsRateLimited(t *testing.T) {
	mn := mocknet.New()
	t.Cleanup(func() { mn.Close() })
	clock := newFakeClock()
	v := newVictim(t, mn, clock.Now, "", nil)
	ah, _ := newHost(t, mn)
	oh, _ := newHost(t, mn)
	attacker, observer := newRawGossip(t, ah), newRawGossip(t, oh)
	for _, h := range []host.Host{ah, oh} {
		if _, err := mn.ConnectPeers(h.ID(), v.ID()); err != nil {
			t.Fatal(err)
		}
	}

	publish := func(raw []byte) {
		t.Helper()
		if err := attacker.topic.Publish(ctxFor(t, time.Minute), raw, pubsub.WithReadiness(attacker.ready)); err != nil {
			t.Fatal(err)
		}
	}
	send := func(k throwaway, n int, raw []byte) {
		t.Helper()
		publish(raw)
		v.verdicts.waitJudged(t, k.id, n, time.Minute)
	}

	// First the path attacker → victim → observer must exist. Gossipsub
	// forwards a message only to the mesh peers it has when the message
	// arrives, and announces it by IHAVE only to peers outside the mesh:
	// a statement that reaches the victim before the observer's
	// subscription, and the observer joins the mesh right after, never
	// reaches the observer. So statements of fresh keys go out until one
	// arrives; the test proper starts once the path works.
	pathDeadline := time.Now().Add(2 * time.Minute)
	for {
		marker := newThrowaway(t)
		publish(marker.liveness(t, 1, clock.Now(), "", false))
		if observer.arrived(marker.id, 2*time.Second) {
			break
		}
		if time.Now().After(pathDeadline) {
			t.Fatal("no statement reached the observer through the victim within 2m")
		}
	}

	spammer := newThrowaway(t)
	const (
		perSecond = 1000
		seconds   = 3
	)
	start := clock.Now()
	for i := range perSecond * seconds {
		now := clock.Advance(time.Second / perSecond)
		send(spammer, i+1, spammer.liveness(t, uint64(i+1), now, "", false))
	}
	elapsed := clock.Now().Sub(start)
	heartbeats := int(elapsed/time.Second) + 1
	accepted := v.verdicts.acceptedFrom(spammer.id)
	if accepted > 2*heartbeats || accepted == 0 {
		t.Fatalf("%d of %d statements accepted over %s (%d heartbeats): want 1..%d", accepted, perSecond*seconds, elapsed, heartbeats, 2*heartbeats)
	}

	// Everything the victim forwarded has reached the observer once a later
	// statement (of another fresh key) has.
	after := newThrowaway(t)
	send(after, 1, after.liveness(t, 1, clock.Advance(time.Second), "", false))
	observer.waitFrom(t, after.id, 30*time.Second)
	if got := observer.count(spammer.id); got > accepted {
		t.Fatalf("observer received %d of the spammer's statements, victim accepted %d", got, accepted)
	}
	if got := v.refusals(t)["rate_limited"]; got < float64(perSecond*seconds-accepted) {
		t.Fatalf("metrics count %v rate-limited statements, want %d", got, perSecond*seconds-accepted)
	}
	t.Logf("spammer: %d sent in %s of (virtual) time, %d accepted, %d forwarded to the observer", perSecond*seconds, elapsed, accepted, observer.count(spammer.id))
}
