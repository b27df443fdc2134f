// Package bundle turns a file or directory into an IPFS UnixFS DAG whose root
// CID is exactly the one `ipfs add -r` makes under kubo's `unixfs-v1-2025`
// import profile (IPIP-499), and gives the small pure helpers the rest of
// mirrornet needs to handle such DAGs: the links of a block, a hash check,
// and a depth-first walk in CAR export order.
//
// The profile: CIDv1, sha2-256, raw leaves, fixed 1 MiB chunks, balanced file
// layout with at most 1024 links per node, HAMT directories with fanout 256
// once a directory's serialized block would exceed 256 KiB (block-size
// estimation), and no mode or mtime. The DAG is built by boxo's importer and
// directory code, the same code kubo uses; all settings are passed per call,
// so no boxo global is modified.
//
// The package does no network I/O and never reads the clock. Import reads the
// file system; everything else is a pure function of its arguments.
package bundle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	chunker "github.com/ipfs/boxo/chunker"
	dag "github.com/ipfs/boxo/ipld/merkledag"
	ft "github.com/ipfs/boxo/ipld/unixfs"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	"github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	uio "github.com/ipfs/boxo/ipld/unixfs/io"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/mirrornet/mirrornet/internal/bundle/verify"
)

// Profile is the import profile every bundle uses (IPIP-499 `unixfs-v1-2025`).
var Profile = uio.UnixFS_v1_2025

// MaxBlockSize is the largest block a bundle may contain: the bitswap spec
// maximum (2 MiB). Import never makes a block larger than a 1 MiB chunk plus
// framing; peers must refuse larger ones.
const MaxBlockSize = verify.MaxBlockSize

// The block-level errors are verify's sentinels, re-exported so errors.Is
// works whichever package a caller imports.
var (
	// ErrHashMismatch means a block's bytes do not hash to its CID.
	ErrHashMismatch = verify.ErrHashMismatch
	// ErrUnsupportedCodec means a block uses a codec other than dag-pb or raw.
	ErrUnsupportedCodec = verify.ErrUnsupportedCodec
	// ErrBadBlock means a dag-pb block could not be decoded.
	ErrBadBlock = verify.ErrBadBlock
	// ErrUnsupportedFile means the path is neither a regular file, a
	// directory nor a symlink (a device, socket or FIFO).
	ErrUnsupportedFile = errors.New("bundle: unsupported file type")
	// ErrBadName means a file name inside the imported directory is one
	// `mirrornet get -o` would refuse to write: publish and get share one
	// rule, verify.NameProblem.
	ErrBadName = verify.ErrBadName
)

// Result summarises an import.
type Result struct {
	Root   cid.Cid
	Size   int64 // sum of the bytes of every distinct block
	Blocks int   // number of distinct blocks
	Files  int   // regular files imported
}

// Import builds the DAG of path (a directory or one file) and hands every
// block to put, children before parents. A block that occurs twice (two
// identical files) is passed to put once. progress, if not nil, is called
// with the number of file bytes read so far. Symlinks inside a directory are
// stored as UnixFS symlink nodes, as kubo does by default; a symlink given as
// path itself is followed.
//
// Errors name the path: `bundle: open /x/y: permission denied`. A file name
// that get -o would refuse to write (verify.NameProblem) is refused with
// ErrBadName, naming the file.
func Import(ctx context.Context, path string, put func(blocks.Block) error, progress func(done int64)) (Result, error) {
	return importPath(ctx, path, put, progress, Profile.ChunkSize, Profile.HAMTShardingSize)
}

// importPath is Import with the chunk size and HAMT threshold as parameters,
// so tests can reproduce published small-scale fixtures.
func importPath(ctx context.Context, path string, put func(blocks.Block) error, progress func(done int64), chunkSize int64, shardingSize int) (Result, error) {
	im := &importer{
		ctx:          ctx,
		put:          put,
		progress:     progress,
		seen:         make(map[string]struct{}),
		builder:      Profile.CidBuilder(),
		chunkSize:    chunkSize,
		shardingSize: shardingSize,
	}
	im.ds = &putDAG{im: im}
	fi, err := os.Stat(path)
	if err != nil {
		return Result{}, wrapPathErr(err)
	}
	var nd ipld.Node
	switch {
	case fi.IsDir():
		nd, err = im.dir(path)
	case fi.Mode().IsRegular():
		nd, err = im.file(path)
	default:
		err = fmt.Errorf("%w: %s", ErrUnsupportedFile, path)
	}
	if err != nil {
		return Result{}, err
	}
	return Result{Root: nd.Cid(), Size: im.size, Blocks: len(im.seen), Files: im.files}, nil
}

func wrapPathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("bundle: %s %s: %w", pe.Op, pe.Path, pe.Err)
	}
	return fmt.Errorf("bundle: %w", err)
}

type importer struct {
	ctx      context.Context
	put      func(blocks.Block) error
	progress func(int64)
	ds       ipld.DAGService
	builder  cid.Builder
	seen     map[string]struct{}

	chunkSize    int64
	shardingSize int

	size  int64
	files int
	done  int64
}

func (im *importer) add(b blocks.Block) error {
	if err := im.ctx.Err(); err != nil {
		return err
	}
	k := string(b.Cid().Hash())
	if _, ok := im.seen[k]; ok {
		return nil
	}
	if err := im.put(b); err != nil {
		return fmt.Errorf("bundle: storing block %s: %w", b.Cid(), err)
	}
	im.seen[k] = struct{}{}
	im.size += int64(len(b.RawData()))
	return nil
}

