package node

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/record"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/health"
	"github.com/mirrornet/mirrornet/protocol"
)

// lanRefresh runs the cluster on the lan profile's refresh interval
// (30 s), far longer than the failure detector needs: a crash known within
// it was found by probes, not by a statement running out.
func lanRefresh(cfg *Config) { cfg.Profile = "lan" }

// A crashed mirror is found by the failure detector (direct and indirect
// probes, then a suspicion broadcast) and declared dead everywhere long
// before its last signed statement runs out; no survivor is ever suspected.
func TestCrashFoundByProbesBeforeTTL(t *testing.T) { inBubble(t, testCrashFoundByProbesBeforeTTL) }

func testCrashFoundByProbesBeforeTTL(t *testing.T) {
	c := newClusterWith(t, 8, lanRefresh)
	c.connectRing(2)
	waitFor(t, 20*time.Second, "all alive", func() (bool, string) { return allSee(c.nodes, alive(c.nodes)) })
	victim := c.nodes[3]
	survivors := append(append([]*Node{}, c.nodes[:3]...), c.nodes[4:]...)
	victim.Close()
	victim.host.Close()
	want := alive(survivors)
	want[victim.ID()] = health.StateDead
	waitFor(t, 60*time.Second, "crashed node dead everywhere", func() (bool, string) { return allSee(survivors, want) })
	for _, n := range survivors {
		now := n.clock()
		n.mu.Lock()
		m, _ := n.view.Mirror(victim.ID(), now)
		_, suspected := n.view.Suspicion(victim.ID())
		n.mu.Unlock()
		if ttl := m.Liveness.TTLDuration(); ttl < 20*time.Second || now.Sub(m.LastSeen) >= ttl {
			t.Errorf("%s: dead %s after the last statement, whose TTL is %s: not found by probes", n.ID().ShortString(), now.Sub(m.LastSeen), ttl)
		}
		if !suspected {
			t.Errorf("%s holds no suspicion of the crashed node", n.ID().ShortString())
		}
		// The per-state gauge is counted when scraped.
		if got := mirrorsGauge(t, n); got[health.StateAlive] != len(survivors) || got[health.StateDead] != 1 {
			t.Errorf("%s: mirrornet_mirrors %v, want %d alive (itself included) and 1 dead", n.ID().ShortString(), got, len(survivors))
		}
	}
}

// mirrorsGauge scrapes n's mirrornet_mirrors gauge by state.
func mirrorsGauge(t testing.TB, n *Node) map[health.State]int {
	t.Helper()
	mfs, err := n.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[health.State]int{}
	for _, mf := range mfs {
		if mf.GetName() != "mirrornet_mirrors" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "state" {
					out[health.State(l.GetValue())] = int(m.GetGauge().GetValue())
				}
			}
		}
	}
	return out
}

// rawPeer is a gossipsub peer without mirrornet's validators: it publishes
// whatever bytes a test gives it, as a malicious peer would.
type rawPeer struct {
	h      host.Host
	topics map[string]*pubsub.Topic
}

