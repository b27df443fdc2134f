package node

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/holdings"
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
