package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/blockstore"
	boxogw "github.com/ipfs/boxo/gateway"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs"
	uio "github.com/ipfs/boxo/ipld/unixfs/io"
	"github.com/ipfs/boxo/path"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	mh "github.com/multiformats/go-multihash"
)

func newCarBackend(t *testing.T, bs blockstore.Blockstore) *carBackend {
	t.Helper()
	bb, err := boxogw.NewBlocksBackend(blockservice.New(bs, nil))
	if err != nil {
		t.Fatal(err)
	}
	return &carBackend{BlocksBackend: bb, bs: bs}
}

func readAllCAR(t *testing.T, get func() (boxogw.ContentPathMetadata, io.ReadCloser, error), viaRead bool) (boxogw.ContentPathMetadata, []byte) {
	t.Helper()
	md, rc, err := get()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	if viaRead {
		_, err = io.Copy(&buf, struct{ io.Reader }{rc}) // hide WriterTo
	} else {
		_, err = io.Copy(&buf, rc)
	}
	if err != nil {
		t.Fatal(err)
	}
	return md, buf.Bytes()
}

// TestDirectCARMatchesBoxo: the direct path writes byte for byte the CAR
// boxo's traversal writes, for the DAG shapes bundles have: multi-level
// files, directories, duplicate leaves and duplicate subtrees.
func TestDirectCARMatchesBoxo(t *testing.T) {
	bs := newBlockstore()
	ctx := context.Background()
	ds := dagService(bs)

	zeros := importFile(t, bs, make([]byte, 5*chunkSize+17))         // every full leaf the same CID
	deep := importFileShape(t, bs, randomBytes(100_000, 7), 1024, 4) // 98 leaves, 4 levels
	shared := importFile(t, bs, randomBytes(2*chunkSize+5, 8))

	sub, err := uio.NewBasicDirectory(ds, uio.WithCidBuilder(cidV1))
	if err != nil {
		t.Fatal(err)
	}
	_ = sub.AddChild(ctx, "copy.bin", shared)
	_ = sub.AddChild(ctx, "tiny.txt", importFile(t, bs, []byte("tiny")))
	subNd, _ := sub.GetNode()
	_ = ds.Add(ctx, subNd)
	top, _ := uio.NewBasicDirectory(ds, uio.WithCidBuilder(cidV1))
	_ = top.AddChild(ctx, "shared.bin", shared)
	_ = top.AddChild(ctx, "sub", subNd)
	_ = top.AddChild(ctx, "zeros.bin", zeros)
	_ = top.AddChild(ctx, "index.html", importFile(t, bs, []byte("<h1>x</h1>")))
	topNd, _ := top.GetNode()
	if err := ds.Add(ctx, topNd); err != nil {
		t.Fatal(err)
	}

	// Through a plain blockstore, and through one that reads raw leaves
	// into the stream's recycled buffers (as internal/store does): a
	// buffer reused before its block was written would corrupt the CAR.
	// And through one that reads runs of leaves into one buffer (as
	// internal/store does for blocks stored one after another): a run
	// must take the leaves the walk visits next, in order, once each.
	into := &intoStore{Blockstore: bs}
	many := &manyStore{intoStore: intoStore{Blockstore: bs}}
	for _, bsv := range []blockstore.Blockstore{bs, into, many} {
		b := newCarBackend(t, bsv)
		t.Run(fmt.Sprintf("%T", bsv), func(t *testing.T) { directMatchesBoxo(t, b, topNd, zeros, deep, bs) })
	}
	if into.calls.Load() == 0 {
		t.Fatal("GetInto never used")
	}
	if many.longest.Load() < 3 {
		t.Fatalf("longest run of leaves read at once: %d", many.longest.Load())
	}
}

// manyStore is intoStore with GetManyInto: it copies the blocks one after
// another into buf while they fit (the first into memory of its own if it
// does not), and records the longest run.
type manyStore struct {
	intoStore
	longest atomic.Int64
}

func (s *manyStore) GetManyInto(ctx context.Context, cs []cid.Cid, buf []byte) ([][]byte, error) {
	var out [][]byte
	used := 0
	for i, c := range cs {
		blk, err := s.Get(ctx, c)
		if err != nil {
			if i == 0 {
				return nil, err
			}
			break
		}
		d := blk.RawData()
		if used+len(d) > cap(buf) {
			if i == 0 {
				out = append(out, slices.Clone(d))
			}
			break
		}
		out = append(out, append(buf[used:used], d...))
		used += len(d)
	}
	if n := int64(len(out)); n > s.longest.Load() {
		s.longest.Store(n)
	}
	return out, nil
}

// intoStore adds GetInto to a blockstore, copying into the caller's
// buffer, and counts the calls.
type intoStore struct {
	blockstore.Blockstore
	calls atomic.Int64
	// small counts the calls whose buffer could not hold 1 MiB (nil
	// included): those blocks were read into fresh memory.
	small atomic.Int64
}

