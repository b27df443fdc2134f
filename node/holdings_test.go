package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	dto "github.com/prometheus/client_model/go"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/holdings"
	"github.com/mirrornet/mirrornet/protocol"
)

// seenHolding reports whether every node but holder sees holder holding c.
func seenHolding(nodes []*Node, holder *Node, c cid.Cid) (bool, string) {
	for _, o := range nodes {
		if o == holder {
			continue
		}
		m, ok := o.view.Mirror(holder.ID(), o.clock())
		if !ok {
			return false, o.ID().ShortString() + " does not know the holder"
		}
		if !slices.Contains(m.Bundles, c.String()) {
			return false, fmt.Sprintf("%s sees %s holding %d bundles (digest %.12s)", o.ID().ShortString(), holder.ID().ShortString(), len(m.Bundles), m.Liveness.Holdings)
		}
	}
	return true, ""
}

// TestHoldingsDigestChangeSeenWithinTwoHeartbeats: mirrors name what they hold
// by digest only; when a mirror's holdings change, every other mirror sees
// it holding the new bundle within two heartbeats (it publishes a
// statement with the new digest at once, and each receiver pulls the
// signed list from the peer that forwarded it or from the mirror).
func TestHoldingsDigestChangeSeenWithinTwoHeartbeats(t *testing.T) {
	inBubble(t, testHoldingsDigestChangeSeenWithinTwoHeartbeats)
}

func testHoldingsDigestChangeSeenWithinTwoHeartbeats(t *testing.T) {
	c := newSimCluster(t, 10*time.Millisecond)
	c.opts = append(c.opts, withInlineHoldings(0))
	const n = 8
	for range n {
		c.add()
	}
	for i := range n {
		c.connect(c.nodes[i], c.nodes[(i+1)%n])
	}
	hb := c.nodes[0].prof.Heartbeat
	waitFor(t, c.nodes[0].prof.RefreshMin+20*hb, "every view holds every mirror alive", func() (bool, string) { return allSee(c.nodes, alive(c.nodes)) })

	a := c.nodes[3]
	for round := range 2 {
		// Let the last statement's rate limit pass, as a mirror that has
		// been up a while would have.
		time.Sleep(2 * hb)
		dir := writeTree(t)
		if err := os.WriteFile(filepath.Join(dir, "round.txt"), []byte(strconv.Itoa(round)), 0o644); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		res := publish(t, a, dir)
		root, err := cid.Decode(res.CID)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 2*hb, "every mirror sees the new bundle held", func() (bool, string) { return seenHolding(c.nodes, a, root) })
		took := time.Since(start)
		if took > 2*hb {
			t.Fatalf("round %d: seen after %s, want within two heartbeats (%s)", round, took, 2*hb)
		}
		t.Logf("round %d: every mirror saw the new bundle held %s after the import began (virtual time)", round, took)
		m, _ := c.nodes[0].view.Mirror(a.ID(), c.nodes[0].clock())
		if m.Liveness.Inline() || m.Liveness.HoldingsCount != len(m.Bundles) {
			t.Fatalf("statement lists %d bundles inline, counts %d, holdings %d", len(m.Liveness.Bundles), m.Liveness.HoldingsCount, len(m.Bundles))
		}
	}
}

