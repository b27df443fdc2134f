package node

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"
)

// TestLivenessBytesPerMirror measures, in virtual time (a synctest bubble
// on mocknet, so the figures are the protocol's, whatever the machine's
// load), what liveness costs each mirror per second once every view is
// complete: gossipsub bytes sent and received (statements, suspicions and
// gossipsub's own control traffic) and ping protocol bytes, on the lan
// profile, for each N in MIRRORNET_LIVENESS_N (default 60,120: from 60
// mirrors on, the lan profile's refresh interval grows with N; below, its
// 30 s floor holds, so the cost still grows). It runs only when
// MIRRORNET_LIVENESS_BYTES=1 (docs/BENCHMARKS.md records the figures);
// with more than one N it checks that the cost at the largest N is at most
// 1.5 times that at the smallest.
func TestLivenessBytesPerMirror(t *testing.T) {
	if os.Getenv("MIRRORNET_LIVENESS_BYTES") != "1" {
		t.Skip("set MIRRORNET_LIVENESS_BYTES=1 to measure")
	}
	sizes := []int{60, 120}
	if s := os.Getenv("MIRRORNET_LIVENESS_N"); s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(f)
			if err != nil {
				t.Fatal(err)
			}
			sizes = append(sizes, n)
		}
	}
	window := 120 * time.Second
	var perMirror []float64
	for _, n := range sizes {
		var total float64
		t.Run(fmt.Sprintf("N=%d", n), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				gossip, ping := measureLivenessBytes(t, n, window)
				total = gossip + ping
				t.Logf("N=%d: %.0f B/s gossip + %.0f B/s ping per mirror (sent+received, %s virtual window)", n, gossip, ping, window)
			})
		})
		perMirror = append(perMirror, total)
	}
	if len(perMirror) > 1 {
		first, last := perMirror[0], perMirror[len(perMirror)-1]
		t.Logf("ratio N=%d / N=%d: %.2f", sizes[len(sizes)-1], sizes[0], last/first)
		if last > 1.5*first {
			t.Errorf("per-mirror liveness bytes grow with N: %.0f B/s at N=%d, %.0f at N=%d", first, sizes[0], last, sizes[len(sizes)-1])
		}
	}
}

// measureLivenessBytes starts n lan-profile mirrors on mocknet, each
// connected to its 3 successors on a ring, waits until every view holds
// every mirror alive, and returns the mean gossip and ping bytes per
// mirror per second over window.
func measureLivenessBytes(t *testing.T, n int, window time.Duration) (gossip, ping float64) {
	mn := mocknet.New()
	var nodes []*Node
	defer func() {
		for _, nd := range nodes {
			nd.Close()
		}
		mn.Close()
	}()
	for i := 0; i < n; i++ {
		sk, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		addr, _ := ma.NewMultiaddr(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 10000+i))
		hh, err := mn.AddPeer(sk, addr)
		if err != nil {
			t.Fatal(err)
		}
		cfg := testConfig(t)
		cfg.Profile = "lan"
		nd, err := New(cfg, WithHost(hh, sk), func(o *options) { o.listenAdmin = listenMem })
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, nd)
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	for i := range nodes {
		for j := 1; j <= 3; j++ {
			if _, err := mn.ConnectPeers(nodes[i].ID(), nodes[(i+j)%n].ID()); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, 10*time.Minute, "every view complete", func() (bool, string) { return allSee(nodes, alive(nodes)) })
	// Let the start-up refreshes and joins settle for one refresh interval.
	time.Sleep(nodes[0].prof.RefreshInterval(n))
	count := func() (g, p int64) {
		for _, nd := range nodes {
			g += nd.gossipBytes.sent.Load() + nd.gossipBytes.recv.Load()
			p += nd.live.ping.BytesSent() + nd.live.ping.BytesReceived()
		}
		return g, p
	}
	g0, p0 := count()
	time.Sleep(window) // the measurement window (virtual time)
	g1, p1 := count()
	if ok, detail := allSee(nodes, alive(nodes)); !ok {
		t.Errorf("a view changed during the window: %s", detail)
	}
	secs := window.Seconds() * float64(n)
	return float64(g1-g0) / secs, float64(p1-p0) / secs
}
