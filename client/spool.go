package client

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	mdag "github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs"
	upb "github.com/ipfs/boxo/ipld/unixfs/pb"
	"github.com/ipfs/go-cid"
)

// spoolFile is the file, inside a download's spool directory, that holds
// its verified blocks.
const spoolFile = "blocks.spool"

// blockSource is where the output writers read a downloaded bundle's
// blocks from: memory ([Get]) or a spool on disk ([Download]).
type blockSource interface {
	block(c cid.Cid) ([]byte, bool)
}

func (d memDAG) block(c cid.Cid) ([]byte, bool) {
	b, ok := d[c]
	return b, ok
}

// blockSink is where the fetch loop puts verified blocks.
type blockSink interface {
	blockSource
	// put stores a verified block.
	put(c cid.Cid, data []byte) error
	// has reports whether c was stored, in this run or (resuming) an
	// earlier one.
	has(c cid.Cid) bool
}

func (d memDAG) put(c cid.Cid, data []byte) error { d[c] = data; return nil }
func (d memDAG) has(c cid.Cid) bool {
	_, ok := d[c]
	return ok
}

// spool keeps a download's verified blocks in one append-only file, in
// the order they arrived, each as a CARv1 section (uvarint of the CID's and
// the block's length, the CID, the block), and only their offsets in
// memory: a download of any size takes memory in proportion to its number
// of blocks (about 100 bytes each), not its bytes.
//
// It is the unit of resumption: opening an existing spool reads it back,
// verifying every block against its CID, and cuts it at the first section
// that is torn (a crash mid-append) or does not verify; what is left is not
// fetched again.
type spool struct {
	dir string
	f   *os.File

	mu    sync.Mutex
	index map[cid.Cid]extent
	end   int64 // offset of the next section
	buf   []byte
	// resumed counts the blocks and bytes found on disk at open.
	resumed      int
	resumedBytes int64
}

// extent locates a block's bytes in the spool file.
type extent struct {
	off int64
	n   int
}

// openSpool opens (creating if needed) the spool in dir and indexes the
// verified blocks already in it.
func openSpool(dir string) (*spool, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("client: spool %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, spoolFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("client: spool %s: %w", dir, err)
	}
	s := &spool{dir: dir, f: f, index: map[cid.Cid]extent{}}
	if err := s.load(); err != nil {
		f.Close()
		return nil, err
	}
	return s, nil
}

// load indexes the spool's sections and truncates it after the last good
// one.
func (s *spool) load() error {
	r := bufio.NewReaderSize(io.NewSectionReader(s.f, 0, 1<<62), 1<<20)
	var off int64
	for {
		n, err := binary.ReadUvarint(r)
		if err != nil || n == 0 || n > MaxBlockSize+256 {
			break
		}
		hdr := int64(uvarintLen(n))
		sec := make([]byte, n)
		if _, err := io.ReadFull(r, sec); err != nil {
			break
		}
		k, c, err := cid.CidFromBytes(sec)
		if err != nil {
			break
		}
		data := sec[k:]
		if verifyBlock(c, data) != nil {
			break
		}
		if _, dup := s.index[c]; !dup {
			s.index[c] = extent{off: off + hdr + int64(k), n: len(data)}
			s.resumed++
			s.resumedBytes += int64(len(data))
		}
		off += hdr + int64(n)
	}
	s.end = off
	if err := s.f.Truncate(off); err != nil {
		return fmt.Errorf("client: spool %s: %w", s.dir, err)
	}
	return nil
}

func uvarintLen(n uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], n)
}

// put appends a verified block. It does not sync: after a power loss a
// torn tail is cut off when the spool is opened again.
func (s *spool) put(c cid.Cid, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.index[c]; ok {
		return nil
	}
	if _, isID := identityData(c); isID {
		return nil // its bytes are in its CID
	}
	cb := c.Bytes()
	s.buf = binary.AppendUvarint(s.buf[:0], uint64(len(cb)+len(data)))
	s.buf = append(s.buf, cb...)
	if _, err := s.f.WriteAt(s.buf, s.end); err != nil {
		return fmt.Errorf("client: spool %s: %w", s.dir, err)
	}
	if _, err := s.f.WriteAt(data, s.end+int64(len(s.buf))); err != nil {
		return fmt.Errorf("client: spool %s: %w", s.dir, err)
	}
	s.index[c] = extent{off: s.end + int64(len(s.buf)), n: len(data)}
	s.end += int64(len(s.buf) + len(data))
	return nil
}

func (s *spool) has(c cid.Cid) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.index[c]
	return ok
}

// block reads a block back (in fresh memory the caller owns). A block
// that cannot be read is reported missing, which fails the output writer.
func (s *spool) block(c cid.Cid) ([]byte, bool) {
	s.mu.Lock()
	e, ok := s.index[c]
	s.mu.Unlock()
	if !ok {
		return nil, false
	}
	data := make([]byte, e.n)
	if _, err := s.f.ReadAt(data, e.off); err != nil {
		return nil, false
	}
	return data, true
}

func (s *spool) close() error { return s.f.Close() }