// badInputCount reads mirrornet_holdings_bad_input_total{reason}.
func badInputCount(t *testing.T, nd *Node, reason string) float64 {
	t.Helper()
	var m dto.Metric
	if err := nd.held.badInput.WithLabelValues(reason).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestForgedHoldingsRefused: a peer that answers a pull with the list
// signed by another key than the subject's, or with another list of the
// subject, is refused with a metric by reason; the asker's view of the
// subject is unchanged (its holdings still pending).
func TestForgedHoldingsRefused(t *testing.T) { inBubble(t, testForgedHoldingsRefused) }

func testForgedHoldingsRefused(t *testing.T) {
	c := newSimCluster(t, 10*time.Millisecond)
	c.opts = append(c.opts, withInlineHoldings(0))
	subject, asker, liar := c.add(), c.add(), c.add()
	c.connect(subject, asker)
	c.connect(liar, asker)
	hb := subject.prof.Heartbeat
	waitFor(t, 20*hb, "all alive", func() (bool, string) { return allSee(c.nodes, alive(c.nodes)) })

	// The subject's next list, which the asker has not heard of: the
	// asker's view of the subject stays what it is.
	set := []string{"bafkreiaaaa", "bafkreibbbb"}
	ref := protocol.HoldingsRef{Peer: subject.ID().String(), Digest: protocol.HoldingsDigest(set)}
	liarKey := liar.key
	forged, err := attest.SignHoldings(liarKey, protocol.Holdings{Peer: liar.ID().String(), Seq: 1, Time: time.Now().UnixMilli(), Bundles: set})
	if err != nil {
		t.Fatal(err)
	}
	other, err := attest.SignHoldings(subject.key, protocol.Holdings{Peer: subject.ID().String(), Seq: 1, Time: time.Now().UnixMilli(), Bundles: set[:1]})
	if err != nil {
		t.Fatal(err)
	}
	liar.host.SetStreamHandler(protocol.HoldingsProtocolID, func(s network.Stream) {
		defer s.Close()
		buf := make([]byte, 1024)
		_, _ = s.Read(buf)
		for _, b := range [][]byte{forged, nil} {
			_ = protocol.WriteFrame(s, b)
		}
	})
	before, _ := asker.view.Mirror(subject.ID(), asker.clock())
	version := asker.view.Version()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if kept, _ := asker.held.svc.Pull(ctx, liar.ID(), []protocol.HoldingsRef{ref}); kept != 0 {
		t.Fatal("kept a list signed by another key")
	}
	liar.host.SetStreamHandler(protocol.HoldingsProtocolID, func(s network.Stream) {
		defer s.Close()
		buf := make([]byte, 1024)
		_, _ = s.Read(buf)
		for _, b := range [][]byte{other, nil} {
			_ = protocol.WriteFrame(s, b)
		}
	})
	if kept, _ := asker.held.svc.Pull(ctx, liar.ID(), []protocol.HoldingsRef{ref}); kept != 0 {
		t.Fatal("kept a list whose digest was not asked for")
	}
	if got := badInputCount(t, asker, holdings.ReasonMismatch); got != 2 {
		t.Fatalf("mirrornet_holdings_bad_input_total{reason=holdings_mismatch} = %v, want 2", got)
	}
	after, _ := asker.view.Mirror(subject.ID(), asker.clock())
	if asker.view.Version() != version || !slices.Equal(before.Bundles, after.Bundles) || before.Seq != after.Seq {
		t.Fatal("refused holdings changed the asker's view")
	}
}

// TestHoldingsOnGossipRejected: a holdings statement published on a
// gossip topic is rejected (they are pulled, never gossiped) and changes
// no view.
func TestHoldingsOnGossipRejected(t *testing.T) { inBubble(t, testHoldingsOnGossipRejected) }

func testHoldingsOnGossipRejected(t *testing.T) {
	c := newSimCluster(t, 10*time.Millisecond)
	a, b := c.add(), c.add()
	c.connect(a, b)
	hb := a.prof.Heartbeat
	waitFor(t, 20*hb, "all alive", func() (bool, string) { return allSee(c.nodes, alive(c.nodes)) })
	raw, err := attest.SignHoldings(a.key, protocol.Holdings{Peer: a.ID().String(), Seq: 1, Time: time.Now().UnixMilli(), Bundles: []string{"bafkreiaaaa"}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := attest.Verify(raw, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	version := b.view.Version()
	if err := b.accept(st); !errors.Is(err, attest.ErrKind) || verdict(err) != attest.Reject {
		t.Fatalf("accept(holdings) = %v", err)
	}
	if b.view.Version() != version {
		t.Fatal("a gossiped holdings statement changed the view")
	}
}

// TestCheckingForChangeSignsNothing: the heartbeat's check whether the
// liveness statement would change (livenessChanged) signs no holdings
// statement; publishing does, before the liveness statement that names
// its digest.
func TestCheckingForChangeSignsNothing(t *testing.T) { inBubble(t, testCheckingForChangeSignsNothing) }

func testCheckingForChangeSignsNothing(t *testing.T) {
	c := newSimCluster(t, 10*time.Millisecond)
	c.opts = append(c.opts, withInlineHoldings(0))
	a := c.add()
	waitFor(t, 5*a.prof.Heartbeat, "a first statement", func() (bool, string) {
		_, ok := a.view.Mirror(a.ID(), a.clock())
		return ok, "none yet"
	})
	// Nothing publishes while the mirror is marked as leaving.
	a.mu.Lock()
	a.left = true
	a.mu.Unlock()
	res := publish(t, a, writeTree(t))
	root, err := cid.Decode(res.CID)
	if err != nil {
		t.Fatal(err)
	}
	before, beforeRef := a.ownHoldingsStatement()
	if !a.livenessChanged() {
		t.Fatal("a new bundle held: the statement would not change")
	}
	if after, afterRef := a.ownHoldingsStatement(); after != before || afterRef != beforeRef {
		t.Fatalf("checking for a change signed a holdings statement (seq %d, was %d)", after.Seq, before.Seq)
	}
	// Let the last statement's rate limit pass (the view ignores a
	// statement within half a heartbeat of the previous).
	time.Sleep(a.prof.Heartbeat)
	a.mu.Lock()
	a.left = false
	a.mu.Unlock()
	a.publishLiveness(protocol.StateUp)
	own, ref := a.ownHoldingsStatement()
	if own == before || !slices.Contains(own.Holdings.Bundles, root.String()) {
		t.Fatal("publishing signed no holdings statement with the new bundle")
	}
	m, _ := a.view.Mirror(a.ID(), a.clock())
	if m.Liveness.Holdings != ref.Digest {
		t.Fatalf("the liveness statement names digest %.12s, the signed holdings %.12s", m.Liveness.Holdings, ref.Digest)
	}
}
