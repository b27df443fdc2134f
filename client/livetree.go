package client

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	mdag "github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs"
	upb "github.com/ipfs/boxo/ipld/unixfs/pb"
	"github.com/ipfs/go-cid"
)

// liveTree writes a bundle's output tree (a directory bundle's directories
// and files, or a one-file bundle's file) while the download runs, so that
// creating thousands of small files overlaps fetching them, as `curl | tar
// x` overlaps them, instead of following it.
//
// The download's spool stays the record of what is verified (and what a
// rerun resumes from); the tree is built from it, in a goroutine of its
// own, as blocks arrive. Blocks come parent first (a block is only asked
// for once its parent verified), so when a block arrives its place in the
// tree is known or becomes known when its parent is placed:
//
//   - a directory entry (or the root) becomes a directory, a file or a
//     symlink at its path; a directory's links and a HAMT shard's entries
//     place their children;
//   - a file node places its children at their offsets (from its
//     blocksizes), so leaves are written where they belong in whatever
//     order they arrive, copied from the spool by the kernel.
//
// A block placed twice (the same file under two names, a chunk repeated
// in a file) is written at every place. Nothing here is visible at the
// output path until the caller renames the finished tree into place.
type liveTree struct {
	src  *spool
	path string // where the tree is built: directory or file

	mu     sync.Mutex
	queue  []cid.Cid // blocks verified, not yet looked at by run
	closed bool      // no more blocks will come
	wake   chan struct{}

	// owned by run
	pending map[cid.Cid][]place // places of blocks not yet verified
	paths   []string            // files and directories made, children first
	err     error
	fail    func(error) // stops the download when the tree cannot be written
	done    chan struct{}
}

type placeKind int

const (
	placeEntry placeKind = iota // a directory entry: directory, file or symlink at path
	placeChunk                  // part of the file at path, starting at off
	placeShard                  // a HAMT sub-shard: its entries go into the directory at path
)

type place struct {
	kind placeKind
	path string
	off  int64
	size int64 // a chunk's size, from its parent's blocksizes
}

// startLiveTree starts building the tree of root at path (which must not
// exist) from the blocks of src. fail is called (once) if the tree cannot
// be written; the caller then stops the download.
func startLiveTree(src *spool, root cid.Cid, path string, fail func(error)) *liveTree {
	t := &liveTree{src: src, path: path, wake: make(chan struct{}, 1), pending: map[cid.Cid][]place{},
		fail: fail, done: make(chan struct{})}
	t.pending[root] = []place{{kind: placeEntry, path: path}}
	go t.run()
	return t
}