// Download is [Get] keeping the verified blocks in a spool file in dir
// (created if needed) instead of memory, so a bundle of any size takes
// memory in proportion to its number of blocks only. A spool left in dir by
// an interrupted Download is read back and verified first: its blocks are
// not fetched again. The returned Result reads its blocks from the spool
// (WriteDir, WriteCAR, Handler); Close it when done, then remove dir. On
// error dir is kept, so that running Download again resumes.
func Download(ctx context.Context, root cid.Cid, dir string, opts Options) (*Result, error) {
	s, err := openSpool(dir)
	if err != nil {
		return nil, err
	}
	res, err := get(ctx, root, opts, s)
	if err != nil {
		s.close()
		return nil, err
	}
	return res, nil
}

// PartialDir is where a download into target keeps its spool: a hidden
// directory beside target (so on the same file system, and found again by
// a rerun).
func PartialDir(target string) string {
	target = filepath.Clean(target)
	return filepath.Join(filepath.Dir(target), "."+filepath.Base(target)+".mirrornet-partial")
}

// GetDir downloads root into a spool in PartialDir(dir) (resuming what an
// interrupted GetDir left there) and writes the app to dir as
// Result.WriteDir would (complete or not at all), then removes the spool.
// The tree is written while the download runs (see liveTree), inside
// PartialDir(dir), and renamed into place once complete and durable. On
// error the spool is kept for the next attempt.
func GetDir(ctx context.Context, root cid.Cid, dir string, opts Options) (*Result, error) {
	return getDirLive(ctx, root, dir, opts)
}

// GetCAR is GetDir writing a CARv1 file (as Result.WriteCAR).
func GetCAR(ctx context.Context, root cid.Cid, file string, opts Options) (*Result, error) {
	return getInto(ctx, root, file, opts, (*Result).WriteCAR)
}

func getInto(ctx context.Context, root cid.Cid, target string, opts Options, write func(*Result, string) error) (*Result, error) {
	if err := refuseExisting(filepath.Clean(target)); err != nil {
		return nil, err
	}
	partial := PartialDir(target)
	res, err := Download(ctx, root, partial, opts)
	if err != nil {
		if fi, serr := os.Stat(filepath.Join(partial, spoolFile)); serr == nil && fi.Size() == 0 {
			os.RemoveAll(partial) // nothing verified: nothing to resume
		}
		return nil, err
	}
	res.noSync = opts.NoSync
	err = write(res, target)
	if cerr := res.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if err := os.RemoveAll(partial); err != nil {
		return nil, fmt.Errorf("client: removing %s: %w", partial, err)
	}
	return res, nil
}

// copyRangeSlow copies n bytes at srcOff of src to dstOff of dst through a
// buffer.
func copyRangeSlow(src *os.File, srcOff int64, dst *os.File, dstOff int64, n int) error {
	buf := make([]byte, min(n, 1<<20))
	for n > 0 {
		k := min(n, len(buf))
		if _, err := src.ReadAt(buf[:k], srcOff); err != nil {
			return err
		}
		if _, err := dst.WriteAt(buf[:k], dstOff); err != nil {
			return err
		}
		srcOff, dstOff, n = srcOff+int64(k), dstOff+int64(k), n-k
	}
	return nil
}

// writeFile writes the UnixFS file under c to dst at *off from the spool:
// a dag-pb file node's own data, then its children in order; raw leaves
// are copied file to file by the kernel where it can. It moves *off past
// what it wrote.
func (s *spool) writeFile(dst *os.File, c cid.Cid, off *int64) error {
	if data, isID := identityData(c); isID {
		return s.writeAt(dst, c, data, off)
	}
	if c.Type() == cid.Raw {
		s.mu.Lock()
		e, ok := s.index[c]
		s.mu.Unlock()
		if !ok {
			return fmt.Errorf("client: block %s missing", c)
		}
		if err := copyRange(s.f, e.off, dst, *off, e.n); err != nil {
			return fmt.Errorf("client: writing %s: %w", dst.Name(), err)
		}
		*off += int64(e.n)
		return nil
	}
	data, ok := s.block(c)
	if !ok {
		return fmt.Errorf("client: block %s missing", c)
	}
	if c.Type() != cid.DagProtobuf {
		return fmt.Errorf("%w: %s has codec 0x%x", ErrUnsupported, c, c.Type())
	}
	nd, err := mdag.DecodeProtobuf(data)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrUnsupported, c, err)
	}
	fsn, err := unixfs.FSNodeFromBytes(nd.Data())
	if err != nil || (fsn.Type() != upb.Data_File && fsn.Type() != upb.Data_Raw) {
		return fmt.Errorf("%w: %s is not a UnixFS file node", ErrUnsupported, c)
	}
	if err := s.writeAt(dst, c, fsn.Data(), off); err != nil {
		return err
	}
	for _, l := range nd.Links() {
		if err := s.writeFile(dst, l.Cid, off); err != nil {
			return err
		}
	}
	return nil
}

func (s *spool) writeAt(dst *os.File, _ cid.Cid, data []byte, off *int64) error {
	if _, err := dst.WriteAt(data, *off); err != nil {
		return fmt.Errorf("client: writing %s: %w", dst.Name(), err)
	}
	*off += int64(len(data))
	return nil
}

// errNoSyncFS: the system cannot flush a whole file system at once; sync
// file by file.
var errNoSyncFS = errors.New("client: no syncfs on this system")
