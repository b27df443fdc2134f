package replicate

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bsmsg "github.com/ipfs/boxo/bitswap/message"
	pb "github.com/ipfs/boxo/bitswap/message/pb"
	iface "github.com/ipfs/boxo/bitswap/network"
	bsnet "github.com/ipfs/boxo/bitswap/network/bsnet"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/mirrornet/mirrornet/internal/bundle"
)

// scripted is a holder that speaks bitswap's wire protocol but answers only
// when the test says so: it records every want-block it receives, answers
// DONT_HAVE for blocks it lacks, and sends a block when release is called.
type scripted struct {
	h    host.Host
	net  iface.BitSwapNetwork
	blks map[string]blocks.Block // by multihash

	mu        sync.Mutex
	asked     map[string]cid.Cid // open want-blocks, by multihash
	total     int                // want-blocks ever received
	cancel    int                // cancels received
	cancelled []cid.Cid
	from      peer.ID
	poke      chan struct{}

	// stall, if set, stops the reading of the stream a message came on
	// (bitswap hands messages over one at a time) after the first message
	// with a cancel that stallOn matches, until stall is closed.
	stall   chan struct{}
	stallOn func(cid.Cid) bool
	stalled bool
}

func newScripted(t *testing.T, mn mocknet.Mocknet, blks []blocks.Block) *scripted {
	t.Helper()
	h, err := mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	return newScriptedOn(t, h, blks)
}

// newScriptedOn makes a scripted holder of blks on h, which it closes at
// the end of the test.
func newScriptedOn(t *testing.T, h host.Host, blks []blocks.Block) *scripted {
	t.Helper()
	s := &scripted{h: h, net: bsnet.NewFromIpfsHost(h), blks: map[string]blocks.Block{}, asked: map[string]cid.Cid{}, poke: make(chan struct{}, 1)}
	for _, b := range blks {
		s.blks[string(b.Cid().Hash())] = b
	}
	s.net.Start(s)
	t.Cleanup(func() { s.net.Stop(); h.Close() })
	return s
}

func (s *scripted) ReceiveMessage(ctx context.Context, p peer.ID, m bsmsg.BitSwapMessage) {
	var lack []cid.Cid
	var stall bool
	s.mu.Lock()
	s.from = p
	for _, e := range m.Wantlist() {
		k := string(e.Cid.Hash())
		switch {
		case e.Cancel:
			s.cancel++
			s.cancelled = append(s.cancelled, e.Cid)
			delete(s.asked, k)
			if s.stall != nil && !s.stalled && s.stallOn(e.Cid) {
				s.stalled, stall = true, true
			}
		case e.WantType == pb.Message_Wantlist_Block:
			s.total++
			if _, ok := s.blks[k]; !ok {
				lack = append(lack, e.Cid)
				continue
			}
			s.asked[k] = e.Cid
		}
	}
	s.mu.Unlock()
	if len(lack) > 0 {
		msg := bsmsg.New(false)
		for _, c := range lack {
			msg.AddDontHave(c)
		}
		_ = s.net.SendMessage(ctx, p, msg)
	}
	select {
	case s.poke <- struct{}{}:
	default:
	}
	if stall {
		<-s.stall
	}
}

func (s *scripted) ReceiveError(error)       {}
func (s *scripted) PeerConnected(peer.ID)    {}
func (s *scripted) PeerDisconnected(peer.ID) {}
func (s *scripted) open() map[string]cid.Cid {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]cid.Cid{}
	for k, c := range s.asked {
		out[k] = c
	}
	return out
}

// waitOpen waits until cond holds for the open wants.
func (s *scripted) waitOpen(t *testing.T, what string, cond func(map[string]cid.Cid) bool) map[string]cid.Cid {
	t.Helper()
	deadline := time.After(long)
	for {
		if o := s.open(); cond(o) {
			return o
		}
		select {
		case <-s.poke:
		case <-deadline:
			t.Fatalf("holder never got %s; open wants: %d", what, len(s.open()))
		}
	}
}

// release sends the blocks of the open wants (all, or those in only).
func (s *scripted) release(t *testing.T, only map[string]cid.Cid) {
	t.Helper()
	s.mu.Lock()
	var out []blocks.Block
	for k := range s.asked {
		if only != nil {
			if _, ok := only[k]; !ok {
				continue
			}
		}
		out = append(out, s.blks[k])
		delete(s.asked, k)
	}
	p := s.from
	s.mu.Unlock()
	for _, b := range out {
		msg := bsmsg.New(false)
		msg.AddBlock(b)
		if err := s.net.SendMessage(t.Context(), p, msg); err != nil {
			t.Errorf("sending %s: %v", b.Cid(), err)
		}
	}
}

