package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"maps"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/blockstore"
	chunker "github.com/ipfs/boxo/chunker"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	"github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	uio "github.com/ipfs/boxo/ipld/unixfs/io"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	ipld "github.com/ipfs/go-ipld-format"
	carv2 "github.com/ipld/go-car/v2"
	mh "github.com/multiformats/go-multihash"
)

// The unixfs-v1-2025 import profile (see FIELD-NOTES.md).
const (
	chunkSize = 1 << 20
	maxLinks  = 1024
)

var cidV1 = cid.V1Builder{Codec: cid.DagProtobuf, MhType: mh.SHA2_256}

func newBlockstore() blockstore.Blockstore {
	return blockstore.NewBlockstore(dssync.MutexWrap(datastore.NewMapDatastore()))
}

func dagService(bs blockstore.Blockstore) ipld.DAGService {
	return merkledag.NewDAGService(blockservice.New(bs, nil))
}

// importFile adds data as a UnixFS file (CIDv1, raw leaves, 1 MiB chunks).
func importFile(tb testing.TB, bs blockstore.Blockstore, data []byte) ipld.Node {
	tb.Helper()
	return importFileShape(tb, bs, data, chunkSize, maxLinks)
}

// importFileShape imports with a given chunk size and fanout, to build
// deep DAGs from little data.
func importFileShape(tb testing.TB, bs blockstore.Blockstore, data []byte, chunk int64, links int) ipld.Node {
	tb.Helper()
	params := helpers.DagBuilderParams{
		Maxlinks:   links,
		RawLeaves:  true,
		CidBuilder: cidV1,
		Dagserv:    dagService(bs),
	}
	db, err := params.New(chunker.NewSizeSplitter(bytes.NewReader(data), chunk))
	if err != nil {
		tb.Fatal(err)
	}
	nd, err := balanced.Layout(db)
	if err != nil {
		tb.Fatal(err)
	}
	return nd
}

// importDir adds a flat directory of files and returns its root.
func importDir(tb testing.TB, bs blockstore.Blockstore, files map[string][]byte) cid.Cid {
	tb.Helper()
	ds := dagService(bs)
	dir, err := uio.NewBasicDirectory(ds, uio.WithCidBuilder(cidV1))
	if err != nil {
		tb.Fatal(err)
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if err := dir.AddChild(context.Background(), name, importFile(tb, bs, files[name])); err != nil {
			tb.Fatal(err)
		}
	}
	nd, err := dir.GetNode()
	if err != nil {
		tb.Fatal(err)
	}
	if err := ds.Add(context.Background(), nd); err != nil {
		tb.Fatal(err)
	}
	return nd.Cid()
}

// heldSet is a HeldFunc backed by a set.
type heldSet struct {
	mu sync.Mutex
	m  map[cid.Cid]bool
}

func newHeld(cs ...cid.Cid) *heldSet {
	h := &heldSet{m: map[cid.Cid]bool{}}
	for _, c := range cs {
		h.m[c] = true
	}
	return h
}

func (h *heldSet) Held(c cid.Cid) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.m[c]
}

// maxBlock bounds one CAR section's data, as a light client must.
const maxBlock = 2 << 20

// hasher verifies blocks against their CIDs, reusing one sha2-256 state.
type hasher struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

func (s *hasher) verify(c cid.Cid, data []byte) error {
	dec, err := mh.Decode(c.Hash())
	if err != nil {
		return fmt.Errorf("block %s: %w", c, err)
	}
	if dec.Code == mh.SHA2_256 {
		if s.h == nil {
			s.h = sha256.New()
		}
		s.h.Reset()
		s.h.Write(data)
		if !bytes.Equal(s.h.Sum(s.sum[:0]), dec.Digest) {
			return fmt.Errorf("block %s: bytes do not match the CID", c)
		}
		return nil
	}
	got, err := c.Prefix().Sum(data)
	if err != nil || !got.Equals(c) {
		return fmt.Errorf("block %s: bytes do not match the CID", c)
	}
	return nil
}

