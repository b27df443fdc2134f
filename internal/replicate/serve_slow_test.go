package replicate

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/boxo/bitswap"
	bsnet "github.com/ipfs/boxo/bitswap/network/bsnet"
	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/ipld/merkledag"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/mirrornet/mirrornet/internal/bundle"
	"github.com/mirrornet/mirrornet/internal/bundle/verify"
	"github.com/mirrornet/mirrornet/internal/store"
)

// loopHost is a libp2p host on loopback TCP: real flow control, so a peer
// that stops reading really blocks its sender.
func loopHost(t *testing.T) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// gateHost lets a stock bitswap read only the first n bytes of what it
// is sent, over all its streams: after that every read waits until the
// connection is closed, as with a peer that stopped reading (its process
// hung, or it wants to tie up the server).
type gateHost struct {
	host.Host
	mu    sync.Mutex
	n     int
	held  []network.Stream
	heldC chan struct{} // a read was held
}

func (g *gateHost) SetStreamHandler(pid protocol.ID, handler network.StreamHandler) {
	g.Host.SetStreamHandler(pid, func(s network.Stream) { handler(&gatedStream{Stream: s, g: g}) })
}

type gatedStream struct {
	network.Stream
	g    *gateHost
	held bool
}

func (s *gatedStream) Read(b []byte) (int, error) {
	g := s.g
	g.mu.Lock()
	if g.n > 0 {
		b = b[:min(len(b), g.n)]
		g.mu.Unlock()
		k, err := s.Stream.Read(b)
		g.mu.Lock()
		g.n -= k
		g.mu.Unlock()
		return k, err
	}
	if !s.held {
		s.held = true
		g.held = append(g.held, s.Stream)
		select {
		case g.heldC <- struct{}{}:
		default:
		}
	}
	g.mu.Unlock()
	// a hung reader: nothing is read until the mirror closes the
	// connection
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !s.Stream.Conn().IsClosed() {
		<-tick.C
	}
	return 0, io.ErrClosedPipe
}

// stockClient is a stock boxo bitswap client on h (see stockOptions).
func stockClient(t *testing.T, h host.Host) (*bitswap.Bitswap, blockstore.Blockstore) {
	t.Helper()
	bb := blockstore.NewBlockstore(dssync.MutexWrap(datastore.NewMapDatastore()))
	bs := bitswap.New(context.Background(), bsnet.NewFromIpfsHost(h), nil, bb, stockOptions...)
	t.Cleanup(func() { bs.Close() })
	return bs, bb
}