// verified tells the tree that block c is in the spool (or inline in its
// CID). It never blocks: the fetch loop calls it.
func (t *liveTree) verified(c cid.Cid) {
	t.mu.Lock()
	t.queue = append(t.queue, c)
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// finish waits until every block told so far is written and returns the
// first error, or an error naming a place no block filled.
func (t *liveTree) finish() error {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
	<-t.done
	if t.err != nil {
		return t.err
	}
	for c, ps := range t.pending {
		return fmt.Errorf("client: block %s of %s missing", c, ps[0].path)
	}
	return nil
}

// abort stops the tree after the download failed and waits for it.
func (t *liveTree) abort() {
	t.mu.Lock()
	t.closed, t.queue = true, nil
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
	<-t.done
}

func (t *liveTree) run() {
	defer close(t.done)
	for {
		t.mu.Lock()
		q, closed := t.queue, t.closed
		t.queue = nil
		t.mu.Unlock()
		for _, c := range q {
			if t.err != nil {
				break
			}
			ps := t.pending[c]
			delete(t.pending, c)
			for _, p := range ps {
				if err := t.place(c, p); err != nil {
					t.err = err
					t.fail(err)
					break
				}
			}
		}
		if len(q) > 0 {
			continue
		}
		if closed {
			return
		}
		<-t.wake
	}
}

// available reports whether c's bytes can be had now.
func (t *liveTree) available(c cid.Cid) bool {
	if _, ok := identityData(c); ok {
		return true
	}
	return t.src.has(c)
}

// place puts block c at p and, through its children, everything below it
// that is already verified.
func (t *liveTree) place(c cid.Cid, p place) error {
	work := []struct {
		c cid.Cid
		p place
	}{{c, p}}
	for len(work) > 0 {
		w := work[len(work)-1]
		work = work[:len(work)-1]
		children, err := t.write(w.c, w.p)
		if err != nil {
			return err
		}
		for i := len(children) - 1; i >= 0; i-- {
			ch := children[i]
			if t.available(ch.c) {
				work = append(work, struct {
					c cid.Cid
					p place
				}{ch.c, ch.p})
			} else {
				t.pending[ch.c] = append(t.pending[ch.c], ch.p)
			}
		}
	}
	return nil
}

type child struct {
	c cid.Cid
	p place
}

// write makes block c's part of the tree at p and returns its children's
// places.
func (t *liveTree) write(c cid.Cid, p place) ([]child, error) {
	inline, isID := identityData(c)
	if c.Type() == cid.Raw {
		switch p.kind {
		case placeEntry:
			return nil, t.rawAt(c, inline, isID, p.path, 0, true)
		case placeChunk:
			if n := t.rawSize(c, inline, isID); n != p.size {
				return nil, fmt.Errorf("%w: %s is %d bytes, its parent says %d", ErrUnsupported, c, n, p.size)
			}
			return nil, t.rawAt(c, inline, isID, p.path, p.off, false)
		default:
			return nil, fmt.Errorf("%w: %s is a raw block where a HAMT shard belongs", ErrUnsupported, c)
		}
	}
	if c.Type() != cid.DagProtobuf {
		return nil, fmt.Errorf("%w: %s has codec 0x%x", ErrUnsupported, c, c.Type())
	}
	data := inline
	if !isID {
		var ok bool
		if data, ok = t.src.block(c); !ok {
			return nil, fmt.Errorf("client: block %s missing", c)
		}
	}
	nd, err := mdag.DecodeProtobuf(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrUnsupported, c, err)
	}
	fsn, err := unixfs.FSNodeFromBytes(nd.Data())
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not UnixFS: %v", ErrUnsupported, c, err)
	}
	kind := fsn.Type()
	switch p.kind {
	case placeShard:
		if kind != upb.Data_HAMTShard {
			return nil, fmt.Errorf("%w: %s is a %s where a HAMT shard belongs", ErrUnsupported, c, kind)
		}
		return shardChildren(nd, fsn, p.path)
	case placeChunk:
		if kind != upb.Data_File && kind != upb.Data_Raw {
			return nil, fmt.Errorf("%w: %s is a %s inside a file", ErrUnsupported, c, kind)
		}
		if n := fileBytes(fsn); n != p.size {
			return nil, fmt.Errorf("%w: %s holds %d bytes, its parent says %d", ErrUnsupported, c, n, p.size)
		}
		return t.fileNode(nd, fsn, p.path, p.off)
	}
	switch kind {
	case upb.Data_Directory:
		if err := t.mkdir(p.path); err != nil {
			return nil, err
		}
		var out []child
		for _, l := range nd.Links() {
			if err := checkName(l.Name); err != nil {
				return nil, err
			}
			out = append(out, child{l.Cid, place{kind: placeEntry, path: filepath.Join(p.path, l.Name)}})
		}
		return out, nil
	case upb.Data_HAMTShard:
		if err := t.mkdir(p.path); err != nil {
			return nil, err
		}
		return shardChildren(nd, fsn, p.path)
	case upb.Data_Symlink:
		return nil, os.Symlink(string(fsn.Data()), p.path)
	case upb.Data_File, upb.Data_Raw:
		if err := t.create(p.path); err != nil {
			return nil, err
		}
		return t.fileNode(nd, fsn, p.path, 0)
	}
	return nil, fmt.Errorf("%w: %s has UnixFS type %s", ErrUnsupported, c, kind)
}

