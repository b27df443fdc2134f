package client

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	mdag "github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs"
	uio "github.com/ipfs/boxo/ipld/unixfs/io"
	upb "github.com/ipfs/boxo/ipld/unixfs/pb"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	car "github.com/ipld/go-car/v2"
	"github.com/ipld/go-car/v2/storage"

	"github.com/mirrornet/mirrornet/internal/bundle/verify"
)

// Result is a verified bundle held in memory.
type Result struct {
	Root     cid.Cid
	Bytes    int64         // verified block bytes
	Blocks   int           // verified blocks
	Duration time.Duration // of the whole Get
	// TTFB is the time from the start of Get to the first response
	// headers from any mirror.
	TTFB time.Duration
	// PerMirror maps mirror URL to the verified bytes it delivered.
	PerMirror map[string]int64
	// Peers maps mirror URL to the peer ID whose signed liveness statement
	// announced it, for every up mirror the fetch learnt of (see
	// SendReceipts).
	Peers map[string]string
	// Dropped lists every mirror dropped, in order, with the reason.
	Dropped []Drop
	// Requests counts block requests made (hedges included).
	Requests int
	// Hedges counts requests started because another was late.
	Hedges int
	// Received counts response body bytes read.
	Received int64
	// Duplicate counts bytes read from honest responses that were not
	// used (hedges that lost, partial blocks of mirrors that died and could
	// not be resumed).
	Duplicate int64
	// Wasted counts bytes read from responses that failed verification.
	Wasted int64

	// Resumed counts the blocks that a [Download] found already verified
	// in its spool and did not fetch again.
	Resumed int

	blocks         map[cid.Cid][]byte // a Get's blocks
	spool          *spool             // a Download's blocks
	resumeFailures int                // resumed blocks that did not verify (for tests)
	noSync         bool               // WriteCAR and WriteDir skip making the output durable (Options.NoSync)
}

// Block returns a verified block of the bundle.
func (r *Result) Block(c cid.Cid) ([]byte, bool) { return r.source().block(c) }

// source is where the bundle's blocks are: memory or the download's spool.
func (r *Result) source() blockSource {
	if r.spool != nil {
		return r.spool
	}
	return memDAG(r.blocks)
}

func (r *Result) dag() blockDAG { return blockDAG{r.source()} }

// Close releases the spool of a [Download] (the file stays on disk: the
// caller removes the directory once the output is written). It does
// nothing for a [Get].
func (r *Result) Close() error {
	if r.spool == nil {
		return nil
	}
	return r.spool.close()
}

// memDAG holds the verified blocks of a download in memory ([Get]).
type memDAG map[cid.Cid][]byte

func (d memDAG) entry(ctx context.Context, c cid.Cid) (entry, error) {
	return blockDAG{d}.entry(ctx, c)
}

// memDAG is a read-only ipld.DAGService too (tests build on it).
var _ ipld.DAGService = memDAG(nil)

func (d memDAG) Get(ctx context.Context, c cid.Cid) (ipld.Node, error) {
	return blockDAG{d}.Get(ctx, c)
}
func (d memDAG) GetMany(ctx context.Context, cs []cid.Cid) <-chan *ipld.NodeOption {
	return blockDAG{d}.GetMany(ctx, cs)
}
func (memDAG) Add(context.Context, ipld.Node) error        { return errReadOnly }
func (memDAG) AddMany(context.Context, []ipld.Node) error  { return errReadOnly }
func (memDAG) Remove(context.Context, cid.Cid) error       { return errReadOnly }
func (memDAG) RemoveMany(context.Context, []cid.Cid) error { return errReadOnly }

// blockDAG is a read-only ipld.DAGService over verified blocks.
type blockDAG struct{ src blockSource }

var _ ipld.DAGService = blockDAG{}

