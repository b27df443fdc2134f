package replicate

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/encoding/protowire"
)

// The receive path of fetched blocks. bitswap's network reads each
// incoming message into a buffer, and its protobuf decoder copies every
// block out of it into fresh memory (1 MiB per leaf: a copy, and page
// faults on memory the heap had given back) before hashing it. For the
// blocks a fetch asked for, that copy buys nothing: the fetch hashes the
// bytes and writes them to the store, and forgets them.
//
// So every bitswap stream this node accepts passes through a claimStream
// on its way to bitswap's decoder. While a fetch is in progress, the
// claimStream reads each message into a reused buffer, hashes every block
// in it (this hash is the verification: a block is claimed only if its
// multihash is one a fetch asked for) and stores the claimed blocks
// straight from the buffer; what is left of the message (wantlist,
// presences, blocks nobody claimed) is re-encoded and handed on, so
// bitswap sees every message, less the blocks a fetch took. When no fetch
// is in progress, messages pass through untouched (their bodies are not
// even copied).

// recvHost is the host handed to bitswap's network: the stream handlers
// it sets read through a claimStream.
type recvHost struct {
	host.Host
	c    claimer
	bufs *bufList
}

func (h recvHost) SetStreamHandler(pid protocol.ID, handler network.StreamHandler) {
	h.Host.SetStreamHandler(pid, func(s network.Stream) {
		handler(newClaimStream(s, h.c, h.bufs))
	})
}

// bufList is a bounded free list of message buffers. Unlike a sync.Pool it
// keeps its buffers across garbage collections: on this kind of VM a
// buffer dropped by the collector and allocated again costs a page fault
// per 4 KiB touched, more than the copy it holds. At most n buffers (see
// newBufList) wait in it.
type bufList struct {
	free chan []byte
	made atomic.Int64 // buffers allocated, for tests
}

const (
	// maxFree bounds the received messages' buffers kept (a message is at
	// most network.MessageSizeMax): one per holder of a typical fetch,
	// and some spare.
	maxFree = 8
	// servedBufs bounds the served blocks' buffers kept (a block is at
	// most verify.MaxBlockSize): bitswap's server has 8 workers sending,
	// each with a message of blocks, and reads the next ones meanwhile.
	servedBufs = 16
)

func newBufList(n int) *bufList { return &bufList{free: make(chan []byte, n)} }

// get returns a buffer of n bytes.
func (l *bufList) get(n int) []byte {
	select {
	case b := <-l.free:
		if cap(b) >= n {
			return b[:n]
		}
		// too small: dropped, and one of the size now needed made
	default:
	}
	l.made.Add(1)
	return make([]byte, n)
}

// put gives b back (or drops it if the list is full).
func (l *bufList) put(b []byte) {
	select {
	case l.free <- b:
	default:
	}
}

// claimer is what a claimStream offers blocks to: the fetches in progress.
type claimer interface {
	// fetching reports whether any fetch is in progress.
	fetching() bool
	// claim offers blk, received from p, its CID derived from its bytes.
	// It reports whether a fetch took (and stored) it; blk's bytes are
	// not used after it returns.
	claim(p peer.ID, blk blocks.Block) bool
}

func (r *Replicator) fetching() bool {
	r.fmu.Lock()
	defer r.fmu.Unlock()
	return len(r.fetches) > 0
}

func (r *Replicator) claim(p peer.ID, blk blocks.Block) bool {
	k := string(blk.Cid().Hash())
	taken := false
	r.each(func(f *walk) { taken = taken || f.claim(p, k, blk) })
	return taken
}

// claimStream is an incoming bitswap stream whose reader takes the blocks
// fetches asked for out of each message (see above). Only Read differs
// from the stream it wraps; bitswap's reader is its only user.
type claimStream struct {
	network.Stream
	br   *bufio.Reader
	c    claimer
	bufs *bufList
	// What Read returns next: hdr (a message's length prefix), then the
	// message: body (the rest of a message read into buf, a reused buffer
	// is released once body is read) or, passed through, the next left
	// bytes of the stream.
	hdr  []byte
	body []byte
	buf  []byte
	left int
	hb   [binary.MaxVarintLen64]byte
}

func newClaimStream(s network.Stream, c claimer, bufs *bufList) *claimStream {
	return &claimStream{Stream: s, br: bufio.NewReaderSize(s, 4096), c: c, bufs: bufs}
}