// TestServeCutsOffAPeerThatStopsReading: a stock bitswap client asks for
// thousands of blocks, among them a bundle of 1 MiB blocks, and then reads
// nothing more. The mirror's sends to it stall; after StallTimeout without
// progress the mirror closes the connection (freeing every server worker
// blocked on it); when it stalls again after reconnecting it is refused
// blocks for a while; another peer fetching at the same time gets the
// whole bundle.
func TestServeCutsOffAPeerThatStopsReading(t *testing.T) {
	cfg := DefaultConfig()
	// The default stall timeout: a peer that never reads is cut off all
	// the same, and a reading one starved of CPU for a few seconds on a
	// saturated machine (as in .ci/flaky) is not taken for a slow reader.
	cfg.Serve.StallTimeout = 10 * time.Second
	// Both stalls fall within the cool-down however slow the machine.
	cfg.Serve.Cooldown = time.Hour
	mh := loopHost(t)
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(mh, st, &finder{}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); st.Close() })
	m := &node{h: mh, st: st, r: r}
	dir := filepath.Join(t.TempDir(), "big")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "blob"), seeded(3, 48<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	res := publish(t, m, dir)
	mirror := peer.AddrInfo{ID: mh.ID(), Addrs: mh.Addrs()}

	// The bad peer reads the first 16 KiB of answers, then nothing.
	gate := &gateHost{Host: loopHost(t), n: 16 << 10, heldC: make(chan struct{}, 1)}
	bad, badStore := stockClient(t, gate)
	if err := gate.Connect(t.Context(), mirror); err != nil {
		t.Fatal(err)
	}
	badCtx, badCancel := context.WithCancel(t.Context())
	defer badCancel()
	// It also wants thousands of blocks nobody has.
	var unknown []cid.Cid
	for i := range 3000 {
		unknown = append(unknown, testRawCid(t, fmt.Sprint("unknown ", i)))
	}
	if _, err := bad.GetBlocks(badCtx, unknown); err != nil {
		t.Fatal(err)
	}
	badDone := make(chan error, 1)
	go func() {
		badDone <- merkledag.FetchGraph(badCtx, res.Root, merkledag.NewDAGService(blockservice.New(badStore, bad)))
	}()
	select {
	case <-gate.heldC:
	case err := <-badDone:
		t.Fatalf("the non-reading client finished its fetch: %v", err)
	case <-time.After(long):
		t.Fatal("the mirror sent nothing more to the client that stopped reading")
	}

	// While it stalls, its answers are outstanding.
	guard := time.After(long)
	for {
		var out int64
		for _, p := range r.ServeStats() {
			if p.Peer == gate.ID() {
				out = p.BytesOutstanding
			}
		}
		if out > 0 {
			break
		}
		select {
		case err := <-badDone:
			t.Fatalf("the non-reading client finished its fetch: %v", err)
		case <-guard:
			t.Fatalf("no bytes outstanding for the stalled peer: %+v", r.ServeStats())
		case <-time.After(5 * time.Millisecond):
		}
	}

	// A good peer fetches the same bundle meanwhile.
	goodHost := loopHost(t)
	good, goodStore := stockClient(t, goodHost)
	if err := goodHost.Connect(t.Context(), mirror); err != nil {
		t.Fatal(err)
	}
	// A guard against a hung fetch, not a speed goal: 48 MiB under the
	// race detector on a saturated machine.
	ctx, cancel := context.WithTimeout(t.Context(), 4*long)
	defer cancel()
	if err := merkledag.FetchGraph(ctx, res.Root, merkledag.NewDAGService(blockservice.New(goodStore, good))); err != nil {
		t.Fatalf("the reading peer did not get the bundle while another stalled: %v; totals %+v, peers %+v, good wants %d; good peer %s connected %v refused %v; bad peer %s",
			err, r.ServeTotals(), r.ServeStats(), len(good.GetWantlist()), goodHost.ID(),
			goodHost.Network().Connectedness(mh.ID()), r.serve.Refused(goodHost.ID()), gate.ID())
	}

	// The stalled peer was cut off: its connection closed. (A guard
	// against a hang, not a speed goal.)
	ctx, cancel = context.WithTimeout(t.Context(), 4*long)
	defer cancel()
	gate.mu.Lock()
	conn := gate.held[0].Conn()
	gate.mu.Unlock()
	for !conn.IsClosed() || r.ServeTotals().CutOff["slow_reader"] < 1 {
		select {
		case <-ctx.Done():
			t.Fatalf("the peer that stopped reading was not cut off: connection closed %v; totals %+v",
				conn.IsClosed(), r.ServeTotals())
		case <-time.After(10 * time.Millisecond):
		}
	}
	// It comes back (the test dials for it: whether and when a stock
	// client re-dials on its own is not the point here), its client
	// still wants the blocks, so its session sends the want-blocks again
	// on the new connection; it stalls again and is then refused.
	t.Logf("first cut-off seen; the stalled peer had re-dialled by itself: %v",
		gate.Network().Connectedness(mirror.ID) == network.Connected)
	if err := gate.Connect(ctx, mirror); err != nil {
		t.Fatalf("the peer that stopped reading could not reconnect: %v", err)
	}
	for !r.serve.Refused(gate.ID()) {
		select {
		case <-ctx.Done():
			t.Fatalf("the peer that stalled again after reconnecting is not refused; totals %+v", r.ServeTotals())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if tot := r.ServeTotals(); tot.CutOff["slow_reader"] < 2 {
		t.Errorf("totals %+v, want at least two slow_reader cut-offs", tot)
	}
	if r.serve.Refused(goodHost.ID()) {
		t.Error("the reading peer is refused")
	}
	badCancel()
	<-badDone
}

// holdFirstHost lets the first incoming bitswap stream carry 64 KiB (the
// small answers before the blocks), then holds its reads until a second
// stream arrives: a path whose window the first stream has filled.
type holdFirstHost struct {
	host.Host
	mu      sync.Mutex
	streams int
	second  chan struct{}
}

func (h *holdFirstHost) SetStreamHandler(pid protocol.ID, handler network.StreamHandler) {
	h.Host.SetStreamHandler(pid, func(s network.Stream) {
		h.mu.Lock()
		h.streams++
		n := h.streams
		h.mu.Unlock()
		if n == 2 {
			close(h.second)
		}
		if n == 1 {
			handler(&heldStream{Stream: s, until: h.second, free: 64 << 10})
			return
		}
		handler(s)
	})
}

type heldStream struct {
	network.Stream
	until <-chan struct{}
	free  int // bytes still read without waiting
}

func (s *heldStream) Read(b []byte) (int, error) {
	if s.free <= 0 {
		<-s.until
		return s.Stream.Read(b)
	}
	k, err := s.Stream.Read(b[:min(len(b), s.free)])
	s.free -= k
	return k, err
}

// While one answer to a peer is held up (its stream's window full), the
// mirror sends the next answer on a second stream: two windows in flight
// on a path where one stream's window stays below the bandwidth-delay
// product.
func TestServeAnswersOnASecondStreamWhileTheFirstIsBusy(t *testing.T) {
	mh := loopHost(t)
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	// not cut off (and reconnected on a new stream) while held
	cfg.Serve.StallTimeout = 2 * long
	r, err := New(mh, st, &finder{}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); st.Close() })
	// one file of 8 leaves of 1 MiB, asked for all at once
	file := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(file, seeded(5, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := bundle.Import(t.Context(), file, func(b blocks.Block) error { return st.Put(b.Cid(), b.RawData()) }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.MarkHeld(res.Root); err != nil {
		t.Fatal(err)
	}
	data, err := st.Get(res.Root)
	if err != nil {
		t.Fatal(err)
	}
	leaves, err := verify.Links(res.Root, data)
	if err != nil || len(leaves) != 8 {
		t.Fatalf("%d leaves: %v", len(leaves), err)
	}

	hold := &holdFirstHost{Host: loopHost(t), second: make(chan struct{})}
	client, _ := stockClient(t, hold)
	if err := hold.Connect(t.Context(), peer.AddrInfo{ID: mh.ID(), Addrs: mh.Addrs()}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), long)
	defer cancel()
	got, err := client.GetBlocks(ctx, leaves)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-hold.second:
	case <-ctx.Done():
		t.Fatal("no second answer stream while the first was held")
	}
	n := 0
	for range got {
		n++
	}
	if n != len(leaves) {
		t.Fatalf("got %d of %d blocks", n, len(leaves))
	}
}