// fileNode writes a file node's own bytes at off and places its children
// after them, each at the offset its blocksize gives.
func (t *liveTree) fileNode(nd *mdag.ProtoNode, fsn *unixfs.FSNode, path string, off int64) ([]child, error) {
	links := nd.Links()
	if fsn.NumChildren() != len(links) {
		return nil, fmt.Errorf("%w: %s has %d links and %d blocksizes", ErrUnsupported, nd.Cid(), len(links), fsn.NumChildren())
	}
	if d := fsn.Data(); len(d) > 0 {
		if err := t.writeAt(path, d, off, false); err != nil {
			return nil, err
		}
		off += int64(len(d))
	}
	out := make([]child, 0, len(links))
	for i, l := range links {
		n := int64(fsn.BlockSize(i))
		out = append(out, child{l.Cid, place{kind: placeChunk, path: path, off: off, size: n}})
		off += n
	}
	return out, nil
}

// fileBytes is the length of the file part under a file node: its own
// bytes and its children's, as its blocksizes declare them. Each child is
// checked against its declared size when it is placed, so the file comes
// out as the concatenation of its leaves, as a DAG reader would read it.
func fileBytes(fsn *unixfs.FSNode) int64 {
	n := int64(len(fsn.Data()))
	for _, b := range fsn.BlockSizes() {
		n += int64(b)
	}
	return n
}

// rawSize is the length of raw block c.
func (t *liveTree) rawSize(c cid.Cid, inline []byte, isID bool) int64 {
	if isID {
		return int64(len(inline))
	}
	t.src.mu.Lock()
	defer t.src.mu.Unlock()
	if e, ok := t.src.index[c]; ok {
		return int64(e.n)
	}
	return -1
}

// hamtMurmur3 is the only hash function UnixFS HAMT directories use.
const hamtMurmur3 = 0x22

// shardChildren places the entries of a HAMT shard into the directory at
// dir: a link named by its bucket alone (as many hex digits as the fanout
// needs) is a sub-shard, any other is the bucket followed by the entry's
// name (as boxo's hamt package lays them out).
func shardChildren(nd *mdag.ProtoNode, fsn *unixfs.FSNode, dir string) ([]child, error) {
	if fsn.HashType() != hamtMurmur3 {
		return nil, fmt.Errorf("%w: %s: HAMT hash 0x%x", ErrUnsupported, nd.Cid(), fsn.HashType())
	}
	fanout := fsn.Fanout()
	if fanout < 2 || fanout > 1<<16 || fanout&(fanout-1) != 0 {
		return nil, fmt.Errorf("%w: %s: HAMT fanout %d", ErrUnsupported, nd.Cid(), fanout)
	}
	pad := len(fmt.Sprintf("%X", fanout-1))
	var out []child
	for _, l := range nd.Links() {
		switch {
		case len(l.Name) < pad:
			return nil, fmt.Errorf("%w: %s: HAMT link %q", ErrUnsupported, nd.Cid(), l.Name)
		case len(l.Name) == pad:
			out = append(out, child{l.Cid, place{kind: placeShard, path: dir}})
		default:
			name := l.Name[pad:]
			if err := checkName(name); err != nil {
				return nil, err
			}
			out = append(out, child{l.Cid, place{kind: placeEntry, path: filepath.Join(dir, name)}})
		}
	}
	return out, nil
}

func (t *liveTree) mkdir(p string) error {
	if err := os.Mkdir(p, 0o755); err != nil {
		return err
	}
	t.paths = append(t.paths, p)
	return nil
}

// create makes an empty file at p (which must not exist).
func (t *liveTree) create(p string) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	t.paths = append(t.paths, p)
	return f.Close()
}

