package node

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/health"
	"github.com/mirrornet/mirrornet/internal/holdings"
	"github.com/mirrornet/mirrornet/internal/probe/probetest"
	"github.com/mirrornet/mirrornet/protocol"
)

// TestSyncHoldingsBytesBounded: a peer whose sync response carries more
// than protocol.MaxSyncHoldingsBytes of holdings-sized frames has its
// stream reset before we decode the rest, counted by reason.
func TestSyncHoldingsBytesBounded(t *testing.T) {
	c := newCluster(t, 1)
	nd := c.nodes[0]
	h, err := c.mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	frames := protocol.MaxSyncHoldingsBytes/protocol.MaxHoldingsSize + 4
	h.SetStreamHandler(protocol.SyncProtocolID, func(s network.Stream) {
		defer s.Close()
		if _, err := protocol.ReadFrame(bufio.NewReader(s), protocol.MaxSyncRequestSize); err != nil {
			s.Reset()
			return
		}
		junk := bytes.Repeat([]byte{'x'}, protocol.MaxHoldingsSize)
		w := bufio.NewWriter(s)
		for i := 0; i < frames; i++ {
			if protocol.WriteFrame(w, junk) != nil {
				return
			}
		}
		_ = protocol.WriteFrame(w, nil)
		_ = w.Flush()
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = nd.syncWith(ctx, h.ID())
	if !errors.Is(err, errSyncOversize) {
		t.Fatalf("sync with %d frames of %d bytes: err %v, want %v", frames, protocol.MaxHoldingsSize, err, errSyncOversize)
	}
	if got := badInputCount(t, nd, holdings.ReasonSyncOversize); got < 1 {
		t.Fatalf("mirrornet_holdings_bad_input_total{reason=%s} = %v, want >= 1", holdings.ReasonSyncOversize, got)
	}
}

// TestSyncSkipsHeldStatements: a sync response that repeats, byte for
// byte, a liveness statement the view holds costs no signature check and
// is refused as a replay; a statement that differs is verified.
func TestSyncSkipsHeldStatements(t *testing.T) {
	c := newCluster(t, 1)
	nd := c.nodes[0]
	m, ok := nd.view.Mirror(nd.ID(), nd.clock())
	if !ok {
		t.Fatal("the node's view does not hold its own statement")
	}
	verified := 0
	orig := syncVerify
	syncVerify = func(raw []byte, now time.Time) (*attest.Statement, error) {
		verified++
		return orig(raw, now)
	}
	t.Cleanup(func() { syncVerify = orig })
	if ok, kind := nd.applySynced(m.Raw, nd.ID()); ok || kind != attest.KindLiveness {
		t.Fatalf("applySynced(held statement) = %v, %q; want false, %q", ok, kind, attest.KindLiveness)
	}
	if verified != 0 {
		t.Fatalf("a held statement was verified %d times, want 0", verified)
	}
	other := append([]byte(nil), m.Raw...)
	other[len(other)-1] ^= 1
	if ok, _ := nd.applySynced(other, nd.ID()); ok {
		t.Fatal("a statement with a damaged signature was applied")
	}
	if verified != 1 {
		t.Fatalf("a statement that differs from the held one was verified %d times, want 1", verified)
	}
}

// TestSyncRelaySlotsOnlyForRepublished: a sync exchange republishes at
// most maxRelayPerSync statements, and only liveness statements and
// suspicions take those slots: a response that opens with more valid
// statements of other kinds (probe results here) than there are slots
// still has its liveness statements passed on over gossip.
func TestSyncRelaySlotsOnlyForRepublished(t *testing.T) {
	inBubble(t, testSyncRelaySlotsOnlyForRepublished)
}

func testSyncRelaySlotsOnlyForRepublished(t *testing.T) {
	c := newCluster(t, 2)
	c.connectRing(1)
	a, b := c.nodes[0], c.nodes[1]
	waitFor(t, 20*c.prof.Heartbeat, "both alive", func() (bool, string) { return allSee(c.nodes, alive(c.nodes)) })

	now := a.clock()
	var frames [][]byte
	for i := range maxRelayPerSync + 6 {
		sk, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		obs, _ := peer.IDFromPrivateKey(sk)
		res := probetest.Result(t, obs, probetest.Spec{Target: b.ID(), Bundle: "bafkqaaa", Outcome: protocol.OutcomeFail,
			At: now, EpochLength: time.Hour, Seq: uint64(i + 1)})
		raw, err := attest.SignProbe(sk, res)
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, raw)
	}
	// A mirror only the responder knows of.
	xKey, _, _ := crypto.GenerateEd25519Key(nil)
	x, _ := peer.IDFromPrivateKey(xKey)
	live, err := attest.SignLiveness(xKey, protocol.Liveness{Peer: x.String(), State: protocol.StateUp, Seq: 1, Time: now.UnixMilli(),
		TTL: time.Minute.Milliseconds(), Addrs: []string{}, Bundles: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	frames = append(frames, live)

	h, err := c.mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	h.SetStreamHandler(protocol.SyncProtocolID, func(s network.Stream) {
		defer s.Close()
		if _, err := protocol.ReadFrame(bufio.NewReader(s), protocol.MaxSyncRequestSize); err != nil {
			s.Reset()
			return
		}
		_ = writeStatements(s, frames)
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fresh, err := a.syncWith(ctx, h.ID())
	if err != nil {
		t.Fatal(err)
	}
	if fresh <= maxRelayPerSync {
		t.Fatalf("%d statements taken from the response, want more than the %d relay slots", fresh, maxRelayPerSync)
	}
	waitFor(t, 5*c.prof.Heartbeat, "b learns the synced mirror over gossip", func() (bool, string) {
		m, ok := b.view.Mirror(x, b.clock())
		return ok && m.State == health.StateAlive, "b does not hold it alive"
	})
}
