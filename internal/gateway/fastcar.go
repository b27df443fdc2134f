package gateway

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/ipfs/boxo/blockstore"
	boxogw "github.com/ipfs/boxo/gateway"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/path"
	"github.com/ipfs/go-cid"
	carv2 "github.com/ipld/go-car/v2"
	"github.com/ipld/go-car/v2/storage"
	mh "github.com/multiformats/go-multihash"
)

// carBackend is boxo's BlocksBackend with a direct path for the request
// light clients make most: the whole DAG of a bundle as a CAR
// (/ipfs/{cid}?format=car, dag-scope=all, no entity-bytes, no duplicates).
//
// boxo serves that through a go-ipld-prime traversal that re-hashes every
// block it loads and copies each one through io.ReadAll before writing it
// to a pipe; on a 256 MiB bundle that is most of the server's CPU (see
// docs/BENCHMARKS.md). The direct path walks the same DAG in the same
// order (depth first, links in their serialised order, each CID visited
// once) and writes each block as stored through the same go-car writer,
// straight to the response. The store verifies blocks when it writes them
// and the client verifies every block it reads, so nothing is trusted that
// was not already.
//
// It is used only for DAGs made of dag-pb and raw blocks with
// non-identity hashes (every UnixFS bundle in the unixfs-v1-2025 profile),
// checked by a walk over the dag-pb blocks before the response starts.
// Anything else, and every other request, goes to boxo unchanged.
type carBackend struct {
	*boxogw.BlocksBackend
	bs blockstore.Blockstore

	direct   atomic.Int64 // CAR responses served by the direct path (for tests)
	noDirect bool         // benchmarks compare with boxo's own path
}

var _ boxogw.IPFSBackend = (*carBackend)(nil)

func (b *carBackend) GetCAR(ctx context.Context, p path.ImmutablePath, params boxogw.CarParams) (boxogw.ContentPathMetadata, io.ReadCloser, error) {
	if b.noDirect || params.Scope != boxogw.DagScopeAll || params.Range != nil || params.Duplicates.Bool() ||
		len(p.Segments()) != 2 || !plainDAG(ctx, b.bs, p.RootCid()) {
		return b.BlocksBackend.GetCAR(ctx, p, params)
	}
	md, err := b.BlocksBackend.ResolvePath(ctx, p)
	if err != nil {
		return b.BlocksBackend.GetCAR(ctx, p, params)
	}
	b.direct.Add(1)
	return md, &carStream{ctx: ctx, bs: b.bs, root: p.RootCid()}, nil
}

// plainCID reports whether c is a block the direct path handles.
func plainCID(c cid.Cid) bool {
	return (c.Type() == cid.DagProtobuf || c.Type() == cid.Raw) && c.Prefix().MhType != mh.IDENTITY
}

// plainDAG reports whether every block reachable from root is dag-pb or
// raw with a non-identity hash, and every dag-pb block is present and
// decodes. It reads only the dag-pb blocks (the small interior nodes).
func plainDAG(ctx context.Context, bs blockstore.Blockstore, root cid.Cid) bool {
	stack := []cid.Cid{root}
	seen := map[cid.Cid]struct{}{}
	for len(stack) > 0 {
		c := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if _, ok := seen[c]; ok {
			continue
		}
		seen[c] = struct{}{}
		if !plainCID(c) {
			return false
		}
		if c.Type() == cid.Raw {
			continue
		}
		blk, err := bs.Get(ctx, c)
		if err != nil {
			return false
		}
		nd, err := merkledag.DecodeProtobuf(blk.RawData())
		if err != nil {
			return false
		}
		for _, l := range nd.Links() {
			stack = append(stack, l.Cid)
		}
	}
	return true
}

// carStream is a CARv1 of the DAG under root. io.Copy uses WriteTo, which
// writes blocks straight to the response; Read (for other callers) runs
// WriteTo on a goroutine behind a pipe, which Close stops.
type carStream struct {
	ctx  context.Context
	bs   blockstore.Blockstore
	root cid.Cid

	once sync.Once
	pr   *io.PipeReader
	done chan struct{}
}

// errStreamed: WriteTo or Read was called after the stream was consumed.
var errStreamed = errors.New("gateway: car stream already consumed")

// WriteTo writes the whole CAR to w.
func (s *carStream) WriteTo(w io.Writer) (int64, error) {
	started := false
	s.once.Do(func() { started = true })
	if !started {
		return 0, errStreamed
	}
	return s.write(w)
}

// readAhead is how many blocks the walker reads ahead of the writer: the
// store's Get (which may verify each block's hash) overlaps the socket
// writes. 4 blocks is 4 MiB per response with 1 MiB chunks.
const readAhead = 4

// ReadAheadBudget bounds the read-ahead buffers of every CAR stream of
// the process together, in blocks (up to 1 MiB each). Each stream always
// has one block in hand, unbudgeted, so it never waits for others; reading
// further ahead takes a unit of this budget, without waiting. A stream
// whose client stops reading holds at most one block of its own, plus
// what it took from the budget: memory is at most (streams in flight) MiB
// plus ReadAheadBudget MiB, not six times the streams in flight.
const ReadAheadBudget = 32