func (s *intoStore) GetInto(ctx context.Context, c cid.Cid, buf []byte) ([]byte, error) {
	s.calls.Add(1)
	if cap(buf) < 1<<20 {
		s.small.Add(1)
	}
	blk, err := s.Get(ctx, c)
	if err != nil {
		return nil, err
	}
	return append(buf[:0], blk.RawData()...), nil
}

func directMatchesBoxo(t *testing.T, b *carBackend, topNd, zeros, deep ipld.Node, bs blockstore.Blockstore) {
	ctx := context.Background()
	params := boxogw.CarParams{Scope: boxogw.DagScopeAll}
	for _, tc := range []struct {
		name string
		root cid.Cid
	}{
		{"zeros file", zeros.Cid()},
		{"multi-level file", deep.Cid()},
		{"directory tree with duplicates", topNd.Cid()},
		{"raw root", importFile(t, bs, []byte("one block")).Cid()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := path.NewImmutablePath(path.FromCid(tc.root))
			if err != nil {
				t.Fatal(err)
			}
			wantMD, want := readAllCAR(t, func() (boxogw.ContentPathMetadata, io.ReadCloser, error) {
				return b.BlocksBackend.GetCAR(ctx, p, params)
			}, false)
			for _, viaRead := range []bool{false, true} {
				before := b.direct.Load()
				md, got := readAllCAR(t, func() (boxogw.ContentPathMetadata, io.ReadCloser, error) {
					return b.GetCAR(ctx, p, params)
				}, viaRead)
				if b.direct.Load() != before+1 {
					t.Fatal("direct path not taken")
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("viaRead=%v: direct CAR (%d bytes) differs from boxo's (%d bytes)", viaRead, len(got), len(want))
				}
				if md.LastSegment.String() != wantMD.LastSegment.String() || len(md.PathSegmentRoots) != len(wantMD.PathSegmentRoots) {
					t.Fatalf("metadata %+v, want %+v", md, wantMD)
				}
			}
		})
	}
}

// TestDirectCARFallsBack: requests and DAGs outside the direct path's
// scope go to boxo.
func TestDirectCARFallsBack(t *testing.T) {
	bs := newBlockstore()
	ctx := context.Background()
	file := importFile(t, bs, randomBytes(3*chunkSize, 9))

	// A dag-pb node linking to a dag-cbor block, and one linking to an
	// identity CID: valid DAGs that are not plain UnixFS.
	cbor := blocks.NewBlock([]byte{0xa0}) // empty map
	cborCid, _ := cid.V1Builder{Codec: cid.DagCBOR, MhType: mh.SHA2_256}.Sum(cbor.RawData())
	cborBlk, _ := blocks.NewBlockWithCid(cbor.RawData(), cborCid)
	_ = bs.Put(ctx, cborBlk)
	withCbor := unixfs.EmptyDirNode()
	withCbor.SetCidBuilder(cidV1)
	_ = withCbor.AddRawLink("x", &ipld.Link{Cid: cborCid})
	idCid, _ := cid.V1Builder{Codec: cid.Raw, MhType: mh.IDENTITY}.Sum([]byte("inline"))
	withID := unixfs.EmptyDirNode()
	withID.SetCidBuilder(cidV1)
	_ = withID.AddRawLink("y", &ipld.Link{Cid: idCid})
	ds := merkledag.NewDAGService(blockservice.New(bs, nil))
	_ = ds.Add(ctx, withCbor)
	_ = ds.Add(ctx, withID)

	b := newCarBackend(t, bs)
	fp, _ := path.NewImmutablePath(path.FromCid(file.Cid()))
	to := int64(10)
	for _, tc := range []struct {
		name   string
		root   cid.Cid
		params boxogw.CarParams
		subdir string
	}{
		{"entity scope", file.Cid(), boxogw.CarParams{Scope: boxogw.DagScopeEntity}, ""},
		{"block scope", file.Cid(), boxogw.CarParams{Scope: boxogw.DagScopeBlock}, ""},
		{"entity-bytes", file.Cid(), boxogw.CarParams{Scope: boxogw.DagScopeEntity, Range: &boxogw.DagByteRange{From: 0, To: &to}}, ""},
		{"dups=y", file.Cid(), boxogw.CarParams{Scope: boxogw.DagScopeAll, Duplicates: boxogw.DuplicateBlocksIncluded}, ""},
		{"dag-cbor child", withCbor.Cid(), boxogw.CarParams{Scope: boxogw.DagScopeAll}, ""},
		{"identity child", withID.Cid(), boxogw.CarParams{Scope: boxogw.DagScopeAll}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := fp
			if tc.root != file.Cid() {
				p, _ = path.NewImmutablePath(path.FromCid(tc.root))
			}
			before := b.direct.Load()
			_, rc, err := b.GetCAR(ctx, p, tc.params)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, rc)
			rc.Close()
			if b.direct.Load() != before {
				t.Fatal("direct path taken; want boxo")
			}
		})
	}
	missing, _ := cidV1.Sum([]byte("never stored"))
	if plainDAG(ctx, bs, missing) {
		t.Error("plainDAG true for a missing dag-pb root")
	}
}