func (im *importer) file(path string) (ipld.Node, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, wrapPathErr(err)
	}
	defer f.Close()
	im.files++
	params := helpers.DagBuilderParams{
		Maxlinks:   Profile.FileDAGWidth,
		RawLeaves:  Profile.RawLeaves,
		CidBuilder: im.builder,
		Dagserv:    im.ds,
	}
	r := &countReader{r: f, im: im, path: path}
	db, err := params.New(chunker.NewSizeSplitter(r, im.chunkSize))
	if err != nil {
		return nil, fmt.Errorf("bundle: %s: %w", path, err)
	}
	nd, err := balanced.Layout(db)
	if err != nil {
		if r.err != nil {
			return nil, r.err
		}
		return nil, fmt.Errorf("bundle: importing %s: %w", path, err)
	}
	if r.err != nil { // the splitter may swallow a read error as EOF
		return nil, r.err
	}
	return nd, nil
}

func (im *importer) symlink(path string) (ipld.Node, error) {
	target, err := os.Readlink(path)
	if err != nil {
		return nil, wrapPathErr(err)
	}
	data, err := ft.SymlinkData(target)
	if err != nil {
		return nil, fmt.Errorf("bundle: symlink %s: %w", path, err)
	}
	nd := dag.NodeWithData(data)
	if err := nd.SetCidBuilder(im.builder); err != nil {
		return nil, fmt.Errorf("bundle: symlink %s: %w", path, err)
	}
	if err := im.add(nd); err != nil {
		return nil, err
	}
	return nd, nil
}

func (im *importer) dir(path string) (ipld.Node, error) {
	d, err := uio.NewDirectory(im.ds,
		uio.WithCidBuilder(im.builder),
		uio.WithSizeEstimationMode(Profile.HAMTSizeEstimation),
		uio.WithMaxHAMTFanout(Profile.HAMTShardWidth),
	)
	if err != nil {
		return nil, fmt.Errorf("bundle: directory %s: %w", path, err)
	}
	d.SetHAMTShardingSize(im.shardingSize)
	entries, err := os.ReadDir(path) // sorted by name, as kubo adds them
	if err != nil {
		return nil, wrapPathErr(err)
	}
	for _, e := range entries {
		child := filepath.Join(path, e.Name())
		if why := verify.NameProblem(e.Name()); why != "" {
			// Refused here rather than by get -o after the bundle has
			// spread to every mirror.
			return nil, fmt.Errorf("%w: %s: the name %s; rename it", ErrBadName, child, why)
		}
		var nd ipld.Node
		switch t := e.Type(); {
		case t.IsDir():
			nd, err = im.dir(child)
		case t&fs.ModeSymlink != 0:
			nd, err = im.symlink(child)
		case t.IsRegular():
			nd, err = im.file(child)
		default:
			err = fmt.Errorf("%w: %s", ErrUnsupportedFile, child)
		}
		if err != nil {
			return nil, err
		}
		if err := d.AddChild(im.ctx, e.Name(), nd); err != nil {
			return nil, fmt.Errorf("bundle: directory %s: %w", path, err)
		}
	}
	nd, err := d.GetNode()
	if err != nil {
		return nil, fmt.Errorf("bundle: directory %s: %w", path, err)
	}
	if err := im.add(nd); err != nil {
		return nil, err
	}
	return nd, nil
}

// countReader reports progress and remembers the first read error with the
// path, because boxo's splitter reports it without context.
type countReader struct {
	r    io.Reader
	im   *importer
	path string
	err  error
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.im.done += int64(n)
		if c.im.progress != nil {
			c.im.progress(c.im.done)
		}
	}
	if err != nil && err != io.EOF && c.err == nil {
		c.err = wrapPathErr(err)
	}
	return n, err
}

// putDAG is the write-only ipld.DAGService the importer builds into: every
// Add goes to Import's put callback. Nothing is read back while importing.
type putDAG struct{ im *importer }

var _ ipld.DAGService = (*putDAG)(nil)

func (p *putDAG) Get(_ context.Context, c cid.Cid) (ipld.Node, error) {
	return nil, ipld.ErrNotFound{Cid: c}
}

func (p *putDAG) GetMany(_ context.Context, cs []cid.Cid) <-chan *ipld.NodeOption {
	ch := make(chan *ipld.NodeOption, len(cs))
	for _, c := range cs {
		ch <- &ipld.NodeOption{Err: ipld.ErrNotFound{Cid: c}}
	}
	close(ch)
	return ch
}

func (p *putDAG) Add(_ context.Context, nd ipld.Node) error { return p.im.add(nd) }

func (p *putDAG) AddMany(ctx context.Context, nds []ipld.Node) error {
	for _, nd := range nds {
		if err := p.im.add(nd); err != nil {
			return err
		}
	}
	return nil
}

func (p *putDAG) Remove(context.Context, cid.Cid) error       { return nil }
func (p *putDAG) RemoveMany(context.Context, []cid.Cid) error { return nil }

// Links returns the CIDs a block links to, in link order: none for a raw
// block, the PBNode links for dag-pb. The returned slice is the caller's.
func Links(c cid.Cid, data []byte) ([]cid.Cid, error) { return verify.Links(c, data) }

// Check returns nil when data hashes to c's multihash, else an error
// wrapping ErrHashMismatch.
func Check(c cid.Cid, data []byte) error { return verify.Check(c, data) }

// Walk visits the DAG under root depth-first, parents before children and
// children in link order, each block once: the order of a CARv1 export
// (`ipfs dag export`). get returns a block's bytes; Walk checks them against
// the CID before calling visit, so visit only sees verified blocks. An error
// from get or visit stops the walk and is returned unchanged.
func Walk(ctx context.Context, root cid.Cid, get func(cid.Cid) ([]byte, error), visit func(cid.Cid, []byte) error) error {
	return verify.Walk(ctx, root, get, visit)
}