// rawAt writes raw block c at off of the file at p, created first if
// create: from the spool by the kernel, or its inline bytes.
func (t *liveTree) rawAt(c cid.Cid, inline []byte, isID bool, p string, off int64, create bool) error {
	if isID {
		return t.writeAt(p, inline, off, create)
	}
	t.src.mu.Lock()
	e, ok := t.src.index[c]
	t.src.mu.Unlock()
	if !ok {
		return fmt.Errorf("client: block %s missing", c)
	}
	if err := copyToPath(t.src.f, e.off, p, off, e.n, create); err != nil {
		return fmt.Errorf("client: writing %s: %w", p, err)
	}
	if create {
		t.paths = append(t.paths, p)
	}
	return nil
}

func (t *liveTree) writeAt(p string, data []byte, off int64, create bool) error {
	flags := os.O_WRONLY
	if create {
		flags |= os.O_CREATE | os.O_EXCL
	}
	f, err := os.OpenFile(p, flags, 0o644)
	if err != nil {
		return err
	}
	if create {
		t.paths = append(t.paths, p)
	}
	if _, err := f.WriteAt(data, off); err != nil {
		f.Close()
		return fmt.Errorf("client: writing %s: %w", p, err)
	}
	return f.Close()
}

// syncTree makes everything under the finished tree durable: one syncfs
// where the system has it and the tree has many files (thousands of small
// files cost one journal commit instead of one fsync each), else an fsync
// per file and directory (which, unlike syncfs, leaves the spool's pages
// alone: a large file is not written to disk twice).
func (t *liveTree) syncTree() error {
	if len(t.paths) > syncFSFiles {
		if err := syncFS(t.path); !errors.Is(err, errNoSyncFS) {
			return err
		}
	}
	return (&tree{paths: t.paths}).sync()
}

// syncFSFiles is the number of files and directories above which a
// finished tree is made durable with one syncfs instead of an fsync each.
const syncFSFiles = 64

// getDirLive is GetDir with the tree written while the download runs (see
// liveTree): into PartialDir(dir)/tree, renamed to dir once complete and
// durable.
func getDirLive(ctx context.Context, root cid.Cid, dir string, opts Options) (*Result, error) {
	dir = filepath.Clean(dir)
	if err := refuseExisting(dir); err != nil {
		return nil, err
	}
	partial := PartialDir(dir)
	s, err := openSpool(partial)
	if err != nil {
		return nil, err
	}
	out := filepath.Join(partial, "tree")
	// A tree left by an interrupted run is rebuilt from the spool (the
	// spool, not the tree, says what is verified).
	if err := os.RemoveAll(out); err != nil {
		s.close()
		return nil, fmt.Errorf("client: output %s: %w", dir, err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	t := startLiveTree(s, root, out, cancel)
	opts.onVerified = t.verified
	res, err := get(ctx, root, opts, s)
	if err != nil {
		t.abort()
		s.close()
		os.RemoveAll(out)
		if t.err != nil {
			err = t.err
		}
		if fi, serr := os.Stat(filepath.Join(partial, spoolFile)); errors.Is(err, ErrUnsupported) || (serr == nil && fi.Size() == 0) {
			// nothing verified, or a bundle get cannot write: nothing
			// to resume
			os.RemoveAll(partial)
		}
		return nil, err
	}
	err = t.finish()
	if err == nil {
		err = t.syncTree()
	}
	if err == nil {
		err = refuseExisting(dir)
		if err == nil {
			if rerr := os.Rename(out, dir); rerr != nil {
				err = fmt.Errorf("client: output %s: %w", dir, rerr)
			}
		}
	}
	if cerr := res.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.RemoveAll(out)
		if errors.Is(err, ErrUnsupported) {
			os.RemoveAll(partial)
		}
		return nil, err
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return nil, fmt.Errorf("client: output %s: %w", dir, err)
	}
	if err := os.RemoveAll(partial); err != nil {
		return nil, fmt.Errorf("client: removing %s: %w", partial, err)
	}
	return res, nil
}