// readAheadUnits is the shared budget: a send takes a unit, a receive
// returns it.
var readAheadUnits = make(chan struct{}, ReadAheadBudget)

// walked is one block of the walk, in CAR order, or the error that ended it.
type walked struct {
	c    cid.Cid
	data []byte
	err  error
	// more are raw leaves read with this one into the same buffer
	// (manyGetter), written after it.
	more []leaf
	// reuse: buf is a buffer of the stream's own, holding data (and
	// more), to be recycled once written.
	reuse bool
	buf   []byte
	// budgeted: reading this block took a unit of readAheadUnits, which
	// the writer returns once the block is written.
	budgeted bool
}

// intoGetter is a blockstore that can read a block into a caller's buffer
// (ipfsbs.Blockstore: internal/store on disk). Reading 1 MiB leaves into
// fresh memory costs a page fault per 4 KiB, about as much as the copy
// from the page cache itself; the stream reuses readAhead+2 buffers.
type intoGetter interface {
	GetInto(ctx context.Context, c cid.Cid, buf []byte) ([]byte, error)
}

// manyGetter reads several blocks into one buffer, as many as fit (at
// least one), with one read for blocks stored next to each other
// (ipfsbs.Blockstore): a directory of small files is one system call, not
// one per file.
type manyGetter interface {
	GetManyInto(ctx context.Context, cs []cid.Cid, buf []byte) ([][]byte, error)
}

// maxRun bounds the leaves asked of GetManyInto at once.
const maxRun = 256

// leaf is a raw leaf and its bytes.
type leaf struct {
	c    cid.Cid
	data []byte
}

// getLeafBuf is a buffer for a raw leaf from rawBufs (1 MiB, a bundle's
// largest leaves): a stream's buffers outlive it, so a bundle of thousands
// of small files, fetched a directory per request, does not read every
// leaf into fresh memory (half the blocks did not fit the recycled buffer
// of a smaller one, and the garbage cost the mirror a fifth of its CPU).
func getLeafBuf() []byte { return (*rawBufs.Get().(*[]byte))[:0] }

// putLeafBuf returns a buffer of getLeafBuf's size to rawBufs; a larger
// one, read for a block above 1 MiB, is left to the collector.
func putLeafBuf(b []byte) {
	if cap(b) == 1<<20 {
		b = b[:cap(b)]
		rawBufs.Put(&b)
	}
}

// carWriteBuffer is the buffer between the CAR writer and the response.
// The writer puts each block in two or three pieces (length, CID, bytes):
// without a buffer a bundle of small files costs a system call per piece.
// Pieces at least this large go straight through.
const carWriteBuffer = 64 << 10

func (s *carStream) write(w io.Writer) (int64, error) {
	bw := bufio.NewWriterSize(w, carWriteBuffer)
	cw := &countingWriter{w: bw}
	// go-car writes the header; the sections are written here (see
	// section), as go-car's Put would write them without the index it
	// keeps of every block.
	if _, err := storage.NewWritable(cw, []cid.Cid{s.root}, carv2.WriteAsCarV1(true)); err != nil {
		return cw.n, fmt.Errorf("gateway: car writer: %w", err)
	}
	sent := map[string]struct{}{}
	ctx, cancel := context.WithCancel(s.ctx)
	blks := make(chan walked, readAhead)
	free := make(chan []byte, readAhead+2)
	written := make(chan struct{}, readAhead+2) // one per raw leaf written
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(blks)
		if err := s.walk(ctx, blks, free, written); err != nil {
			select {
			case blks <- walked{err: err}:
			case <-ctx.Done():
			}
		}
	}()
	defer func() {
		cancel()
		// Return the budget of blocks read but never written.
		for b := range blks {
			if b.budgeted {
				<-readAheadUnits
			}
		}
		wg.Wait()
		// The walker is done: its buffers go back for the next stream.
		for {
			select {
			case buf := <-free:
				putLeafBuf(buf)
			default:
				return
			}
		}
	}()
	for b := range blks {
		if b.err != nil {
			return cw.n, b.err
		}
		err := section(cw, sent, b.c, b.data)
		for _, m := range b.more {
			if err == nil {
				err = section(cw, sent, m.c, m.data)
			}
		}
		if b.budgeted {
			<-readAheadUnits
		}
		if b.reuse {
			written <- struct{}{} // never blocks: at most readAhead+2 leaves are out
		}
		if err != nil {
			return cw.n, err
		}
		if b.reuse {
			select {
			case free <- b.buf[:0]:
			default:
			}
		}
	}
	// The walker closes blks early only when ctx ends.
	if err := s.ctx.Err(); err != nil {
		return cw.n, err
	}
	return cw.n, bw.Flush()
}

