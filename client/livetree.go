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
// The fetch loop hands it every verified block with its bytes; it works
// through them in a goroutine of its own. Blocks come parent first (a block
// is only asked for once its parent verified), so when a block arrives its
// place in the tree is known or becomes known when its parent is placed:
//
//   - a directory entry (or the root) becomes a directory, a file or a
//     symlink at its path; a directory's links and a HAMT shard's entries
//     place their children;
//   - a file node places its children at their offsets (from its
//     blocksizes), so leaves are written where they belong in whatever
//     order they arrive.
//
// Raw leaves (the bytes of the files) are written once, straight into the
// tree: the tree itself is where a rerun finds them (see resumeTree).
// The structure (directories, empty files of several chunks, symlinks) is
// made by run itself, in order; the leaves' writes go to leafWriters
// goroutines, each directory's to one of them (see writerOf), so that
// thousands of small files are created on several cores at once (`tar x`
// creates them one after another) while writes to one file stay in order.
// dag-pb nodes (directories, file nodes, HAMT shards: the structure, a
// small part of the bytes) go to the download's spool. A block placed
// twice (the same file under two names, a chunk repeated in a file) is
// written at every place. Nothing here is visible at the output path until
// the caller renames the finished tree into place.
type liveTree struct {
	src  *spool
	path string // where the tree is built: directory or file

	mu     sync.Mutex
	space  *sync.Cond      // signalled when queued bytes are written
	queue  []verifiedBlock // blocks verified, not yet looked at by run
	queued int64           // bytes of data in queue
	closed bool            // no more blocks will come
	wake   chan struct{}
	// leaves locates the bytes of every raw leaf written into the tree
	// (its first place) or found there verified at the start (guarded by
	// mu: the fetch loop reads it through treeSink).
	leaves map[cid.Cid]leafLoc
	// writing holds the bytes of leaves handed to a writer and not yet
	// in leaves (their first write runs), so a second place or the fetch
	// loop finds them meanwhile; writingBytes counts the bytes of every
	// write not yet done, which count against maxQueuedBytes too.
	writing      map[cid.Cid][]byte
	writingBytes int64
	werr         error // the first write error of a writer
	aborted      bool  // abort was called: writers skip what is left

	writers []chan leafWrite // leaf writes, by directory (dirWriter)
	wg      sync.WaitGroup   // the writers
	// dirWriter is the writer of each directory's files (owned by run):
	// directories go to the writers in turn, in the order their first
	// file comes.
	dirWriter map[string]int

	// owned by run (and by resumeTree before run starts)
	pending map[cid.Cid][]place // places of blocks not yet verified
	resumed map[leafPlace]bool  // leaves a former run wrote at their place, verified
	resume  bool                // the tree is a former run's: paths may exist
	paths   []string            // files and directories made, children first
	flush   *flusher            // flushes the file system while many files are written, or nil
	noSync  bool                // leave the tree to the system's writeback (Options.NoSync)
	err     error
	fail    func(error) // stops the download when the tree cannot be written
	done    chan struct{}
}

// verifiedBlock is a block the fetch loop verified.
type verifiedBlock struct {
	c    cid.Cid
	data []byte
}

// leafLoc is where a raw leaf's bytes are in the tree.
type leafLoc struct {
	path string
	off  int64
	n    int
}

// leafWrite is one raw leaf's write at one place, done by a writer.
type leafWrite struct {
	c      cid.Cid
	data   []byte
	path   string
	off    int64
	create bool // make the file (the leaf is the whole file)
	first  bool // the leaf's first place: record it in leaves once written
}

// leafWriters is how many goroutines write leaves. Creating a small file
// is a few tens of microseconds of system calls, mostly in the kernel;
// four writers keep two cores busy while some of them wait for a
// directory's lock or the disk.
const leafWriters = 4

// leafPlace is one place of a raw leaf.
type leafPlace struct {
	c    cid.Cid
	path string
	off  int64
}

// maxQueuedBytes bounds the verified bytes waiting for the tree writer:
// when the disk is slower than the network the fetch waits, so memory
// stays flat whatever the bundle's size.
const maxQueuedBytes = 4 << 20

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