// errTooLarge: a message over network.MessageSizeMax (bitswap's own
// reader refuses those too).
var errTooLarge = errors.New("replicate: bitswap message too large")

func (s *claimStream) Read(p []byte) (int, error) {
	for {
		switch {
		case len(s.hdr) > 0:
			n := copy(p, s.hdr)
			s.hdr = s.hdr[n:]
			return n, nil
		case len(s.body) > 0:
			n := copy(p, s.body)
			s.body = s.body[n:]
			if len(s.body) == 0 {
				s.release()
			}
			return n, nil
		case s.left > 0:
			n, err := s.br.Read(p[:min(len(p), s.left)])
			s.left -= n
			if err == io.EOF && s.left > 0 {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
		if err := s.next(); err != nil {
			return 0, err
		}
	}
}

func (s *claimStream) release() {
	if s.buf != nil {
		s.bufs.put(s.buf)
		s.buf, s.body = nil, nil
	}
}

// next reads the next message's length prefix and, while a fetch is in
// progress, the message, and sets what Read returns.
func (s *claimStream) next() error {
	size, err := binary.ReadUvarint(s.br)
	if err != nil {
		return err // io.EOF between messages: the stream ended
	}
	if size > network.MessageSizeMax {
		return fmt.Errorf("%w: %d bytes", errTooLarge, size)
	}
	if size == 0 || !s.c.fetching() {
		s.hdr = binary.AppendUvarint(s.hb[:0], size)
		s.left = int(size)
		return nil
	}
	buf := s.bufs.get(int(size))
	if _, err := io.ReadFull(s.br, buf); err != nil {
		s.bufs.put(buf)
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	from := s.Conn().RemotePeer()
	body := takeBlocks(buf, func(blk blocks.Block) bool { return s.c.claim(from, blk) })
	s.hdr = binary.AppendUvarint(s.hb[:0], uint64(len(body)))
	if len(body) == 0 {
		s.bufs.put(buf)
		return nil
	}
	s.buf, s.body = buf, body
	return nil
}

// The fields of a bitswap message (boxo's message.proto) that takeBlocks
// reads: the 1.1+ payload, a repeated Block of prefix and data.
const (
	msgPayload  = 3
	blockPrefix = 1
	blockData   = 2
)

// takeBlocks offers every payload block of the bitswap message msg (its
// CID derived from its bytes with its prefix, as bitswap's decoder does)
// to take, and returns the message without the blocks take took, in place
// in msg's memory: every other field is kept byte for byte. A message that
// does not parse is returned whole and nothing is offered: bitswap's
// decoder then refuses it as before. A block that does not parse, or whose
// prefix names no hash this process knows, stays in the message.
func takeBlocks(msg []byte, take func(blocks.Block) bool) []byte {
	// first check that every top-level field parses, so that nothing is
	// taken from a message bitswap would refuse
	for b := msg; len(b) > 0; {
		_, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return msg
		}
		m := protowire.ConsumeFieldValue(0, typ, b[n:])
		if m < 0 {
			return msg
		}
		b = b[n+m:]
	}
	w := 0 // msg[:w] is what is kept so far
	for r := 0; r < len(msg); {
		num, typ, n := protowire.ConsumeTag(msg[r:])
		m := protowire.ConsumeFieldValue(num, typ, msg[r+n:])
		field := msg[r : r+n+m]
		r += n + m
		if num == msgPayload && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(msg[r-m:])
			if blk, ok := payloadBlock(v); ok && take(blk) {
				continue
			}
		}
		w += copy(msg[w:], field)
	}
	return msg[:w]
}

// payloadBlock parses one payload Block and derives its CID from its data.
// The last prefix and data fields count, as in protobuf decoding.
func payloadBlock(b []byte) (blocks.Block, bool) {
	var prefix, data []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, false
		}
		b = b[n:]
		if (num == blockPrefix || num == blockData) && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return nil, false
			}
			if num == blockPrefix {
				prefix = v
			} else {
				data = v
			}
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return nil, false
		}
		b = b[m:]
	}
	pref, err := cid.PrefixFromBytes(prefix)
	if err != nil {
		return nil, false
	}
	c, err := pref.Sum(data)
	if err != nil {
		return nil, false
	}
	blk, err := blocks.NewBlockWithCid(data, c)
	if err != nil {
		return nil, false
	}
	return blk, true
}
