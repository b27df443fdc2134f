package replicate

import (
	"context"
	"testing"
	"time"

	bsmsg "github.com/ipfs/boxo/bitswap/message"
	pb "github.com/ipfs/boxo/bitswap/message/pb"
	"github.com/ipfs/boxo/bitswap/network/bsnet"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	"github.com/libp2p/go-msgio"
	mh "github.com/multiformats/go-multihash"

	"github.com/mirrornet/mirrornet/internal/store"
)

// newNodeWith is newNode with a configuration.
func newNodeWith(t testing.TB, mn mocknet.Mocknet, cfg Config) *node {
	t.Helper()
	h, err := mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := &finder{}
	r, err := New(h, st, f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Close()
		h.Close()
		st.Close()
	})
	return &node{h: h, st: st, r: r, f: f, dir: dir}
}

// wirePeer speaks bitswap 1.2 by hand, message by message, so a test can
// replay exactly what a client sent.
type wirePeer struct {
	h      host.Host
	to     peer.ID
	blocks chan cid.Cid
	// out is the one stream the peer's messages go out on, as a bitswap
	// client's do: messages on separate streams may be handled in any
	// order, and a cancel overtaken by the want after it is another test.
	out network.Stream
}

func newWirePeer(t *testing.T, mn mocknet.Mocknet, to peer.ID) *wirePeer {
	t.Helper()
	h, err := mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	w := &wirePeer{h: h, to: to, blocks: make(chan cid.Cid, 1024)}
	h.SetStreamHandler(bsnet.ProtocolBitswap, func(s network.Stream) {
		defer s.Close()
		r := msgio.NewVarintReaderSize(s, network.MessageSizeMax)
		for {
			m, _, err := bsmsg.FromMsgReader(r)
			if err != nil {
				return
			}
			for _, b := range m.Blocks() {
				w.blocks <- b.Cid()
			}
		}
	})
	return w
}

func (w *wirePeer) send(t *testing.T, m bsmsg.BitSwapMessage) {
	t.Helper()
	if w.out == nil {
		s, err := w.h.NewStream(t.Context(), w.to, bsnet.ProtocolBitswap)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		w.out = s
	}
	if err := m.ToNetV1(w.out); err != nil {
		t.Fatal(err)
	}
}

func (w *wirePeer) wantBlock(t *testing.T, c cid.Cid, prio int32) {
	m := bsmsg.New(false)
	m.AddEntry(c, prio, pb.Message_Wantlist_Block, true)
	w.send(t, m)
}

func (w *wirePeer) cancel(t *testing.T, c cid.Cid) {
	m := bsmsg.New(false)
	m.Cancel(c)
	w.send(t, m)
}

// expect waits for block c; the deadline only guards against a hang.
func (w *wirePeer) expect(t *testing.T, c cid.Cid, what string) {
	t.Helper()
	deadline := time.After(long)
	for {
		select {
		case got := <-w.blocks:
			if got == c {
				return
			}
		case <-deadline:
			t.Fatalf("%s: block %s never arrived", what, c)
		}
	}
}

// TestServeResendsABlockTheClientStillWants replays, on the wire, how
// kubo v0.43.1 (boxo v0.43.0's client) came to wait ten minutes for a
// block this mirror holds, found by running its client against a mirror
// with debug logs:
//
//  1. The client wants X (want-block); the mirror sends X; the client
//     cancels X.
//  2. Its session, which had just seen simulated DONT_HAVEs from the busy
//     mirror, marks the mirror available again and sends want-block X
//     once more, after the cancel.
//  3. The mirror sends X again. The client drops it (no session wants it)
//     without cancelling, and its message queue never rebroadcasts a want
//     that got an answer.
//  4. After `ipfs repo gc` the next pin needs X: the client believes its
//     want-block is still outstanding and sends nothing at all. Only X
//     arriving again, or a reconnect, unblocks it.
//
// The mirror cannot see step 4; it can see a delivered want the client
// never cancelled, from a client that does cancel what it receives. So it
// offers the block again (with backoff) while the client is active.
func TestServeResendsABlockTheClientStillWants(t *testing.T) {
	mn := mocknet.New()
	t.Cleanup(func() { mn.Close() })
	cfg := DefaultConfig()
	cfg.Serve.ResendAfter = 20 * time.Millisecond
	m := newNodeWith(t, mn, cfg)
	res := publish(t, m, makeTree(t, 1))
	w := newWirePeer(t, mn, m.h.ID())
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := mn.ConnectPeers(w.h.ID(), m.h.ID()); err != nil {
		t.Fatal(err)
	}
	x := res.Root

	w.wantBlock(t, x, 100)
	w.expect(t, x, "first want")
	w.cancel(t, x)
	w.wantBlock(t, x, 99) // the session's late want-block
	w.expect(t, x, "the late want-block")

	// The client now silently needs X again.
	w.expect(t, x, "the want the client never cancelled")
	if st := m.r.ServeStats(); len(st) != 1 || st[0].WantsOpen != 1 || st[0].BlocksResent < 1 {
		t.Errorf("serve stats %+v, want the open want and a re-send", st)
	}
	w.cancel(t, x)
}

// TestServeStatsShowOpenWants: per-peer state for a peer whose want the
// mirror cannot answer yet.
func TestServeStatsShowOpenWants(t *testing.T) {
	mn := mocknet.New()
	t.Cleanup(func() { mn.Close() })
	m := newNodeWith(t, mn, DefaultConfig())
	w := newWirePeer(t, mn, m.h.ID())
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := mn.ConnectPeers(w.h.ID(), m.h.ID()); err != nil {
		t.Fatal(err)
	}
	missing := testRawCid(t, "not here")
	w.wantBlock(t, missing, 1)
	ctx, cancel := context.WithTimeout(t.Context(), long)
	defer cancel()
	for {
		st := m.r.ServeStats()
		if len(st) == 1 && st[0].Peer == w.h.ID() && st[0].WantsOpen == 1 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("serve stats %+v", st)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func testRawCid(t *testing.T, s string) cid.Cid {
	t.Helper()
	c, err := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}.Sum([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return c
}