// TestDirectCARStopsOnCancel: a cancelled request ends the stream with an
// error, not a silent short CAR.
func TestDirectCARStopsOnCancel(t *testing.T) {
	bs := newBlockstore()
	file := importFile(t, bs, randomBytes(4*chunkSize, 10))
	b := newCarBackend(t, bs)
	ctx, cancel := context.WithCancel(context.Background())
	p, _ := path.NewImmutablePath(path.FromCid(file.Cid()))
	_, rc, err := b.GetCAR(ctx, p, boxogw.CarParams{Scope: boxogw.DagScopeAll})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	w := &cancelAfter{n: 2 * chunkSize, cancel: cancel}
	if _, err := io.Copy(w, rc); err == nil {
		t.Fatal("stream completed after cancel")
	}
}

type cancelAfter struct {
	n      int
	cancel func()
}

func (c *cancelAfter) Write(p []byte) (int, error) {
	c.n -= len(p)
	if c.n <= 0 {
		c.cancel()
	}
	return len(p), nil
}

// TestDirectCARCloseStopsReader: a stream read with Read and closed early
// stops its writer goroutine (Close waits for it) and reads no further.
func TestDirectCARCloseStopsReader(t *testing.T) {
	bs := newBlockstore()
	file := importFile(t, bs, randomBytes(4*chunkSize, 11))
	b := newCarBackend(t, bs)
	p, _ := path.NewImmutablePath(path.FromCid(file.Cid()))
	_, rc, err := b.GetCAR(context.Background(), p, boxogw.CarParams{Scope: boxogw.DagScopeAll})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1000)
	if _, err := io.ReadFull(rc, buf); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { rc.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return: writer goroutine still running")
	}
	if _, err := rc.Read(buf); err == nil {
		t.Fatal("Read after Close succeeded")
	}
}

// TestDirectCARBuffersSmallBlocks: a bundle of many small files reaches
// the response in few large writes (a system call each on a socket), not
// a write per piece of every block, and byte for byte as boxo writes it.
func TestDirectCARBuffersSmallBlocks(t *testing.T) {
	bs := newBlockstore()
	files := map[string][]byte{}
	for i := range 300 {
		files[fmt.Sprintf("f%03d.js", i)] = randomBytes(100+i*7, uint64(20+i))
	}
	root := importDir(t, bs, files)
	b := newCarBackend(t, bs)
	p, _ := path.NewImmutablePath(path.FromCid(root))
	_, rc, err := b.GetCAR(context.Background(), p, boxogw.CarParams{Scope: boxogw.DagScopeAll})
	if err != nil {
		t.Fatal(err)
	}
	w := &countWrites{}
	if _, err := io.Copy(w, rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if b.direct.Load() != 1 {
		t.Fatal("direct path not taken")
	}
	if max := w.buf.Len()/carWriteBuffer + 2; w.calls > max {
		t.Errorf("%d writes for a %d-byte CAR of 301 blocks, want at most %d", w.calls, w.buf.Len(), max)
	}
	b.noDirect = true
	_, want := readAllCAR(t, func() (boxogw.ContentPathMetadata, io.ReadCloser, error) {
		return b.GetCAR(context.Background(), p, boxogw.CarParams{Scope: boxogw.DagScopeAll})
	}, false)
	if !bytes.Equal(w.buf.Bytes(), want) {
		t.Fatal("direct CAR differs from boxo's")
	}
}

// TestDirectCARReadsIntoPooledBuffers: every raw leaf of a stream is read
// into a buffer that holds any leaf of a bundle (1 MiB), recycled within
// the stream and kept for the next one, so a bundle of many small files
// of varied sizes is not read into fresh memory block by block (a
// recycled buffer of a smaller file could not hold a larger one).
func TestDirectCARReadsIntoPooledBuffers(t *testing.T) {
	bs := newBlockstore()
	files := map[string][]byte{}
	for i := range 200 {
		files[fmt.Sprintf("f%03d.js", i)] = randomBytes(100+(i*7919)%16384, uint64(40+i))
	}
	root := importDir(t, bs, files)
	into := &intoStore{Blockstore: bs}
	b := newCarBackend(t, into)
	p, _ := path.NewImmutablePath(path.FromCid(root))
	for range 2 {
		_, got := readAllCAR(t, func() (boxogw.ContentPathMetadata, io.ReadCloser, error) {
			return b.GetCAR(context.Background(), p, boxogw.CarParams{Scope: boxogw.DagScopeAll})
		}, false)
		if len(got) == 0 {
			t.Fatal("empty CAR")
		}
	}
	if b.direct.Load() != 2 || into.calls.Load() < 400 {
		t.Fatalf("direct path taken %d times, %d leaves read", b.direct.Load(), into.calls.Load())
	}
	if n := into.small.Load(); n > 0 {
		t.Fatalf("%d of %d leaves read into a buffer smaller than 1 MiB", n, into.calls.Load())
	}
}

type countWrites struct {
	buf   bytes.Buffer
	calls int
}

func (c *countWrites) Write(p []byte) (int, error) {
	c.calls++
	return c.buf.Write(p)
}