// walk sends the DAG's blocks depth first, links in serialised order, each
// CID once, as boxo's traversal with LinkVisitOnlyOnce visits them.
//
// Raw leaves are read into buffers from free when the blockstore is an
// intoGetter; the writer hands them back through free once written.
//
// The first leaf not yet written is read freely; every further one (read
// ahead) takes a unit of readAheadUnits, or waits until the writer has
// written the leaves already out.
func (s *carStream) walk(ctx context.Context, out chan<- walked, free chan []byte, written <-chan struct{}) error {
	into, _ := s.bs.(intoGetter)
	many, _ := s.bs.(manyGetter)
	var run []cid.Cid
	outstanding := 0 // leaves sent and not yet written
	stack := []cid.Cid{s.root}
	visited := map[cid.Cid]struct{}{}
	for len(stack) > 0 {
		c := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if _, ok := visited[c]; ok {
			continue
		}
		visited[c] = struct{}{}
		if into != nil && c.Type() == cid.Raw {
			budgeted := false
		drain:
			for {
				select {
				case <-written:
					outstanding--
					continue
				default:
				}
				if outstanding == 0 {
					break drain
				}
				select {
				case readAheadUnits <- struct{}{}:
					budgeted = true
					break drain
				default:
				}
				// No budget to read ahead: wait for the writer.
				select {
				case <-written:
					outstanding--
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			var buf []byte
			select {
			case buf = <-free:
			default:
				buf = getLeafBuf()
			}
			var data []byte
			var more []leaf
			var err error
			if many != nil {
				// c and the raw leaves that come next in the walk (a
				// directory's small files), as many as fit buf.
				run = append(run[:0], c)
				for i := len(stack) - 1; i >= 0 && len(run) < maxRun; i-- {
					n := stack[i]
					if _, ok := visited[n]; ok || n.Type() != cid.Raw || slices.Contains(run, n) {
						break
					}
					run = append(run, n)
				}
				var datas [][]byte
				if datas, err = many.GetManyInto(ctx, run, buf); err == nil {
					data = datas[0]
					for i, d := range datas[1:] {
						more = append(more, leaf{c: run[i+1], data: d})
						visited[run[i+1]] = struct{}{}
					}
					stack = stack[:len(stack)-len(more)]
				}
			} else {
				data, err = into.GetInto(ctx, c, buf)
			}
			if err != nil {
				if budgeted {
					<-readAheadUnits
				}
				return fmt.Errorf("gateway: block %s: %w", c, err)
			}
			if cap(data) > cap(buf) {
				buf = data // read into memory of its own: recycle that
			}
			select {
			case out <- walked{c: c, data: data, more: more, reuse: true, buf: buf, budgeted: budgeted}:
				outstanding++
			case <-ctx.Done():
				if budgeted {
					<-readAheadUnits
				}
				return ctx.Err()
			}
			continue
		}
		blk, err := s.bs.Get(ctx, c)
		if err != nil {
			return fmt.Errorf("gateway: block %s: %w", c, err)
		}
		select {
		case out <- walked{c: c, data: blk.RawData()}:
		case <-ctx.Done():
			return ctx.Err()
		}
		if c.Type() != cid.DagProtobuf {
			continue
		}
		nd, err := merkledag.DecodeProtobuf(blk.RawData())
		if err != nil {
			return fmt.Errorf("gateway: block %s: %w", c, err)
		}
		links := nd.Links()
		for i := len(links) - 1; i >= 0; i-- {
			stack = append(stack, links[i].Cid)
		}
	}
	return nil
}

// section writes one CARv1 section (its length as a varint, the CID, the
// block) unless a block with the same multihash was written already: what
// go-car's Put does with duplicates disallowed, whose insertion index of
// every block written was a tenth of the mirror's CPU on a bundle of small
// files.
func section(w io.Writer, sent map[string]struct{}, c cid.Cid, data []byte) error {
	h := c.Hash()
	if _, ok := sent[string(h)]; ok {
		return nil
	}
	sent[string(h)] = struct{}{}
	cb := c.Bytes()
	var hdr [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[:], uint64(len(cb)+len(data)))
	if _, err := w.Write(hdr[:n]); err != nil {
		return err
	}
	if _, err := w.Write(cb); err != nil {
		return err
	}
	_, err := w.Write(data)
	return err
}

// Read streams the CAR through a pipe fed by a goroutine that Close stops.
func (s *carStream) Read(p []byte) (int, error) {
	s.once.Do(func() {
		pr, pw := io.Pipe()
		s.pr, s.done = pr, make(chan struct{})
		go func() {
			defer close(s.done)
			_, err := s.write(pw)
			_ = pw.CloseWithError(err) // always nil
		}()
	})
	if s.pr == nil {
		return 0, errStreamed
	}
	return s.pr.Read(p)
}

// Close stops the Read goroutine, if any, and waits for it.
func (s *carStream) Close() error {
	s.once.Do(func() {}) // no stream after Close
	if s.pr != nil {
		_ = s.pr.Close() // always nil; the writer's next Write fails
		<-s.done
	}
	return nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