// newLiveTree prepares the tree of root at path from the blocks of src. A
// tree a former run left at path is kept: the raw leaves found verified at
// their places (see resumeTree) are not fetched again. fail is called
// (once) if the tree cannot be written; the caller then stops the
// download. start starts the writer.
func newLiveTree(src *spool, root cid.Cid, path string, fail func(error)) (*liveTree, error) {
	t := &liveTree{src: src, path: path, wake: make(chan struct{}, 1), pending: map[cid.Cid][]place{},
		leaves: map[cid.Cid]leafLoc{}, writing: map[cid.Cid][]byte{}, dirWriter: map[string]int{}, resumed: map[leafPlace]bool{}, fail: fail, done: make(chan struct{})}
	t.space = sync.NewCond(&t.mu)
	if _, err := os.Lstat(path); err == nil {
		if err := t.resumeTree(root); err != nil {
			// Not the tree this bundle makes (changed by hand?):
			// start it again; the spool still holds the structure.
			t.resumed, t.leaves, t.resume = map[leafPlace]bool{}, map[cid.Cid]leafLoc{}, false
			if err := os.RemoveAll(path); err != nil {
				return nil, fmt.Errorf("client: output %s: %w", path, err)
			}
		}
	}
	t.pending[root] = []place{{kind: placeEntry, path: path}}
	return t, nil
}

// start starts the writers and run.
func (t *liveTree) start() {
	t.writers = make([]chan leafWrite, leafWriters)
	for i := range t.writers {
		ch := make(chan leafWrite, 256)
		t.writers[i] = ch
		t.wg.Go(func() { t.writeLeaves(ch) })
	}
	go t.run()
}

// writeLeaves is one writer: it writes the leaves run hands it, in order.
func (t *liveTree) writeLeaves(ch <-chan leafWrite) {
	for w := range ch {
		t.mu.Lock()
		skip := t.aborted || t.werr != nil
		t.mu.Unlock()
		var err error
		if !skip {
			if testHookLeafWrite != nil {
				testHookLeafWrite(w.path)
			}
			if err = writeToPath(w.path, w.data, w.off, w.create, t.resume, !t.noSync); err != nil {
				err = fmt.Errorf("client: writing %s: %w", w.path, err)
			}
		}
		t.mu.Lock()
		if w.first {
			if err == nil && !skip {
				t.leaves[w.c] = leafLoc{path: w.path, off: w.off, n: len(w.data)}
			}
			delete(t.writing, w.c)
		}
		t.writingBytes -= int64(len(w.data))
		first := err != nil && t.werr == nil
		if first {
			t.werr = err
		}
		t.space.Broadcast()
		t.mu.Unlock()
		if first {
			t.fail(err)
		}
	}
}

// stopWriters waits until every leaf handed to a writer is written.
func (t *liveTree) stopWriters() {
	for _, ch := range t.writers {
		close(ch)
	}
	t.wg.Wait()
	t.writers = nil
}

// verified hands the tree block c (verified, in the spool if it is a
// dag-pb node, or inline in its CID) with its bytes, which the tree keeps
// until written. The fetch loop calls it; it blocks only while
// maxQueuedBytes are waiting to be written.
func (t *liveTree) verified(c cid.Cid, data []byte) {
	t.mu.Lock()
	for t.queued+t.writingBytes > maxQueuedBytes && !t.closed {
		t.space.Wait()
	}
	t.queue = append(t.queue, verifiedBlock{c, data})
	t.queued += int64(len(data))
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
	t.space.Broadcast()
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
	<-t.done
	if t.err != nil {
		return t.err
	}
	if t.werr != nil {
		return t.werr
	}
	for c, ps := range t.pending {
		return fmt.Errorf("client: block %s of %s missing", c, ps[0].path)
	}
	return nil
}

// abort stops the tree after the download failed and waits for it.
func (t *liveTree) abort() {
	t.mu.Lock()
	t.closed, t.queue, t.queued, t.aborted = true, nil, 0, true
	t.space.Broadcast()
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
	<-t.done
}

