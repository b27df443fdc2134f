package node

import (
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
)

// TestJoinerSeesChangeMadeBeforeItsMeshFormed: a mirror that joins
// through one peer is outside every gossipsub mesh until the next
// heartbeat grafts it, and nobody sends it IHAVE for what it missed (IHAVE
// goes to peers outside the mesh, in the one heartbeat after a message
// arrived, and by then the joiner is in the mesh). A mirror far from the
// joiner's peer that changes its holdings in that window is still seen
// holding the new bundle by the joiner within two heartbeats, not at its
// next refresh: the joiner syncs once more when its mesh forms.
//
// With gossipsub's parameters as mirrors run them, a peer that connected
// to the joiner after its mesh formed (a probe) sometimes sends it IHAVE
// for the change, and without the catch-up sync about half the runs still
// pass; with IHAVE off (Dlazy 0) only meshes and syncs carry statements,
// and without the catch-up sync every run fails.
func TestJoinerSeesChangeMadeBeforeItsMeshFormed(t *testing.T) {
	t.Run("mirrors' gossip parameters", func(t *testing.T) {
		inBubble(t, func(t *testing.T) { testJoinerSeesChangeMadeBeforeItsMeshFormed(t, nil) })
	})
	t.Run("no IHAVE", func(t *testing.T) {
		inBubble(t, func(t *testing.T) {
			testJoinerSeesChangeMadeBeforeItsMeshFormed(t, func(p *pubsub.GossipSubParams) { p.Dlazy = 0 })
		})
	})
}

func testJoinerSeesChangeMadeBeforeItsMeshFormed(t *testing.T, tune func(*pubsub.GossipSubParams)) {
	// Every mirror's gossipsub heartbeat comes 100 ms after it started,
	// then every second; in virtual time t0 fixes their phases.
	t0 := time.Now()
	atPhase := func(p time.Duration) {
		time.Sleep((p - time.Since(t0)%time.Second + time.Second) % time.Second)
	}
	c := newSimCluster(t, 10*time.Millisecond)
	if tune != nil {
		c.opts = append(c.opts, func(o *options) { o.tuneGossip = tune })
	}
	const n = 8
	for range n {
		c.add()
	}
	for i := range n {
		c.connect(c.nodes[i], c.nodes[(i+1)%n])
	}
	hb := c.nodes[0].prof.Heartbeat
	if hb != time.Second {
		t.Fatalf("the test assumes a heartbeat of a second, as gossipsub's (lan profile has %s)", hb)
	}
	waitFor(t, c.nodes[0].prof.RefreshMin+20*hb, "every view holds every mirror alive", func() (bool, string) { return allSee(c.nodes, alive(c.nodes)) })
	// Let the last statements' rate limits pass, as on a network that has
	// been up a while.
	time.Sleep(2 * hb)

	// The joiner starts at phase 900 ms (its gossipsub heartbeats come at
	// phase 0) and connects at phase 150 ms, just after the cluster's
	// heartbeats: its mesh forms at its own heartbeat 850 ms later.
	atPhase(900 * time.Millisecond)
	joiner := c.add()
	atPhase(150 * time.Millisecond)
	via := c.nodes[0]
	c.connect(joiner, via)
	waitFor(t, hb/2, "the joiner's first sync", func() (bool, string) {
		joiner.mu.Lock()
		defer joiner.mu.Unlock()
		return !joiner.lastSync.IsZero(), "not synced yet"
	})
	if ok, detail := allSee([]*Node{joiner}, alive(c.nodes)); !ok {
		t.Fatalf("after its first sync: %s", detail)
	}

	// In the window, the mirror opposite the joiner's peer on the ring
	// changes its holdings.
	a := c.nodes[n/2]
	start := time.Now()
	res := publish(t, a, writeTree(t))
	root, err := cid.Decode(res.CID)
	if err != nil {
		t.Fatal(err)
	}
	if since := time.Since(t0) % time.Second; since > 900*time.Millisecond || since < 150*time.Millisecond {
		t.Fatalf("the change was made at phase %s, after the joiner's heartbeat", since)
	}
	waitFor(t, 2*hb, "the joiner sees the new bundle held", func() (bool, string) { return seenHolding([]*Node{joiner}, a, root) })
	t.Logf("the joiner saw the change %s after it was made (virtual time)", time.Since(start))
}