func newRawPeer(t *testing.T, c *cluster, connectTo ...*Node) *rawPeer {
	t.Helper()
	h, err := c.mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ps, err := pubsub.NewGossipSub(ctx, h, pubsub.WithFloodPublish(true),
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign), pubsub.WithNoAuthor(),
		pubsub.WithMessageIdFn(func(m *pb.Message) string {
			s := sha256.Sum256(m.Data)
			return string(s[:])
		}))
	if err != nil {
		t.Fatal(err)
	}
	r := &rawPeer{h: h, topics: map[string]*pubsub.Topic{}}
	for _, name := range []string{protocol.TopicLiveness, protocol.TopicSuspicion} {
		tp, err := ps.Join(name)
		if err != nil {
			t.Fatal(err)
		}
		r.topics[name] = tp
	}
	for _, n := range connectTo {
		if _, err := c.mn.ConnectPeers(h.ID(), n.ID()); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// livenessRecord seals any liveness payload, whoever it names.
type livenessRecord struct{ payload []byte }

func (r *livenessRecord) Domain() string                 { return protocol.DomainLiveness }
func (r *livenessRecord) Codec() []byte                  { return []byte(protocol.PayloadLiveness) }
func (r *livenessRecord) MarshalRecord() ([]byte, error) { return r.payload, nil }
func (r *livenessRecord) UnmarshalRecord(b []byte) error { r.payload = b; return nil }

// A suspicion can be answered only by its subject: a "refutation" naming
// the crashed mirror but signed by another key is rejected (counted by
// reason, forwarding peer penalised) and the mirror stays dead everywhere.
func TestRefutationSignedBySomeoneElseIsRejected(t *testing.T) {
	inBubble(t, testRefutationSignedBySomeoneElseIsRejected)
}

func testRefutationSignedBySomeoneElseIsRejected(t *testing.T) {
	c := newClusterWith(t, 5, lanRefresh)
	c.connectRing(2)
	waitFor(t, 20*time.Second, "all alive", func() (bool, string) { return allSee(c.nodes, alive(c.nodes)) })
	victim := c.nodes[4]
	survivors := c.nodes[:4]
	victim.Close()
	victim.host.Close()
	want := alive(survivors)
	want[victim.ID()] = health.StateDead
	waitFor(t, 60*time.Second, "crashed node dead everywhere", func() (bool, string) { return allSee(survivors, want) })

	attacker := newRawPeer(t, c, survivors...)
	sk, _, _ := crypto.GenerateEd25519Key(nil)
	// forge seals a liveness statement naming the victim with the
	// attacker's key (each try new bytes: gossip drops a repeated message).
	try := uint64(0)
	forge := func() []byte {
		try++
		now := survivors[0].clock()
		payload, err := protocol.Encode(&protocol.Liveness{
			Peer: victim.ID().String(), State: protocol.StateUp, Seq: uint64(now.UnixMilli()) + 1000 + try,
			Time: now.UnixMilli(), TTL: time.Minute.Milliseconds(),
		})
		if err != nil {
			t.Fatal(err)
		}
		env, err := record.Seal(&livenessRecord{payload}, sk)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := env.Marshal()
		return raw
	}
	if _, err := attest.Verify(forge(), survivors[0].clock()); attest.Reason(err) != "subject" {
		t.Fatalf("the forged refutation verifies as %v", err)
	}
	before := probeCounter(t, survivors[0], "mirrornet_statements_total", map[string]string{"verdict": "reject", "reason": "subject"})
	// Publish until the first survivor has seen one (the raw peer learns
	// who subscribes within a heartbeat or two).
	waitFor(t, 30*time.Second, "forged refutation received", func() (bool, string) {
		_ = attacker.topics[protocol.TopicLiveness].Publish(context.Background(), forge())
		got := probeCounter(t, survivors[0], "mirrornet_statements_total", map[string]string{"verdict": "reject", "reason": "subject"})
		return got > before, fmt.Sprintf("rejected %v", got)
	})
	if ok, detail := allSee(survivors, want); !ok {
		t.Fatalf("a refutation signed by someone else changed a view: %s", detail)
	}
}

// A false suspicion (a live mirror reported unresponsive) is refuted by
// the subject's own newer statement before it can turn into "dead", and
// every view ends with the subject alive.
func TestFalseSuspicionRefuted(t *testing.T) { inBubble(t, testFalseSuspicionRefuted) }

func testFalseSuspicionRefuted(t *testing.T) {
	c := newClusterWith(t, 5, lanRefresh)
	c.connectRing(2)
	waitFor(t, 20*time.Second, "all alive", func() (bool, string) { return allSee(c.nodes, alive(c.nodes)) })
	accuser, subject := c.nodes[0], c.nodes[2]
	now := accuser.clock()
	accuser.mu.Lock()
	m, _ := accuser.view.Mirror(subject.ID(), now)
	accuser.mu.Unlock()
	raw, err := attest.SignSuspicion(accuser.key, protocol.Suspicion{
		Observer: accuser.ID().String(), Subject: subject.ID().String(), Incarnation: m.Seq, Time: now.UnixMilli(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := accuser.topics[protocol.TopicSuspicion].Publish(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "subject refuted the suspicion everywhere", func() (bool, string) {
		for _, n := range c.nodes {
			now := n.clock()
			n.mu.Lock()
			got, _ := n.view.Mirror(subject.ID(), now)
			n.mu.Unlock()
			if got.Seq <= m.Seq {
				return false, n.ID().ShortString() + " has no newer statement of the subject"
			}
			if got.State == health.StateDead {
				t.Fatalf("%s declared the falsely suspected mirror dead", n.ID().ShortString())
			}
		}
		return true, ""
	})
	if ok, detail := allSee(c.nodes, alive(c.nodes)); !ok {
		t.Fatal(detail)
	}
}

// A peer flooding the ping protocol is cut off at the per-peer rate limit
// (counted by reason), while the mirror keeps answering everyone else and
// nobody's view changes.
func TestPingFloodRateLimited(t *testing.T) { inBubble(t, testPingFloodRateLimited) }

func testPingFloodRateLimited(t *testing.T) {
	c := newClusterWith(t, 3, lanRefresh)
	c.connectRing(1)
	waitFor(t, 20*time.Second, "all alive", func() (bool, string) { return allSee(c.nodes, alive(c.nodes)) })
	target := c.nodes[0]
	attacker := newRawPeer(t, c, target)
	ping := func(from host.Host) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := from.NewStream(ctx, target.ID(), protocol.PingProtocolID)
		if err != nil {
			return err
		}
		defer s.Close()
		body, _ := json.Marshal(protocol.Ping{})
		if err := protocol.WriteFrame(s, body); err != nil {
			return err
		}
		s.CloseWrite()
		raw, err := protocol.ReadFrame(bufio.NewReader(s), protocol.MaxPingSize)
		if err != nil {
			return err
		}
		var ack protocol.Ack
		if err := json.Unmarshal(raw, &ack); err != nil || !ack.OK {
			return fmt.Errorf("ack %s: %v", raw, err)
		}
		return nil
	}
	answered := 0
	for range 200 {
		if ping(attacker.h) == nil {
			answered++
		}
	}
	if answered == 0 || answered > 20 {
		t.Errorf("%d of 200 flooded pings answered, want a burst's worth", answered)
	}
	if v := probeCounter(t, target, "mirrornet_liveness_bad_input_total", map[string]string{"reason": "ping_flood"}); v < 180 {
		t.Errorf("ping_flood counted %v times, want the refused pings", v)
	}
	if err := ping(c.nodes[1].host); err != nil {
		t.Errorf("an honest peer's ping during the flood: %v", err)
	}
	if ok, detail := allSee(c.nodes, alive(c.nodes)); !ok {
		t.Fatalf("the flood changed a view: %s", detail)
	}
}

// A mirror whose holdings change says so at once, not at its next
// refresh: every peer sees it holding the new bundle within two
// heartbeats (virtual time, so this is the protocol's delay, not the
// machine's).
func TestHoldingsChangeSeenWithinTwoHeartbeats(t *testing.T) {
	inBubble(t, testHoldingsChangeSeenWithinTwoHeartbeats)
}

func testHoldingsChangeSeenWithinTwoHeartbeats(t *testing.T) {
	c := newClusterWith(t, 6, lanRefresh)
	c.connectRing(2)
	waitFor(t, 20*time.Second, "all alive", func() (bool, string) { return allSee(c.nodes, alive(c.nodes)) })
	holder := c.nodes[0]
	start := time.Now()
	res := publish(t, holder, writeTree(t))
	root, err := cid.Decode(res.CID)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "every peer sees the new bundle", func() (bool, string) { return announces(c.nodes, holder, root) })
	if took, limit := time.Since(start), 2*c.prof.Heartbeat; took > limit {
		t.Fatalf("peers saw the holdings change after %s, want within two heartbeats (%s)", took, limit)
	}
}
