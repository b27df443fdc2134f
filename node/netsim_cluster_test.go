package node

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	dto "github.com/prometheus/client_model/go"

	"github.com/mirrornet/mirrornet/internal/health"
	"github.com/mirrornet/mirrornet/internal/netsim"
)

// simCluster is a cluster of lan-profile nodes on netsim, the simulated
// network of the scale benchmark. Unlike mocknet (which dials a peer
// without knowing any of its addresses), netsim hosts dial like real ones:
// only at addresses their peerstore holds. Run it in a synctest bubble.
type simCluster struct {
	t     *testing.T
	nw    *netsim.Network
	nodes []*Node
	hosts []host.Host
	// opts are added to every node's options.
	opts []Option
}

func newSimCluster(t *testing.T, latency time.Duration) *simCluster {
	t.Helper()
	nw, err := netsim.New(netsim.Config{Latency: latency, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	c := &simCluster{t: t, nw: nw}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			nd.Close()
		}
		for _, h := range c.hosts {
			h.Close()
		}
	})
	return c
}

// add starts one more node, connected to nobody yet.
func (c *simCluster) add() *Node {
	c.t.Helper()
	sk, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		c.t.Fatal(err)
	}
	i := len(c.nodes)
	h, err := c.nw.NewHost(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), sk)
	if err != nil {
		c.t.Fatal(err)
	}
	cfg := testConfig(c.t)
	cfg.Profile = "lan"
	nd, err := New(cfg, append([]Option{WithHost(h, sk), func(o *options) { o.listenAdmin = listenMem }}, c.opts...)...)
	if err != nil {
		h.Close()
		c.t.Fatal(err)
	}
	c.hosts = append(c.hosts, h)
	c.nodes = append(c.nodes, nd)
	return nd
}

// connect dials b from a at b's address.
func (c *simCluster) connect(a, b *Node) {
	c.t.Helper()
	if err := a.host.Connect(context.Background(), peer.AddrInfo{ID: b.ID(), Addrs: b.host.Addrs()}); err != nil {
		c.t.Fatalf("connect %s-%s: %v", a.ID().ShortString(), b.ID().ShortString(), err)
	}
}

// suspicionsSigned is how many suspicions the cluster's failure detectors
// have raised so far.
func (c *simCluster) suspicionsSigned() int {
	total := 0.0
	for _, nd := range c.nodes {
		var m dto.Metric
		if err := nd.live.probes.WithLabelValues("suspect").Write(&m); err != nil {
			c.t.Fatal(err)
		}
		total += m.GetCounter().GetValue()
	}
	return int(total)
}

// TestLateJoinerConvergesOnSimulatedNetwork: on a network where a mirror
// can dial only addresses it knows, a mirror that joins through a single
// peer is held alive by every mirror, and holds every mirror alive, within
// a few heartbeats; and nobody suspects a healthy mirror, though every
// mirror's probes go to mirrors it was never connected to (it learns their
// addresses from their signed statements).
func TestLateJoinerConvergesOnSimulatedNetwork(t *testing.T) {
	inBubble(t, testLateJoinerConvergesOnSimulatedNetwork)
}

func testLateJoinerConvergesOnSimulatedNetwork(t *testing.T) {
	c := newSimCluster(t, 10*time.Millisecond)
	const n = 12
	for range n {
		c.add()
	}
	// A ring: each mirror is connected to its two neighbours only, so
	// probes mostly go to mirrors it has no connection to.
	for i := range n {
		c.connect(c.nodes[i], c.nodes[(i+1)%n])
	}
	hb := c.nodes[0].prof.Heartbeat
	// Each mirror's first statement was published before it had a
	// gossip peer, and a sync on connect gives only the neighbour's
	// view, so a mirror far round the ring may be learnt only from the
	// syncs its probes' new connections bring or from its next refresh
	// (RefreshMin): that bounds the wait, whatever the goroutines' order.
	waitFor(t, c.nodes[0].prof.RefreshMin+20*hb, "every view holds the first mirrors alive", func() (bool, string) { return allSee(c.nodes, alive(c.nodes)) })

	joiner := c.add()
	c.connect(joiner, c.nodes[0])
	took := waitFor(t, 10*hb, "every view, the joiner's too, holds every mirror alive", func() (bool, string) { return allSee(c.nodes, alive(c.nodes)) })
	t.Logf("late joiner converged in %s of virtual time", took)

	// Then a refresh interval and more of probes (each mirror probes
	// every other several times): the views stay complete, and no probe
	// of a healthy mirror ends in a suspicion.
	want := alive(c.nodes)
	end := time.Now().Add(c.nodes[0].prof.RefreshMin + 10*hb)
	for time.Now().Before(end) {
		if ok, detail := allSee(c.nodes, want); !ok {
			t.Fatalf("a view lost a healthy mirror: %s (%d suspicions raised)", detail, c.suspicionsSigned())
		}
		time.Sleep(hb / 4)
	}
	if s := c.suspicionsSigned(); s > 0 {
		t.Fatalf("%d suspicions of healthy mirrors were raised", s)
	}
	for _, nd := range c.nodes {
		now := nd.clock()
		nd.mu.Lock()
		counts := nd.view.Counts(now)
		nd.mu.Unlock()
		if counts[health.StateAlive] != n+1 {
			t.Fatalf("%s: %v, want %d alive", nd.ID().ShortString(), counts, n+1)
		}
	}
}