func (t *liveTree) run() {
	defer close(t.done)
	defer func() {
		t.stopWriters()
		if t.flush != nil {
			t.flush.stop()
		}
	}()
	for {
		t.mu.Lock()
		q, closed := t.queue, t.closed
		t.queue = nil
		t.mu.Unlock()
		for _, b := range q {
			if t.err == nil {
				if err := t.take(b); err != nil {
					t.err = err
					t.fail(err)
				}
			}
			t.mu.Lock()
			t.queued -= int64(len(b.data))
			t.space.Broadcast()
			t.mu.Unlock()
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

// take places verified block b wherever it belongs.
func (t *liveTree) take(b verifiedBlock) error {
	ps := t.pending[b.c]
	delete(t.pending, b.c)
	if _, isID := identityData(b.c); len(ps) == 0 && b.c.Type() == cid.Raw && !isID && !t.hasLeaf(b.c) {
		// No place known yet (a DAG whose parents came in an odd
		// order): keep its bytes in the spool, where its place, once
		// known, finds them.
		return t.src.put(b.c, b.data)
	}
	for _, p := range ps {
		if err := t.place(b.c, b.data, p); err != nil {
			return err
		}
	}
	return nil
}

// available reports whether c's bytes can be had now.
func (t *liveTree) available(c cid.Cid) bool {
	if _, ok := identityData(c); ok {
		return true
	}
	return t.src.has(c) || t.hasLeaf(c)
}

func (t *liveTree) hasLeaf(c cid.Cid) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.leaves[c]
	if !ok {
		_, ok = t.writing[c]
	}
	return ok
}

// leaf reads back the bytes of a raw leaf written into the tree (or
// being written: then from memory).
func (t *liveTree) leaf(c cid.Cid) ([]byte, bool) {
	t.mu.Lock()
	l, ok := t.leaves[c]
	data, writing := t.writing[c]
	t.mu.Unlock()
	if writing {
		return data, true
	}
	if !ok {
		return nil, false
	}
	data, err := readRange(l.path, l.off, l.n)
	if err != nil {
		return nil, false
	}
	return data, true
}

// block returns c's bytes from wherever they are: inline, the spool or the
// tree.
func (t *liveTree) block(c cid.Cid) ([]byte, bool) {
	if data, ok := identityData(c); ok {
		return data, true
	}
	if data, ok := t.src.block(c); ok {
		return data, true
	}
	return t.leaf(c)
}

// readRange reads n bytes at off of the file at p (a regular file: a
// symlink is not followed).
func readRange(p string, off int64, n int) ([]byte, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|oNoFollow, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data := make([]byte, n)
	if _, err := f.ReadAt(data, off); err != nil {
		return nil, err
	}
	return data, nil
}

// place puts block c (with its bytes data, or nil to look them up) at p
// and, through its children, everything below it that is already
// verified.
func (t *liveTree) place(c cid.Cid, data []byte, p place) error {
	work := []child{{c, p}}
	for len(work) > 0 {
		w := work[len(work)-1]
		work = work[:len(work)-1]
		d := data
		if w.c != c {
			d = nil
		}
		children, err := t.write(w.c, d, w.p)
		if err != nil {
			return err
		}
		for i := len(children) - 1; i >= 0; i-- {
			ch := children[i]
			if t.available(ch.c) {
				work = append(work, ch)
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

// write makes block c's part of the tree at p (data: its bytes, or nil to
// look them up) and returns its children's places.
func (t *liveTree) write(c cid.Cid, data []byte, p place) ([]child, error) {
	if data == nil {
		var ok bool
		if data, ok = t.block(c); !ok {
			return nil, fmt.Errorf("client: block %s missing", c)
		}
	}
	if c.Type() == cid.Raw {
		switch p.kind {
		case placeEntry:
			return nil, t.writeLeaf(c, data, p.path, 0, true)
		case placeChunk:
			if n := int64(len(data)); n != p.size {
				return nil, fmt.Errorf("%w: %s is %d bytes, its parent says %d", ErrUnsupported, c, n, p.size)
			}
			return nil, t.writeLeaf(c, data, p.path, p.off, false)
		default:
			return nil, fmt.Errorf("%w: %s is a raw block where a HAMT shard belongs", ErrUnsupported, c)
		}
	}
	if c.Type() != cid.DagProtobuf {
		return nil, fmt.Errorf("%w: %s has codec 0x%x", ErrUnsupported, c, c.Type())
	}
	nd, fsn, err := decodeUnixFS(c, data)
	if err != nil {
		return nil, err
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
		return dirChildren(nd, p.path)
	case upb.Data_HAMTShard:
		if err := t.mkdir(p.path); err != nil {
			return nil, err
		}
		return shardChildren(nd, fsn, p.path)
	case upb.Data_Symlink:
		if t.resume {
			if err := os.Remove(p.path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, err
			}
		}
		return nil, os.Symlink(string(fsn.Data()), p.path)
	case upb.Data_File, upb.Data_Raw:
		if err := t.create(p.path, fileBytes(fsn)); err != nil {
			return nil, err
		}
		return t.fileNode(nd, fsn, p.path, 0)
	}
	return nil, fmt.Errorf("%w: %s has UnixFS type %s", ErrUnsupported, c, kind)
}

// decodeUnixFS decodes a dag-pb UnixFS node.
func decodeUnixFS(c cid.Cid, data []byte) (*mdag.ProtoNode, *unixfs.FSNode, error) {
	nd, err := mdag.DecodeProtobuf(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %v", ErrUnsupported, c, err)
	}
	fsn, err := unixfs.FSNodeFromBytes(nd.Data())
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s is not UnixFS: %v", ErrUnsupported, c, err)
	}
	return nd, fsn, nil
}

// dirChildren places a directory's entries inside it.
func dirChildren(nd *mdag.ProtoNode, dir string) ([]child, error) {
	var out []child
	for _, l := range nd.Links() {
		if err := checkName(l.Name); err != nil {
			return nil, err
		}
		out = append(out, child{l.Cid, place{kind: placeEntry, path: filepath.Join(dir, l.Name)}})
	}
	return out, nil
}

// writeLeaf has raw leaf c (data) written at off of the file at p, created
// first if create (then the leaf is the whole file), unless a former run
// left it there verified; the first place of a leaf is where a rerun or a
// later place reads it back. The write is done by the writer p hashes to
// (see writeLeaves); errors come from finish.
func (t *liveTree) writeLeaf(c cid.Cid, data []byte, p string, off int64, create bool) error {
	_, isID := identityData(c)
	if !isID && t.resumed[leafPlace{c, p, off}] {
		return nil
	}
	if create {
		t.made(p)
	}
	w := leafWrite{c: c, data: data, path: p, off: off, create: create}
	t.mu.Lock()
	if !isID {
		_, written := t.leaves[c]
		_, writing := t.writing[c]
		if w.first = !written && !writing; w.first {
			t.writing[c] = data
		}
	}
	t.writingBytes += int64(len(data))
	t.mu.Unlock()
	t.writers[t.writerOf(filepath.Dir(p))] <- w
	return nil
}

// writerOf is the writer of the files in dir. Files are made in a
// directory under its lock, so writers working in different directories
// do not wait for each other; a bundle's files come directory by
// directory, so taking the writers in turn keeps them all busy.
func (t *liveTree) writerOf(dir string) int {
	i, ok := t.dirWriter[dir]
	if !ok {
		i = len(t.dirWriter) % len(t.writers)
		t.dirWriter[dir] = i
	}
	return i
}

// fileNode writes a file node's own bytes at off and places its children
// after them, each at the offset its blocksize gives.
func (t *liveTree) fileNode(nd *mdag.ProtoNode, fsn *unixfs.FSNode, path string, off int64) ([]child, error) {
	if d := fsn.Data(); len(d) > 0 {
		if err := t.writeAt(path, d, off); err != nil {
			return nil, err
		}
	}
	return fileChildren(nd, fsn, path, off)
}

// fileChildren places a file node's children (at off of the file at path)
// after its own bytes, each at the offset its blocksize gives.
func fileChildren(nd *mdag.ProtoNode, fsn *unixfs.FSNode, path string, off int64) ([]child, error) {
	links := nd.Links()
	if fsn.NumChildren() != len(links) {
		return nil, fmt.Errorf("%w: %s has %d links and %d blocksizes", ErrUnsupported, nd.Cid(), len(links), fsn.NumChildren())
	}
	off += int64(len(fsn.Data()))
	out := make([]child, 0, len(links))
	for i, l := range links {
		n := int64(fsn.BlockSize(i))
		out = append(out, child{l.Cid, place{kind: placeChunk, path: path, off: off, size: n}})
		off += n
	}
	return out, nil
}

// errTreeShape: a former run's tree does not have the bundle's shape.
var errTreeShape = errors.New("client: the partial tree does not match the bundle")

// resumeTree finds what a former run left in the tree at t.path. It walks
// the DAG from root through the dag-pb nodes in the spool, reads every raw
// leaf at its place and keeps those whose bytes verify: they are not
// fetched again (nor written). It fails if the tree does not have the
// bundle's shape (a file where a directory belongs).
func (t *liveTree) resumeTree(root cid.Cid) error {
	t.resume = true
	work := []child{{root, place{kind: placeEntry, path: t.path}}}
	for len(work) > 0 {
		w := work[len(work)-1]
		work = work[:len(work)-1]
		if _, isID := identityData(w.c); isID {
			continue
		}
		fi, err := os.Lstat(w.p.path)
		if errors.Is(err, os.ErrNotExist) {
			continue // nothing below it was written
		} else if err != nil {
			return err
		}
		if w.c.Type() == cid.Raw {
			if !fi.Mode().IsRegular() {
				return errTreeShape
			}
			off, n := w.p.off, w.p.size
			if w.p.kind == placeEntry {
				off, n = 0, fi.Size()
			}
			if n > MaxBlockSize || off+n > fi.Size() {
				continue
			}
			if data, err := readRange(w.p.path, off, int(n)); err == nil && verifyBlock(w.c, data) == nil {
				t.resumed[leafPlace{w.c, w.p.path, off}] = true
				if _, ok := t.leaves[w.c]; !ok {
					t.leaves[w.c] = leafLoc{path: w.p.path, off: off, n: int(n)}
				}
			}
			continue
		}
		data, ok := t.src.block(w.c)
		if !ok {
			continue
		}
		nd, fsn, err := decodeUnixFS(w.c, data)
		if err != nil {
			return err
		}
		var children []child
		switch kind := fsn.Type(); {
		case w.p.kind == placeShard:
			children, err = shardChildren(nd, fsn, w.p.path)
		case w.p.kind == placeChunk:
			children, err = fileChildren(nd, fsn, w.p.path, w.p.off)
		case kind == upb.Data_Directory && fi.IsDir():
			children, err = dirChildren(nd, w.p.path)
		case kind == upb.Data_HAMTShard && fi.IsDir():
			children, err = shardChildren(nd, fsn, w.p.path)
		case (kind == upb.Data_File || kind == upb.Data_Raw) && fi.Mode().IsRegular():
			children, err = fileChildren(nd, fsn, w.p.path, 0)
		case kind == upb.Data_Symlink:
		default:
			return errTreeShape
		}
		if err != nil {
			return err
		}
		work = append(work, children...)
	}
	return nil
}

// treeSink is GetDir's block sink: dag-pb nodes go to the spool, raw
// leaves (handed to the tree with their bytes, see liveTree.verified) are
// written straight into the tree, which is also where a rerun finds them.
type treeSink struct {
	s *spool
	t *liveTree
}

func (k treeSink) put(c cid.Cid, data []byte) error {
	if c.Type() == cid.Raw {
		return nil
	}
	return k.s.put(c, data)
}

func (k treeSink) has(c cid.Cid) bool { return k.s.has(c) || k.t.hasLeaf(c) }

func (k treeSink) block(c cid.Cid) ([]byte, bool) {
	if data, ok := k.s.block(c); ok {
		return data, true
	}
	return k.t.leaf(c)
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

// mkdir makes the directory p (on a former run's tree, finds it).
func (t *liveTree) mkdir(p string) error {
	if err := os.Mkdir(p, 0o755); err != nil {
		if fi, serr := os.Lstat(p); !t.resume || serr != nil || !fi.IsDir() {
			return err
		}
	}
	t.made(p)
	return nil
}

// made records a file or directory made in the tree. Once the tree has
// many, a flusher writes them out while more are made (see flusher).
func (t *liveTree) made(p string) {
	t.paths = append(t.paths, p)
	switch {
	case t.noSync:
	case t.flush != nil:
		t.flush.poke()
	case len(t.paths) > syncFSFiles:
		t.flush = startFlusher(t.path)
	}
}

// flusher runs syncfs on the tree's file system over and over while files
// are being made, each round starting once more were made, so that making
// the finished tree durable (syncTree) finds little left to write: the
// disk works while the download does. It also keeps the file system's
// inode table blocks clean, and ext4 then reuses recently freed inodes
// sooner (it skips inodes freed in the last 30 s while their table block
// is dirty, 5 s when clean), which makes creating files much cheaper on a
// file system where many were just deleted.
type flusher struct {
	path string
	wake chan struct{}
	quit chan struct{}
	done chan struct{}
}

func startFlusher(path string) *flusher {
	f := &flusher{path: path, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	go f.run()
	return f
}

func (f *flusher) run() {
	defer close(f.done)
	for {
		if err := syncFS(f.path); err != nil {
			return // no syncfs here (or it fails): syncTree does it all
		}
		select {
		case <-f.wake:
		case <-f.quit:
			return
		}
	}
}

// poke says more files were made. It never blocks.
func (f *flusher) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// stop ends the flusher and waits for it.
func (f *flusher) stop() {
	close(f.quit)
	<-f.done
}

// create makes an empty file at p (which must not exist, but on a former
// run's tree may: then it keeps the bytes already written, up to size).
func (t *liveTree) create(p string, size int64) error {
	flags := os.O_CREATE | os.O_EXCL | os.O_WRONLY
	if t.resume {
		flags = os.O_CREATE | os.O_WRONLY | oNoFollow
	}
	f, err := os.OpenFile(p, flags, 0o644)
	if err != nil {
		return err
	}
	t.made(p)
	if t.resume {
		if err := f.Truncate(size); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// fileNode (above) writes a file node's own bytes with writeAt.
func (t *liveTree) writeAt(p string, data []byte, off int64) error {
	if err := writeToPath(p, data, off, false, t.resume, !t.noSync); err != nil {
		return fmt.Errorf("client: writing %s: %w", p, err)
	}
	return nil
}

// syncTree makes everything under the finished tree durable: one syncfs
// where the system has it and the tree has many files (thousands of small
// files cost one journal commit instead of one fsync each), else an fsync
// per file and directory (which, unlike syncfs, leaves the spool's pages
// alone: a large file is not written to disk twice).
func (t *liveTree) syncTree() error {
	if t.noSync {
		return nil
	}
	if testHookSync != nil {
		testHookSync()
	}
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

// testHookLeafWrite, if set, is called by a writer before each leaf write
// with the file's path (tests).
var testHookLeafWrite func(path string)

// testHookLiveTree, if set, is given GetDir's tree (tests).
var testHookLiveTree func(*liveTree)

// nothingKept reports whether the partial directory holds nothing verified:
// an empty spool and no tree.
func nothingKept(partial string) bool {
	fi, err := os.Stat(filepath.Join(partial, spoolFile))
	if err != nil || fi.Size() > 0 {
		return false
	}
	_, err = os.Lstat(filepath.Join(partial, "tree"))
	return errors.Is(err, os.ErrNotExist)
}

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
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// A tree left by an interrupted run is kept: the leaves found verified
	// in it are not fetched again.
	t, err := newLiveTree(s, root, out, cancel)
	if err != nil {
		s.close()
		return nil, err
	}
	t.noSync = opts.NoSync
	t.start()
	if testHookLiveTree != nil {
		testHookLiveTree(t)
	}
	opts.onVerified = t.verified
	res, err := get(ctx, root, opts, treeSink{s, t})
	if err != nil {
		t.abort()
		s.close()
		if t.err != nil {
			err = t.err
		}
		if errors.Is(err, ErrUnsupported) || nothingKept(partial) {
			// a bundle get cannot write, or nothing verified:
			// nothing to resume
			os.RemoveAll(partial)
		}
		return nil, err
	}
	res.noSync = opts.NoSync
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
		if errors.Is(err, ErrUnsupported) {
			os.RemoveAll(partial)
		}
		return nil, err
	}
	if err := res.durable(func() error { return syncDir(filepath.Dir(dir)) }); err != nil {
		return nil, fmt.Errorf("client: output %s: %w", dir, err)
	}
	if err := os.RemoveAll(partial); err != nil {
		return nil, fmt.Errorf("client: removing %s: %w", partial, err)
	}
	return res, nil
}