// readVerifiedFile reads a CARv1 stream of a whole UnixFS file (dag-scope
// all, no duplicates) the way a light client must: one root, the expected
// one; blocks arrive in depth-first link order, nothing missing, nothing
// extra, and each block hashes to its CID. It returns the file bytes,
// reassembled from the raw leaves and appended to dst[:0], and returns
// them only once every block has verified.
//
// As an efficient client would, it reads raw leaves in place into the
// output (pass a reused buffer to keep page faults out of benchmarks) and
// hashes them on other goroutines (one per core, see verifyWorkers) while
// the next block downloads.
// dag-pb blocks are verified inline, since their links drive the order
// check.
func readVerifiedFile(r io.Reader, root cid.Cid, dst []byte) ([]byte, error) {
	hashWorkers := verifyWorkers()
	type job struct {
		c    cid.Cid
		data []byte
	}
	jobs := make(chan job, 16)
	hashErr := make(chan error, hashWorkers)
	for range hashWorkers {
		go func() {
			var first error
			var s hasher
			for j := range jobs {
				if first == nil {
					first = s.verify(j.c, j.data)
				}
			}
			hashErr <- first
		}()
	}
	out, err := readCAROrdered(r, root, dst, func(c cid.Cid, data []byte) { jobs <- job{c, data} })
	close(jobs)
	for range hashWorkers {
		if herr := <-hashErr; err == nil {
			err = herr
		}
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// verifyWorkers is how many goroutines hash leaves: one per core, at most
// 4; MIRRORNET_BENCH_HASHERS overrides it (1 reproduces the single-hasher
// client).
func verifyWorkers() int {
	if n, err := strconv.Atoi(os.Getenv("MIRRORNET_BENCH_HASHERS")); err == nil && n > 0 {
		return n
	}
	return max(1, min(runtime.GOMAXPROCS(0), 4))
}

// readCAROrdered does readVerifiedFile's structural checks and hands every
// raw leaf to verifyLeaf (which must not retain an error silently).
func readCAROrdered(r io.Reader, root cid.Cid, dst []byte, verifyLeaf func(cid.Cid, []byte)) ([]byte, error) {
	br, err := carv2.NewBlockReader(bufio.NewReaderSize(r, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("car header: %w", err)
	}
	if br.Version != 1 {
		return nil, fmt.Errorf("car version %d, want 1", br.Version)
	}
	if len(br.Roots) != 1 || !br.Roots[0].Equals(root) {
		return nil, fmt.Errorf("car roots %v, want [%s]", br.Roots, root)
	}
	out := dst[:0]
	stack := []cid.Cid{root} // expected blocks, next on top
	seen := map[cid.Cid][]byte{}
	var inline hasher
	// expand handles a block (new or seen before): raw data is appended
	// unless it already is, dag-pb links are pushed so the first link is
	// expected next.
	expand := func(c cid.Cid, data []byte, inPlace bool) error {
		switch c.Type() {
		case cid.Raw:
			if inPlace {
				out = out[:len(out)+len(data)]
			} else {
				out = append(out, data...)
			}
		case cid.DagProtobuf:
			nd, err := merkledag.DecodeProtobuf(data)
			if err != nil {
				return fmt.Errorf("block %s: %w", c, err)
			}
			links := nd.Links()
			for i := len(links) - 1; i >= 0; i-- {
				stack = append(stack, links[i].Cid)
			}
		default:
			return fmt.Errorf("block %s: unexpected codec %x", c, c.Type())
		}
		return nil
	}
	for {
		// Blocks already seen are not sent again (dups=n): replay them.
		for len(stack) > 0 {
			top := stack[len(stack)-1]
			data, ok := seen[top]
			if !ok {
				break
			}
			stack = stack[:len(stack)-1]
			if err := expand(top, data, false); err != nil {
				return nil, err
			}
		}
		c, rd, n, err := br.NextReader()
		if errors.Is(err, io.EOF) {
			if len(stack) > 0 {
				return nil, fmt.Errorf("car ends with %d blocks missing, next %s", len(stack), stack[len(stack)-1])
			}
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if len(stack) == 0 {
			return nil, fmt.Errorf("extraneous block %s", c)
		}
		want := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if !c.Equals(want) {
			return nil, fmt.Errorf("block %s out of order, want %s", c, want)
		}
		if n > maxBlock {
			return nil, fmt.Errorf("block %s: %d bytes, over the %d limit", c, n, maxBlock)
		}
		var data []byte
		inPlace := c.Type() == cid.Raw
		if inPlace {
			out = slices.Grow(out, int(n))
			data = out[len(out) : len(out)+int(n)]
		} else {
			data = make([]byte, n)
		}
		if _, err := io.ReadFull(rd, data); err != nil {
			return nil, fmt.Errorf("block %s: %w", c, err)
		}
		if inPlace {
			verifyLeaf(c, data)
		} else if err := inline.verify(c, data); err != nil {
			return nil, err
		}
		seen[want] = data
		if err := expand(want, data, inPlace); err != nil {
			return nil, err
		}
	}
}

// readCARBlocks reads every block of a CAR (hash-checked) into a new
// blockstore and returns it with the roots and the block count.
func readCARBlocks(tb testing.TB, r io.Reader) (blockstore.Blockstore, []cid.Cid, int) {
	tb.Helper()
	br, err := carv2.NewBlockReader(r)
	if err != nil {
		tb.Fatal(err)
	}
	if br.Version != 1 {
		tb.Fatalf("car version %d, want 1", br.Version)
	}
	bs := newBlockstore()
	n := 0
	for {
		blk, err := br.Next()
		if errors.Is(err, io.EOF) {
			return bs, br.Roots, n
		}
		if err != nil {
			tb.Fatalf("car block %d: %v", n, err)
		}
		if err := bs.Put(context.Background(), blk); err != nil {
			tb.Fatal(err)
		}
		n++
	}
}