func (d blockDAG) Get(_ context.Context, c cid.Cid) (ipld.Node, error) {
	data, ok := d.src.block(c)
	if !ok {
		if id, isID := identityData(c); isID {
			data = id
		} else {
			return nil, ipld.ErrNotFound{Cid: c}
		}
	}
	blk, err := blocks.NewBlockWithCid(data, c)
	if err != nil {
		return nil, err
	}
	switch c.Type() {
	case cid.DagProtobuf:
		return mdag.DecodeProtobufBlock(blk)
	case cid.Raw:
		return mdag.DecodeRawBlock(blk)
	}
	return nil, fmt.Errorf("%w: codec 0x%x", ErrUnsupported, c.Type())
}

func (d blockDAG) GetMany(ctx context.Context, cs []cid.Cid) <-chan *ipld.NodeOption {
	out := make(chan *ipld.NodeOption, len(cs))
	for _, c := range cs {
		n, err := d.Get(ctx, c)
		out <- &ipld.NodeOption{Node: n, Err: err}
	}
	close(out)
	return out
}

var errReadOnly = errors.New("client: read-only DAG")

func (blockDAG) Add(context.Context, ipld.Node) error        { return errReadOnly }
func (blockDAG) AddMany(context.Context, []ipld.Node) error  { return errReadOnly }
func (blockDAG) Remove(context.Context, cid.Cid) error       { return errReadOnly }
func (blockDAG) RemoveMany(context.Context, []cid.Cid) error { return errReadOnly }

// entry is a decoded UnixFS node.
type entry struct {
	node   ipld.Node
	kind   upb.Data_DataType
	target string // symlinks
}

func (d blockDAG) entry(ctx context.Context, c cid.Cid) (entry, error) {
	n, err := d.Get(ctx, c)
	if err != nil {
		return entry{}, err
	}
	pn, ok := n.(*mdag.ProtoNode)
	if !ok {
		return entry{node: n, kind: upb.Data_File}, nil // a raw block is a file
	}
	fsn, err := unixfs.FSNodeFromBytes(pn.Data())
	if err != nil {
		return entry{}, fmt.Errorf("%w: %s is not UnixFS: %v", ErrUnsupported, c, err)
	}
	e := entry{node: n, kind: fsn.Type()}
	switch e.kind {
	case upb.Data_File, upb.Data_Raw, upb.Data_Directory, upb.Data_HAMTShard:
	case upb.Data_Symlink:
		e.target = string(fsn.Data())
	default:
		return entry{}, fmt.Errorf("%w: %s has UnixFS type %s", ErrUnsupported, c, e.kind)
	}
	return e, nil
}

func (e entry) isDir() bool { return e.kind == upb.Data_Directory || e.kind == upb.Data_HAMTShard }