// bigFile imports a file of n 1 MiB chunks and returns its root and every
// block.
func bigFile(t *testing.T, n int) (cid.Cid, []blocks.Block) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "big.bin")
	if err := os.WriteFile(p, seeded(9, n<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	var blks []blocks.Block
	res, err := bundle.Import(t.Context(), p, func(b blocks.Block) error { blks = append(blks, b); return nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res.Root, blks
}

// TestFetchPipelinesAcrossHolders: Fetch keeps a window of requests open at
// every holder at once, each holder asked for different blocks, before any
// of them has answered; a holder that says DONT_HAVE is not asked again and
// its share goes to the others; every delivered block is cancelled at the
// holder. A fetcher that asks one holder per block and waits (or lets a
// session broadcast want-haves first) never gets there: the scripted
// holders answer nothing until both windows are full.
func TestFetchPipelinesAcrossHolders(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	b := newNode(t, mn)
	root, blks := bigFile(t, 40)
	x, y := newScripted(t, mn, blks), newScripted(t, mn, blks)
	lacking := newScripted(t, mn, nil) // follows the bundle, holds nothing yet
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	b.f.set(x.h, y.h, lacking.h)

	ctx, cancel := context.WithTimeout(t.Context(), long)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.r.Fetch(ctx, root, nil) }()

	// The root is asked of one holder; answer it from whichever got it.
	for {
		var got bool
		for _, s := range []*scripted{x, y, lacking} {
			if o := s.open(); len(o) > 0 {
				s.release(t, nil)
				got = true
			}
		}
		if got {
			break
		}
		select {
		case <-x.poke:
		case <-y.poke:
		case <-lacking.poke:
		case err := <-done:
			t.Fatalf("fetch ended early: %v", err)
		case <-ctx.Done():
			t.Fatal("nobody was asked for the root")
		}
	}
	// Now 40 leaves are known: both holders must get a full window
	// (DefaultConfig's 8 MiB: at least 8 leaves of 1 MiB) without a single
	// answer, and not the same leaves.
	minWindow := DefaultConfig().WindowMin / (1 << 20)
	ox := x.waitOpen(t, "a full window", func(o map[string]cid.Cid) bool { return len(o) >= minWindow })
	oy := y.waitOpen(t, "a full window", func(o map[string]cid.Cid) bool { return len(o) >= minWindow })
	for k := range ox {
		if _, dup := oy[k]; dup {
			t.Fatalf("both holders asked for %s before either answered", ox[k])
		}
	}
	// Serve everything as asked until the fetch ends.
	for {
		x.release(t, nil)
		y.release(t, nil)
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			if !b.st.Held(root) {
				t.Fatal("not held after Fetch")
			}
			// The holder that lacks everything is asked at most once, a
			// window's worth at the start (and maybe the root): once it
			// said DONT_HAVE, the others serve the rest.
			lacking.mu.Lock()
			asked := lacking.total
			lacking.mu.Unlock()
			if asked > minWindow+2 {
				t.Errorf("holder that lacks every block was asked %d times", asked)
			}
			// every delivered block is cancelled at its holder (the
			// cancels are sent before Fetch returns; wait for them to land)
			cancels := func() int {
				x.mu.Lock()
				defer x.mu.Unlock()
				y.mu.Lock()
				defer y.mu.Unlock()
				return x.cancel + y.cancel
			}
			deadline := time.After(long) // a failure guard only
			for cancels() < len(blks) {
				select {
				case <-x.poke:
				case <-y.poke:
				case <-deadline:
					seen := map[string]int{}
					for _, c := range append(x.cancelled, y.cancelled...) {
						seen[c.String()]++
					}
					for _, b := range blks {
						if seen[b.Cid().String()] != 1 {
							t.Logf("block %s cancelled %d times (root %v)", b.Cid(), seen[b.Cid().String()], b.Cid().Equals(root))
						}
					}
					t.Fatalf("%d cancels for %d delivered blocks", cancels(), len(blks))
				}
			}
			return
		case <-x.poke:
		case <-y.poke:
		case <-lacking.poke:
		case <-ctx.Done():
			t.Fatal("fetch did not finish")
		}
	}
}

// TestFetchCancelsReachAHolderThatReadsLate: the cancels a fetch sends as
// its blocks arrive reach the holder even if it reads them only after the
// fetch has ended. The holder here (on real TCP and yamux) stops reading
// its wants stream at the first cancel of a leaf and resumes once Fetch
// has returned; the later cancels wait in the stream meanwhile. A fetch
// that resets its stream when it ends drops them, and the holder keeps
// those wants open.
func TestFetchCancelsReachAHolderThatReadsLate(t *testing.T) {
	b := newNodeOn(t, loopHost(t))
	root, blks := bigFile(t, 6)
	x := newScriptedOn(t, loopHost(t), blks)
	x.stall = make(chan struct{})
	x.stallOn = func(c cid.Cid) bool { return !c.Equals(root) }
	b.f.set(x.h)

	ctx, cancel := context.WithTimeout(t.Context(), long)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.r.Fetch(ctx, root, nil) }()
	// Answer every want, one block per message, until the fetch ends:
	// each delivery is cancelled apart.
	for fetching := true; fetching; {
		x.release(t, nil)
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			fetching = false
		case <-x.poke:
		case <-ctx.Done():
			t.Fatal("fetch did not finish")
		}
	}
	x.mu.Lock()
	stalled := x.stalled
	x.mu.Unlock()
	if !stalled {
		t.Fatal("the holder never stopped reading: no cancel of a leaf came before the fetch ended")
	}
	close(x.stall)
	deadline := time.After(long) // a failure guard only
	for {
		x.mu.Lock()
		n, open := x.cancel, len(x.asked)
		x.mu.Unlock()
		if n >= len(blks) {
			if open != 0 {
				t.Fatalf("%d wants still open at the holder after every block was cancelled", open)
			}
			return
		}
		select {
		case <-x.poke:
		case <-deadline:
			t.Fatalf("the holder read %d cancels for %d delivered blocks", n, len(blks))
		}
	}
}
