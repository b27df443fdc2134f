package replicate

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/boxo/bitswap"
	bsnet "github.com/ipfs/boxo/bitswap/network/bsnet"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/mirrornet/mirrornet/internal/bundle"
	"github.com/mirrornet/mirrornet/internal/store"
)

// long is an upper bound for operations that must succeed; they normally
// take milliseconds.
const long = 60 * time.Second

func seeded(seed uint64, n int) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}

// finder is a HolderFinder with a fixed, settable list.
type finder struct {
	mu    sync.Mutex
	peers []peer.AddrInfo
}

func (f *finder) Holders(cid.Cid) []peer.AddrInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]peer.AddrInfo(nil), f.peers...)
}

func (f *finder) set(hs ...host.Host) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.peers = f.peers[:0]
	for _, h := range hs {
		f.peers = append(f.peers, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})
	}
}

type node struct {
	h   host.Host
	st  *store.Store
	r   *Replicator
	f   *finder
	dir string // the store's directory
}

func newNode(t testing.TB, mn mocknet.Mocknet) *node {
	t.Helper()
	h, err := mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	return newNodeOn(t, h)
}

// newNodeOn makes a node on h, which it closes at the end of the test.
func newNodeOn(t testing.TB, h host.Host) *node {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := &finder{}
	r, err := New(h, st, f, DefaultConfig())
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

// makeTree writes a seeded app bundle: a few small files and one file of
// several 1 MiB chunks.
func makeTree(t testing.TB, seed uint64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "app")
	for i := range 10 {
		p := filepath.Join(dir, fmt.Sprintf("d%d", i%3), fmt.Sprintf("f%d.js", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, seeded(seed+uint64(i), 5000+i*3000), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "big.wasm"), seeded(seed+100, 3<<20+12345), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// publish imports dir into n's store and marks it held.
func publish(t testing.TB, n *node, dir string) bundle.Result {
	t.Helper()
	res, err := bundle.Import(context.Background(), dir, func(b blocks.Block) error { return n.st.Put(b.Cid(), b.RawData()) }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.st.MarkHeld(res.Root); err != nil {
		t.Fatal(err)
	}
	return res
}

func fetch(t *testing.T, n *node, root cid.Cid) Progress {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), long)
	defer cancel()
	var last Progress
	if err := n.r.Fetch(ctx, root, func(p Progress) { last = p }); err != nil {
		t.Fatal(err)
	}
	if !n.st.Held(root) {
		t.Fatal("not held after Fetch")
	}
	return last
}

func TestFetchFromPeersAndFailover(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	a, b, c := newNode(t, mn), newNode(t, mn), newNode(t, mn)
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	res := publish(t, a, makeTree(t, 1))

	b.f.set(a.h)
	p := fetch(t, b, res.Root)
	if p.Blocks != res.Blocks || p.Fetched != res.Blocks || p.Bytes != res.Size {
		t.Fatalf("B progress %+v, bundle %+v", p, res)
	}
	// the walk's statistics account for every block, from the one holder
	st := b.r.LastFetchStats()
	if len(st.Holders) != 1 || st.Holders[0].Peer != a.h.ID() || st.Holders[0].Blocks != res.Blocks ||
		st.Holders[0].Bytes != res.Size || st.Holders[0].Last.Before(st.Holders[0].First) ||
		st.Holders[0].First.Before(st.Start) || st.End.Before(st.Holders[0].Last) || st.Tail() != st.End.Sub(st.Holders[0].Last) {
		t.Fatalf("fetch stats %+v, bundle %+v", st, res)
	}
	// B now serves it; stop A entirely
	a.r.Close()
	a.h.Close()
	c.f.set(a.h, b.h)
	p = fetch(t, c, res.Root)
	if p.Fetched != res.Blocks {
		t.Fatalf("C fetched %d of %d", p.Fetched, res.Blocks)
	}
	// every block C holds verifies
	if err := bundle.Walk(t.Context(), res.Root, c.st.Get, func(cid.Cid, []byte) error { return nil }); err != nil {
		t.Fatal(err)
	}
}

func TestResumeFetchesOnlyMissing(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	a, b := newNode(t, mn), newNode(t, mn)
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	dir := makeTree(t, 2)
	res := publish(t, a, dir)
	// B already has every other block (an interrupted earlier fetch)
	i, pre := 0, 0
	if _, err := bundle.Import(t.Context(), dir, func(blk blocks.Block) error {
		i++
		if i%2 == 0 {
			pre++
			return b.st.Put(blk.Cid(), blk.RawData())
		}
		return nil
	}, nil); err != nil {
		t.Fatal(err)
	}
	b.f.set(a.h)
	p := fetch(t, b, res.Root)
	if p.Fetched != res.Blocks-pre || p.Blocks != res.Blocks {
		t.Fatalf("fetched %d blocks, want %d (of %d)", p.Fetched, res.Blocks-pre, res.Blocks)
	}
	// a second Fetch of a held bundle is a no-op
	p = fetch(t, b, res.Root)
	if p.Fetched != 0 {
		t.Fatalf("refetched %d blocks", p.Fetched)
	}
}

func TestServesOnlyHeldBundles(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	a, b := newNode(t, mn), newNode(t, mn)
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	dir := makeTree(t, 3)
	res, err := bundle.Import(t.Context(), dir, func(blk blocks.Block) error { return a.st.Put(blk.Cid(), blk.RawData()) }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.st.Follow(res.Root); err != nil { // fetching, not held
		t.Fatal(err)
	}
	b.f.set(a.h)
	// connect first, so the short deadline below only bounds the fetch
	if err := b.h.Connect(t.Context(), peer.AddrInfo{ID: a.h.ID(), Addrs: a.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	// The fetch must fail and wait out its deadline; bitswap reports the
	// deadline either as such or as its closed promise channel.
	if err := b.r.Fetch(ctx, res.Root, nil); err == nil || !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("fetch of a bundle nobody holds: %v (context: %v)", err, ctx.Err())
	}
	if b.st.Usage() != 0 {
		t.Fatalf("B stored %d bytes of a bundle A does not hold", b.st.Usage())
	}
	if _, err := a.st.MarkHeld(res.Root); err != nil {
		t.Fatal(err)
	}
	fetch(t, b, res.Root)
}

// evilStore claims every block and serves tampered bytes under the
// requested CID.
type evilStore struct {
	served chan cid.Cid
}

func (e *evilStore) tampered(c cid.Cid) blocks.Block {
	blk, _ := blocks.NewBlockWithCid([]byte("not the block you want: "+c.String()), c)
	return blk
}
func (e *evilStore) DeleteBlock(context.Context, cid.Cid) error    { return nil }
func (e *evilStore) Has(context.Context, cid.Cid) (bool, error)    { return true, nil }
func (e *evilStore) Put(context.Context, blocks.Block) error       { return nil }
func (e *evilStore) PutMany(context.Context, []blocks.Block) error { return nil }
func (e *evilStore) AllKeysChan(context.Context) (<-chan cid.Cid, error) {
	ch := make(chan cid.Cid)
	close(ch)
	return ch, nil
}
func (e *evilStore) GetSize(_ context.Context, c cid.Cid) (int, error) {
	return len(e.tampered(c).RawData()), nil
}
func (e *evilStore) Get(_ context.Context, c cid.Cid) (blocks.Block, error) {
	select {
	case e.served <- c:
	default:
	}
	return e.tampered(c), nil
}

func TestMaliciousPeerNeverStored(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	a, b := newNode(t, mn), newNode(t, mn)
	hm, err := mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	evil := &evilStore{served: make(chan cid.Cid, 1)}
	ctxM, cancelM := context.WithCancel(context.Background())
	mbs := bitswap.New(ctxM, bsnet.NewFromIpfsHost(hm), nil, evil)
	t.Cleanup(func() { mbs.Close(); cancelM(); hm.Close() })

	res := publish(t, a, makeTree(t, 4))
	b.f.set(hm)
	ctx, cancel := context.WithTimeout(t.Context(), long)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.r.Fetch(ctx, res.Root, nil) }()
	select {
	case c := <-evil.served:
		if !c.Equals(res.Root) {
			t.Fatalf("evil peer asked for %s", c)
		}
	case err := <-done:
		t.Fatalf("fetch ended before the evil peer served: %v", err)
	}
	// The tampered block is on its way; give B a bounded moment to
	// (wrongly) accept it, then stop.
	select {
	case err := <-done:
		t.Fatalf("fetch from an evil peer returned %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("fetch: %v", err)
	}
	if ok, _ := b.st.Has(res.Root); ok || b.st.Usage() != 0 {
		t.Fatal("B stored a block from the evil peer")
	}
	// With an honest holder added the same fetch completes with the right bytes.
	b.f.set(hm, a.h)
	fetch(t, b, res.Root)
	if err := bundle.Walk(t.Context(), res.Root, b.st.Get, func(cid.Cid, []byte) error { return nil }); err != nil {
		t.Fatal(err)
	}
}

func TestConfigAndLifecycle(t *testing.T) {
	if err := (Config{Parallel: 0}).Validate(); err == nil {
		t.Error("Parallel 0 accepted")
	}
	mn := mocknet.New()
	defer mn.Close()
	a := newNode(t, mn)
	if _, err := New(a.h, a.st, a.f, Config{}); err == nil {
		t.Error("New accepted an invalid Config")
	}
	// no holders, nothing local
	c, _ := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: 0x12, MhLength: -1}.Sum([]byte("x"))
	if err := a.r.Fetch(t.Context(), c, nil); !errors.Is(err, ErrNoHolders) {
		t.Fatalf("no holders: %v", err)
	}
	// no holders but complete locally: becomes held
	if err := a.st.Put(c, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := a.r.Fetch(t.Context(), c, nil); err != nil || !a.st.Held(c) {
		t.Fatalf("local completion: %v", err)
	}
	a.r.Close()
	if err := a.r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.r.Fetch(t.Context(), c, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}