// checkName refuses directory entry names that could escape the output,
// with the rule publish applies to the names it imports (verify.CheckName).
func checkName(name string) error {
	if err := verify.CheckName(name); err != nil {
		return fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	return nil
}

// refuseExisting fails with ErrExists if p exists.
func refuseExisting(p string) error {
	if _, err := os.Lstat(p); err == nil {
		return fmt.Errorf("%w: %s", ErrExists, p)
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("client: output %s: %w", p, err)
	}
	return nil
}

// WriteDir writes the bundle to dir: a directory bundle as a directory tree,
// a single-file bundle as the file dir. It writes into a temporary sibling
// and renames it into place, so dir appears complete or not at all; it
// refuses a dir that exists.
func (r *Result) WriteDir(dir string) error {
	dir = filepath.Clean(dir)
	if err := refuseExisting(dir); err != nil {
		return err
	}
	ctx := context.Background()
	dag := r.dag()
	e, err := dag.entry(ctx, r.Root)
	if err != nil {
		return err
	}
	parent, base := filepath.Dir(dir), filepath.Base(dir)
	tmp, err := os.MkdirTemp(parent, "."+base+".tmp-")
	if err != nil {
		return fmt.Errorf("client: output %s: %w", dir, err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	src := tmp
	t := &tree{dag: dag}
	if e.isDir() {
		if err := os.Chmod(tmp, 0o755); err != nil {
			return fmt.Errorf("client: output %s: %w", dir, err)
		}
		err = t.writeDir(ctx, tmp, e)
	} else {
		src = filepath.Join(tmp, base)
		err = t.writeEntry(ctx, src, e)
	}
	if err == nil {
		// One syncfs makes the whole tree durable before the rename
		// where the system has it: thousands of small files cost one
		// journal commit instead of one fsync each.
		err = r.durable(func() error {
			if err := syncFS(tmp); !errors.Is(err, errNoSyncFS) {
				return err
			}
			return t.sync()
		})
	}
	if err != nil {
		return fmt.Errorf("client: writing %s: %w", dir, err)
	}
	if err := refuseExisting(dir); err != nil {
		return err
	}
	if err := os.Rename(src, dir); err != nil {
		return fmt.Errorf("client: output %s: %w", dir, err)
	}
	ok = true
	if src != tmp {
		os.Remove(tmp)
	}
	return r.durable(func() error { return syncDir(parent) })
}

// tree writes a UnixFS tree and remembers what it wrote, so that
// everything can be fsynced at once before the rename.
type tree struct {
	dag   blockDAG
	paths []string // files and directories written
}

func (t *tree) writeDir(ctx context.Context, dst string, e entry) error {
	d, err := uio.NewDirectoryFromNode(t.dag, e.node)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	links, err := d.Links(ctx)
	if err != nil {
		return err
	}
	for _, l := range links {
		if err := checkName(l.Name); err != nil {
			return err
		}
		child, err := t.dag.entry(ctx, l.Cid)
		if err != nil {
			return err
		}
		if err := t.writeEntry(ctx, filepath.Join(dst, l.Name), child); err != nil {
			return err
		}
	}
	t.paths = append(t.paths, dst)
	return nil
}

func (t *tree) writeEntry(ctx context.Context, p string, e entry) error {
	switch {
	case e.isDir():
		if err := os.Mkdir(p, 0o755); err != nil {
			return err
		}
		return t.writeDir(ctx, p, e)
	case e.kind == upb.Data_Symlink:
		return os.Symlink(e.target, p)
	}
	if sp, ok := t.dag.src.(*spool); ok {
		// From the spool file to the output file, leaves copied by the
		// kernel.
		f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		var off int64
		if err := sp.writeFile(f, e.node.Cid(), &off); err != nil {
			f.Close()
			return err
		}
		t.paths = append(t.paths, p)
		return f.Close()
	}
	rd, err := uio.NewDagReader(ctx, e.node, t.dag)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, rd); err != nil {
		f.Close()
		return err
	}
	t.paths = append(t.paths, p)
	return f.Close()
}

// sync fsyncs every file and directory written, several at a time (the
// file system batches concurrent fsyncs into one journal commit).
func (t *tree) sync() error {
	work := make(chan string)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range min(16, len(t.paths)) {
		wg.Go(func() {
			for p := range work {
				if err := syncPath(p); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for _, p := range t.paths {
		work <- p
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func syncDir(p string) error {
	d, err := os.Open(p)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// WriteCAR writes the bundle as a CARv1 with the root as its only root and
// blocks in depth-first order (as `ipfs dag export`), atomically (temporary
// sibling, fsync, rename); it refuses a path that exists.
func (r *Result) WriteCAR(p string) error {
	p = filepath.Clean(p)
	if err := refuseExisting(p); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".tmp-")
	if err != nil {
		return fmt.Errorf("client: output %s: %w", p, err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := r.writeCAR(tmp); err != nil {
		return fmt.Errorf("client: writing %s: %w", p, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("client: writing %s: %w", p, err)
	}
	if err := r.durable(tmp.Sync); err != nil {
		return fmt.Errorf("client: writing %s: %w", p, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("client: writing %s: %w", p, err)
	}
	if err := refuseExisting(p); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("client: output %s: %w", p, err)
	}
	ok = true
	return r.durable(func() error { return syncDir(filepath.Dir(p)) })
}

// durable runs sync, which makes output durable, unless the download was
// asked not to (Options.NoSync).
func (r *Result) durable(sync func() error) error {
	if r.noSync {
		return nil
	}
	if testHookSync != nil {
		testHookSync()
	}
	return sync()
}

// testHookSync, if set, is called before each step that makes output
// durable (an fsync or a syncfs) (tests).
var testHookSync func()

func (r *Result) writeCAR(w io.Writer) error {
	ctx := context.Background()
	sc, err := storage.NewWritable(w, []cid.Cid{r.Root}, car.WriteAsCarV1(true))
	if err != nil {
		return err
	}
	seen := map[cid.Cid]bool{}
	var walk func(c cid.Cid) error
	walk = func(c cid.Cid) error {
		if seen[c] {
			return nil
		}
		seen[c] = true
		if _, isID := identityData(c); isID {
			return nil
		}
		data, ok := r.source().block(c)
		if !ok {
			return fmt.Errorf("client: block %s missing", c)
		}
		if err := sc.Put(ctx, c.KeyString(), data); err != nil {
			return err
		}
		links, err := linksOf(c, data)
		if err != nil {
			return err
		}
		for _, l := range links {
			if err := walk(l.c); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(r.Root); err != nil {
		return err
	}
	return sc.Finalize()
}

// Handler serves the verified app over HTTP: files with their content type
// (from the extension), directories by their index.html or a listing.
func (r *Result) Handler() http.Handler {
	return http.HandlerFunc(r.serve)
}

func (r *Result) serve(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ctx := req.Context()
	dag := r.dag()
	e, err := dag.entry(ctx, r.Root)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	p := path.Clean("/" + req.URL.Path)
	for _, name := range strings.Split(strings.Trim(p, "/"), "/") {
		if name == "" {
			continue
		}
		if !e.isDir() {
			http.NotFound(w, req)
			return
		}
		d, err := uio.NewDirectoryFromNode(dag, e.node)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		n, err := d.Find(ctx, name)
		if err != nil {
			http.NotFound(w, req)
			return
		}
		if e, err = dag.entry(ctx, n.Cid()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	if e.isDir() {
		if !strings.HasSuffix(req.URL.Path, "/") {
			http.Redirect(w, req, req.URL.Path+"/", http.StatusMovedPermanently)
			return
		}
		d, err := uio.NewDirectoryFromNode(dag, e.node)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if n, err := d.Find(ctx, "index.html"); err == nil {
			if ie, err := dag.entry(ctx, n.Cid()); err == nil && !ie.isDir() && ie.kind != upb.Data_Symlink {
				serveFile(w, req, dag, "index.html", ie)
				return
			}
		}
		links, err := d.Links(ctx)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		names := make([]string, 0, len(links))
		for _, l := range links {
			names = append(names, l.Name)
		}
		slices.Sort(names)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><title>%s</title><ul>\n", html.EscapeString(p))
		for _, n := range names {
			fmt.Fprintf(w, "<li><a href=\"%s\">%s</a></li>\n", html.EscapeString(n), html.EscapeString(n))
		}
		fmt.Fprintln(w, "</ul>")
		return
	}
	if e.kind == upb.Data_Symlink {
		http.NotFound(w, req)
		return
	}
	serveFile(w, req, dag, path.Base(p), e)
}

func serveFile(w http.ResponseWriter, req *http.Request, dag blockDAG, name string, e entry) {
	rd, err := uio.NewDagReader(req.Context(), e.node, dag)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Etag", `"`+e.node.Cid().String()+`"`)
	http.ServeContent(w, req, name, time.Time{}, rd)
}
