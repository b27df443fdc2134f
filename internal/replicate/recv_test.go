package replicate

import (
	"bytes"
	"encoding/binary"
	"io"
	"slices"
	"testing"

	bsmsg "github.com/ipfs/boxo/bitswap/message"
	pb "github.com/ipfs/boxo/bitswap/message/pb"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	"github.com/libp2p/go-msgio"

	"github.com/mirrornet/mirrornet/internal/bundle"
)

// rawBlock is a raw-codec CIDv1 block of data.
func rawBlock(t *testing.T, data []byte) blocks.Block {
	t.Helper()
	c, err := bundle.Profile.CidBuilder().WithCodec(cid.Raw).Sum(data)
	if err != nil {
		t.Fatal(err)
	}
	b, err := blocks.NewBlockWithCid(data, c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// encoded is msg as bitswap 1.2 sends it: a varint length, then the
// protobuf.
func encoded(t *testing.T, msg bsmsg.BitSwapMessage) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := msg.ToNetV1(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// body strips the length prefix.
func body(t *testing.T, framed []byte) []byte {
	t.Helper()
	n, k := binary.Uvarint(framed)
	if k <= 0 || int(n) != len(framed)-k {
		t.Fatalf("bad framing: %d, %d of %d", n, k, len(framed))
	}
	return framed[k:]
}

func decode(t *testing.T, framed []byte) bsmsg.BitSwapMessage {
	t.Helper()
	m, _, err := bsmsg.FromNet(bytes.NewReader(framed))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// testMessage has a want, a cancel, two blocks, a DONT_HAVE, a HAVE and
// pending bytes: every field bitswap 1.2 sends.
func testMessage(t *testing.T, a, b blocks.Block) (bsmsg.BitSwapMessage, cid.Cid) {
	other := rawBlock(t, []byte("other")).Cid()
	msg := bsmsg.New(false)
	msg.AddEntry(other, 7, pb.Message_Wantlist_Block, true)
	msg.Cancel(rawBlock(t, []byte("cancelled")).Cid())
	msg.AddBlock(a)
	msg.AddBlock(b)
	msg.AddDontHave(other)
	msg.AddHave(rawBlock(t, []byte("have")).Cid())
	msg.SetPendingBytes(12345)
	return msg, other
}

func TestTakeBlocksLeavesTheRestOfTheMessage(t *testing.T) {
	a, b := rawBlock(t, seeded(1, 3000)), rawBlock(t, seeded(2, 5000))
	msg, other := testMessage(t, a, b)
	var offered []cid.Cid
	rest := takeBlocks(body(t, encoded(t, msg)), func(blk blocks.Block) bool {
		offered = append(offered, blk.Cid())
		if blk.Cid().Equals(a.Cid()) && !bytes.Equal(blk.RawData(), a.RawData()) {
			t.Fatal("offered bytes differ")
		}
		return blk.Cid().Equals(a.Cid())
	})
	// bitswap encodes a message's blocks in map order: a and b may come
	// either way round, but each is offered once.
	if len(offered) != 2 || !slices.ContainsFunc(offered, a.Cid().Equals) || !slices.ContainsFunc(offered, b.Cid().Equals) {
		t.Fatalf("offered %v, want %s and %s once each", offered, a.Cid(), b.Cid())
	}
	framed := binary.AppendUvarint(nil, uint64(len(rest)))
	m := decode(t, append(framed, rest...))
	if bl := m.Blocks(); len(bl) != 1 || !bl[0].Cid().Equals(b.Cid()) || !bytes.Equal(bl[0].RawData(), b.RawData()) {
		t.Fatalf("blocks left: %v", bl)
	}
	wl := m.Wantlist()
	if len(wl) != 2 || m.PendingBytes() != 12345 || len(m.DontHaves()) != 1 || !m.DontHaves()[0].Equals(other) ||
		len(m.Haves()) != 1 || !m.Haves()[0].Equals(rawBlock(t, []byte("have")).Cid()) {
		t.Fatalf("rest of the message changed: wantlist %v, pending %d, dont-haves %v, haves %v", wl, m.PendingBytes(), m.DontHaves(), m.Haves())
	}
}

func TestTakeBlocksOffersNothingFromABrokenMessage(t *testing.T) {
	a, b := rawBlock(t, seeded(1, 3000)), rawBlock(t, seeded(2, 5000))
	msg, _ := testMessage(t, a, b)
	whole := body(t, encoded(t, msg))
	for _, cut := range []int{1, len(whole) / 2, len(whole) - 1} {
		in := append([]byte(nil), whole[:cut]...)
		rest := takeBlocks(in, func(blocks.Block) bool { t.Fatal("offered a block of a broken message"); return true })
		if !bytes.Equal(rest, whole[:cut]) {
			t.Fatalf("cut at %d: message changed", cut)
		}
	}
	// a block whose prefix names no known hash stays in the message
	bad := []byte{3<<3 | 2, 6, 1<<3 | 2, 2, 0xff, 0xff, 2<<3 | 2, 0}
	if rest := takeBlocks(append([]byte(nil), bad...), func(blocks.Block) bool { t.Fatal("offered"); return true }); !bytes.Equal(rest, bad) {
		t.Fatal("bad block dropped")
	}
}

// fakeStream is the reading side of a stream from a peer.
type fakeStream struct {
	network.Stream
	r    io.Reader
	conn fakeConn
}

type fakeConn struct {
	network.Conn
	p peer.ID
}

func (c fakeConn) RemotePeer() peer.ID           { return c.p }
func (s *fakeStream) Read(b []byte) (int, error) { return s.r.Read(b) }
func (s *fakeStream) Conn() network.Conn         { return s.conn }

type fakeClaimer struct {
	active bool
	want   map[string]bool
	got    []blocks.Block
	from   []peer.ID
}

func (f *fakeClaimer) fetching() bool { return f.active }
func (f *fakeClaimer) claim(p peer.ID, blk blocks.Block) bool {
	if !f.want[string(blk.Cid().Hash())] {
		return false
	}
	// the bytes are not the claimer's after claim returns: keep a copy
	f.got = append(f.got, rawBlockCopy(blk))
	f.from = append(f.from, p)
	return true
}

func rawBlockCopy(b blocks.Block) blocks.Block {
	c, _ := blocks.NewBlockWithCid(append([]byte(nil), b.RawData()...), b.Cid())
	return c
}

func TestClaimStreamTakesWantedBlocksAndPassesTheRest(t *testing.T) {
	a, b := rawBlock(t, seeded(1, 1<<20)), rawBlock(t, seeded(2, 70000))
	m1, _ := testMessage(t, a, b)
	only := bsmsg.New(false)
	only.AddBlock(a) // a message left empty once a is taken
	m3 := bsmsg.New(false)
	m3.AddDontHave(b.Cid())
	var in []byte
	for _, m := range []bsmsg.BitSwapMessage{m1, only, m3} {
		in = append(in, encoded(t, m)...)
	}
	const from = peer.ID("holder")
	for _, active := range []bool{true, false} {
		fc := &fakeClaimer{active: active, want: map[string]bool{string(a.Cid().Hash()): true}}
		cs := newClaimStream(&fakeStream{r: bytes.NewReader(in), conn: fakeConn{p: from}}, fc, newBufList(maxFree))
		// read as bitswap's network does
		rd := msgio.NewVarintReaderSize(cs, network.MessageSizeMax)
		var got []bsmsg.BitSwapMessage
		for {
			m, _, err := bsmsg.FromMsgReader(rd)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, m)
		}
		if len(got) != 3 {
			t.Fatalf("active %v: %d messages, want 3", active, len(got))
		}
		if !active {
			if len(fc.got) != 0 || len(got[0].Blocks()) != 2 || len(got[1].Blocks()) != 1 {
				t.Fatal("blocks taken with no fetch in progress")
			}
			continue
		}
		if len(fc.got) != 2 || !bytes.Equal(fc.got[0].RawData(), a.RawData()) || !bytes.Equal(fc.got[1].RawData(), a.RawData()) ||
			fc.from[0] != from {
			t.Fatalf("claimed %d blocks", len(fc.got))
		}
		if bl := got[0].Blocks(); len(bl) != 1 || !bl[0].Cid().Equals(b.Cid()) || len(got[0].Wantlist()) != 2 {
			t.Fatalf("first message left with %d blocks, %d wants", len(bl), len(got[0].Wantlist()))
		}
		if len(got[1].Blocks()) != 0 || len(got[2].DontHaves()) != 1 {
			t.Fatal("later messages changed")
		}
	}
}

// A fetch takes the blocks it asked for off the stream: bitswap's decoder
// (which would copy each into fresh memory) never sees them.
func TestFetchTakesBlocksBeforeBitswapDecodes(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	a, b := newNode(t, mn), newNode(t, mn)
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	res := publish(t, a, makeTree(t, 9))
	b.f.set(a.h)
	p := fetch(t, b, res.Root)
	if p.Fetched != res.Blocks {
		t.Fatalf("fetched %d of %d", p.Fetched, res.Blocks)
	}
	// (a block hedged on a slow machine may come twice: the second copy
	// is nobody's and goes to bitswap)
	if st, _ := b.r.bs.Stat(); st.BlocksReceived > uint64(res.Blocks)/4 {
		t.Fatalf("bitswap decoded %d of the %d blocks", st.BlocksReceived, res.Blocks)
	}
	if err := bundle.Walk(t.Context(), res.Root, b.st.Get, func(cid.Cid, []byte) error { return nil }); err != nil {
		t.Fatal(err)
	}
}

// A holder reads the blocks it serves into buffers it reuses once each
// answer is written, instead of fresh memory per block.
func TestServedBlocksReuseBuffers(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	a := newNode(t, mn)
	res := publish(t, a, makeTree(t, 10))
	for range 3 {
		b := newNode(t, mn)
		if err := mn.LinkAll(); err != nil {
			t.Fatal(err)
		}
		b.f.set(a.h)
		fetch(t, b, res.Root)
		if err := bundle.Walk(t.Context(), res.Root, b.st.Get, func(cid.Cid, []byte) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	st, _ := a.r.bs.Stat()
	t.Logf("%d buffers made for %d blocks served (%d per fetch)", a.r.served.made.Load(), st.BlocksSent, res.Blocks)
	if made := a.r.served.made.Load(); st.BlocksSent < uint64(3*res.Blocks) || made == 0 || made > servedBufs+int64(res.Blocks) {
		t.Fatalf("%d buffers made for %d blocks served (%d per fetch)", made, st.BlocksSent, res.Blocks)
	}
}
