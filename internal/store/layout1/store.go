// Package layout1 is a frozen copy of mirrornet's block store as it was
// before blocks moved into pack files: store layout 1, one file per block.
// Nothing in mirrornet runs it. It is kept so that the migration tests
// write their old data directories with the very code that wrote them in
// the field, and as the baseline of the store benchmarks
// (internal/store/storebench). Do not change it.
//
// The rest of this comment is the package documentation as it was.
//
// Blocks live one per file under DIR/blocks, named by the base32 of their
// multihash (so a CIDv0 and a CIDv1 of the same bytes share one file) and
// sharded by two characters of that name. Every block is hashed against its
// CID on Put (PutVerified is for callers that hashed the bytes themselves)
// and again when read back; a block that no longer matches is deleted and
// reported as ErrCorrupt.
//
// Reads do not hash a block again while its file is the very version this
// process last verified or wrote: a bounded in-memory cache maps each such
// block to its file's identity (device, inode, size, mtime and ctime, taken
// from the open file before and after reading it). Replacing, truncating or
// rewriting the file, or touching it with os.Chtimes (which moves the
// ctime), changes the identity, so the next read hashes it. A file changed
// within [racyWindow] of being verified is not cached (Git's "racy clean"
// rule: kernels and file systems with coarse timestamps may give two
// writes within one clock tick the same times), and where the identity
// lacks inode and ctime (systems other than Linux) the cache is off. The
// cache starts empty at Open, so after a crash every block is hashed on its
// first read. Scrub never consults it: it re-hashes every block from disk,
// which is what finds bit rot under an unchanged file.
//
// Durability is group-committed. Put writes a block to a temporary file in
// its final directory, starts its writeback (sync_file_range on Linux, which
// does not wait) and renames it into place: no fsync per block. A block that
// is not part of a held bundle may therefore be torn or empty after a power
// loss; reads re-hash, so such a block is found, deleted and fetched again.
// A block becomes durable when a bundle containing it is marked held:
// MarkHeld walks the whole DAG, re-hashing every block except raw leaves
// this process itself wrote with Put (their bytes were hashed on the way
// in), then fsyncs every block file not already durable and every block
// directory touched, and only then records the bundle as held.
//
// A bundle is a DAG root the mirror follows. Its state is "fetching" until
// MarkHeld has walked the whole DAG and found every block present, valid and
// durable; only then is it "held". The list is kept in DIR/bundles.json,
// written to a temporary file, fsynced, renamed into place and its directory
// fsynced, so a crash never leaves a bundle marked held with blocks missing,
// torn or not yet on disk.
//
// The store is a pure core: file I/O only, no network, no clock, and no
// goroutine outlives a call (MarkHeld fsyncs in parallel and waits). All
// methods are safe for concurrent use. Use package store/ipfsbs to hand it
// to boxo's bitswap or gateway.
package layout1

import (
	"context"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/mirrornet/mirrornet/internal/atomicfile"
	"github.com/mirrornet/mirrornet/internal/bundle/verify"
)

// Bundle states reported in BundleInfo.State.
const (
	StateFetching = "fetching"
	StateHeld     = "held"
)

const (
	blocksDir   = "blocks"
	bundlesFile = "bundles.json"
	tmpPrefix   = atomicfile.TempPrefix
)

var (
	// ErrNotFound means the block is not in the store.
	ErrNotFound = errors.New("layout1: block not found")
	// ErrCorrupt means a stored block no longer hashes to its CID; it has
	// been deleted and must be fetched again.
	ErrCorrupt = errors.New("layout1: block corrupt on disk (deleted)")
	// ErrHashMismatch means Put was given bytes that do not hash to the CID.
	ErrHashMismatch = errors.New("layout1: block does not match its CID")
	// ErrTooLarge means a block is larger than verify.MaxBlockSize.
	ErrTooLarge = errors.New("layout1: block too large")
	// ErrStorageLimit means the block would take the store over
	// Options.MaxBytes.
	ErrStorageLimit = errors.New("layout1: storage limit reached")
	// ErrNoSpace means the file system is full (ENOSPC). Nothing partial was
	// left behind; reads keep working and writes succeed once space is freed.
	ErrNoSpace = errors.New("layout1: no space left on device")
	// ErrIncomplete means MarkHeld found a block of the DAG missing or
	// invalid.
	ErrIncomplete = errors.New("layout1: bundle incomplete")
	// ErrNotWritable means the store directory cannot be written.
	ErrNotWritable = errors.New("layout1: directory not writable")
	// ErrClosed means the store was closed.
	ErrClosed = errors.New("layout1: closed")
)

// Options configure a Store.
type Options struct {
	// MaxBytes caps the bytes of block data kept; 0 means unlimited. Put
	// fails with ErrStorageLimit rather than exceed it.
	MaxBytes int64

	// VerifiedCache is how many blocks' verified file identities the store
	// remembers so reads need not hash them again; 0 means
	// DefaultVerifiedCache, -1 turns the cache off (every read hashes).
	VerifiedCache int

	// OnCorrupt, if set, is told of every block found corrupt and deleted
	// (by a read, MarkHeld's walk, Scrub or Open's check of held bundles),
	// once per block, after any held bundle that contained it has gone
	// back to fetching. It is called on the goroutine that found the
	// block, with no lock of the store held (it may call the store), and
	// should return quickly: a mirror logs, counts and starts re-fetching.
	OnCorrupt func(Corruption)
}

// Corruption describes a block found corrupt on disk and deleted.
type Corruption struct {
	Cid  cid.Cid // the CID it was read as (a raw-codec CIDv1 when found by Scrub)
	File string  // the block file that was deleted
	// FoundBy names what found it: "read", "walk" (MarkHeld, Open) or
	// "scrub".
	FoundBy string
}

// BundleInfo describes a followed bundle.
type BundleInfo struct {
	Root   cid.Cid
	State  string // StateHeld or StateFetching
	Bytes  int64  // block bytes of the whole DAG (known once held)
	Blocks int    // distinct blocks of the DAG (known once held)
}

// Store is a block store in one directory. Create it with Open.
type Store struct {
	dir    string
	blocks string
	opts   Options

	// gc is held for reading by Put and for writing by GC, so a block
	// written while GC sweeps is never swept.
	gc sync.RWMutex

	mu       sync.Mutex
	closed   bool
	usage    int64
	bundles  map[string]*BundleInfo   // by root KeyString
	inflight map[string]chan struct{} // blocks being written, by key
	// heldBlocks counts, per block key, the held bundles whose DAG holds it.
	// Those blocks are durable: MarkHeld fsynced them.
	heldBlocks map[string]int
	// fresh holds the blocks this process wrote with Put (and has not
	// removed since): their bytes were hashed on the way in, so MarkHeld
	// need not read raw leaves among them again.
	fresh map[string]struct{}
	// verified remembers the file versions this process hashed or wrote.
	verified *verifiedCache
	// corrupt queues blocks found corrupt for Options.OnCorrupt until the
	// finding method has released s.mu and updated bundle states.
	corrupt []Corruption
	// now is the clock the verified cache's racy window is measured by;
	// tests move it forward.
	now func() time.Time

	// fsync makes a file or directory durable; tests replace it to record
	// what was synced and in which order.
	fsync func(path string) error
	// check hashes a block read back against its CID (verify.Check); tests
	// replace it to count hashes.
	check func(c cid.Cid, data []byte) error
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// key is the file name of a block: base32 of its multihash.
func key(c cid.Cid) string { return b32.EncodeToString(c.Hash()) }

func (s *Store) path(k string) string {
	return filepath.Join(s.blocks, k[len(k)-3:len(k)-1], k)
}

// Open opens (creating if needed) the store in dir. It removes temporary
// files left by a crash and recounts the space used.
func Open(dir string, opts Options) (*Store, error) {
	if opts.MaxBytes < 0 {
		return nil, fmt.Errorf("layout1: Options.MaxBytes must be >= 0, got %d", opts.MaxBytes)
	}
	if opts.VerifiedCache < -1 {
		return nil, fmt.Errorf("layout1: Options.VerifiedCache must be >= -1, got %d", opts.VerifiedCache)
	}
	cacheSize := opts.VerifiedCache
	if cacheSize == 0 {
		cacheSize = DefaultVerifiedCache
	}
	if !strongFileID {
		cacheSize = -1 // size and mtime alone miss a same-size copy with its mtime kept
	}
	s := &Store{
		dir:        dir,
		blocks:     filepath.Join(dir, blocksDir),
		opts:       opts,
		bundles:    map[string]*BundleInfo{},
		inflight:   map[string]chan struct{}{},
		heldBlocks: map[string]int{},
		fresh:      map[string]struct{}{},
		verified:   newVerifiedCache(cacheSize),
		now:        time.Now,
		fsync:      fsyncPath,
		check:      verify.Check,
	}
	if err := os.MkdirAll(s.blocks, 0o755); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNotWritable, dir, unwrapPath(err))
	}
	probe, err := os.CreateTemp(dir, tmpPrefix+"probe-")
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNotWritable, dir, unwrapPath(err))
	}
	probe.Close()
	os.Remove(probe.Name())

	err = filepath.WalkDir(s.blocks, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if strings.HasPrefix(d.Name(), tmpPrefix) {
			return os.Remove(p)
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		s.usage += fi.Size()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("layout1: scanning %s: %w", s.blocks, err)
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	// A held bundle must still be complete and valid: recheck and rebuild
	// the index of blocks that belong to held bundles.
	s.mu.Lock()
	err = s.recheckHeldLocked(context.Background())
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	s.reportCorrupt()
	return s, nil
}

// corruptLocked queues a report of block c, found corrupt by foundBy, whose
// file p was deleted. s.mu must be held.
func (s *Store) corruptLocked(c cid.Cid, p, foundBy string) {
	if s.opts.OnCorrupt != nil {
		s.corrupt = append(s.corrupt, Corruption{Cid: c, File: p, FoundBy: foundBy})
	}
}

// reportCorrupt hands queued corruption reports to Options.OnCorrupt.
// Call it without s.mu held, after bundle states are up to date.
func (s *Store) reportCorrupt() {
	s.mu.Lock()
	pending := s.corrupt
	s.corrupt = nil
	s.mu.Unlock()
	for _, c := range pending {
		s.opts.OnCorrupt(c)
	}
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Close marks the store closed. It is idempotent; later calls fail with
// ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func (s *Store) checkOpen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return nil
}

// Put stores a block after checking that data hashes to c. Storing a block
// that is already present does nothing. The block is readable at once but
// not yet durable: MarkHeld makes the blocks of a bundle durable before it
// records the bundle as held.
func (s *Store) Put(c cid.Cid, data []byte) error {
	if err := checkSize(c, data); err != nil {
		return err
	}
	if err := verify.Check(c, data); err != nil {
		return fmt.Errorf("%w: %s", ErrHashMismatch, c)
	}
	return s.put(c, data)
}

// PutVerified is Put for a caller that has itself derived c from exactly
// these bytes (hashed them with c's prefix), so the store does not hash them
// again. It is not for bytes merely claimed to match c: a wrong CID would
// be stored as if valid until a read after a restart, or Scrub, caught it.
// Such a block counts as written and verified by this process (MarkHeld
// does not re-read it if it is a raw leaf). Use Put when in doubt.
func (s *Store) PutVerified(c cid.Cid, data []byte) error {
	if err := checkSize(c, data); err != nil {
		return err
	}
	return s.put(c, data)
}

// checkSize refuses a block over verify.MaxBlockSize.
func checkSize(c cid.Cid, data []byte) error {
	if len(data) > verify.MaxBlockSize {
		return fmt.Errorf("%w: %s is %d bytes, limit %d", ErrTooLarge, c, len(data), verify.MaxBlockSize)
	}
	return nil
}

// put stores data, already known to hash to c.
func (s *Store) put(c cid.Cid, data []byte) error {
	s.gc.RLock()
	defer s.gc.RUnlock()
	k := key(c)
	p := s.path(k)
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return ErrClosed
		}
		if ch, ok := s.inflight[k]; ok {
			s.mu.Unlock()
			<-ch
			continue
		}
		if _, err := os.Stat(p); err == nil {
			s.mu.Unlock()
			return nil
		}
		n := int64(len(data))
		if s.opts.MaxBytes > 0 && s.usage+n > s.opts.MaxBytes {
			used := s.usage
			s.mu.Unlock()
			return errorf(ErrStorageLimit, "layout1: storage limit of %d bytes reached: %d used, block %s needs %d more; raise the limit or unfollow a bundle and run gc",
				s.opts.MaxBytes, used, c, n)
		}
		s.usage += n
		ch := make(chan struct{})
		s.inflight[k] = ch
		s.mu.Unlock()

		err := s.writeBlock(p, data)
		if err == nil {
			// the file version just written holds the verified bytes
			if fi, serr := os.Stat(p); serr == nil {
				s.verified.add(k, idOf(fi), s.now())
			}
		}
		s.mu.Lock()
		delete(s.inflight, k)
		if err != nil {
			s.usage -= n
		} else {
			s.fresh[k] = struct{}{}
		}
		s.mu.Unlock()
		close(ch)
		if isNoSpace(err) {
			return errorf(ErrNoSpace, "layout1: no space left on device writing block %s to %s: free disk space or lower the storage limit (reads keep working)", c, s.dir)
		}
		if err != nil {
			return fmt.Errorf("layout1: writing block %s: %w", c, err)
		}
		return nil
	}
}

// sentinelError is an error with its own message that still matches a
// sentinel with errors.Is, so a user sees one clean line.
type sentinelError struct {
	msg      string
	sentinel error
}

func (e *sentinelError) Error() string { return e.msg }
func (e *sentinelError) Unwrap() error { return e.sentinel }

func errorf(sentinel error, format string, args ...any) error {
	return &sentinelError{msg: fmt.Sprintf(format, args...), sentinel: sentinel}
}

func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// writeBlock writes data to p so that p is either absent or complete while
// the system runs (temp file in the same directory, renamed into place) and
// starts its writeback without waiting. It does not fsync: after a power
// loss the file may be torn, which reads detect. MarkHeld makes it durable.
func (s *Store) writeBlock(p string, data []byte) error {
	dir := filepath.Dir(p)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	f, err := os.CreateTemp(dir, tmpPrefix+filepath.Base(p)+"-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	startWriteback(f)
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// fsyncPath opens a file or directory read-only and fsyncs it.
func fsyncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(dir string) error { return atomicfile.SyncDir(dir) }

// Get returns a block's bytes after checking them against c. A block that
// fails the check is deleted and ErrCorrupt returned; a held bundle that
// contained it goes back to fetching.
func (s *Store) Get(c cid.Cid) ([]byte, error) {
	return s.GetInto(c, nil)
}

// GetInto is Get reading into buf when the block fits in cap(buf) (into a
// new slice otherwise), so that a caller streaming many blocks can reuse
// its buffers: reading into fresh memory costs a page fault per 4 KiB, as
// much as the copy itself. The result aliases buf when it fits.
func (s *Store) GetInto(c cid.Cid, buf []byte) ([]byte, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	data, err := s.read(c, buf)
	if errors.Is(err, ErrCorrupt) {
		s.mu.Lock()
		held := s.heldBlocks[key(c)] > 0
		if held {
			_ = s.recheckHeldLocked(context.Background())
		}
		s.mu.Unlock()
		s.reportCorrupt()
	}
	return data, err
}

// read reads and verifies a block, deleting it if it is corrupt. It does not
// touch bundle state.
func (s *Store) read(c cid.Cid, buf []byte) ([]byte, error) {
	k := key(c)
	p := s.path(k)
	data, err := s.readChecked(c, k, p, true, buf)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, c)
	}
	if errors.Is(err, errBadHash) {
		s.dropCorrupt(c, p, "read")
		return nil, fmt.Errorf("%w: %s", ErrCorrupt, c)
	}
	if err != nil {
		return nil, fmt.Errorf("layout1: reading block %s: %w", c, err)
	}
	return data, nil
}

// errBadHash is readChecked's report of a block file that does not hash to
// its CID.
var errBadHash = errors.New("layout1: block file does not match its CID")

// readChecked reads block file p (key k) and checks it against c. With
// useCache, a file whose identity before and after the read is the version
// this process last verified is not hashed again. A file found valid has its
// identity recorded. An absent file gives an error wrapping fs.ErrNotExist;
// one that does not match c gives errBadHash along with the bytes read.
func (s *Store) readChecked(c cid.Cid, k, p string, useCache bool, buf []byte) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	id := idOf(fi)
	var data []byte
	if size := fi.Size(); buf != nil && size <= int64(cap(buf)) {
		data = buf[:size]
	} else {
		data = make([]byte, size)
	}
	n, err := io.ReadFull(f, data)
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		// shrank while being read: not the version measured; hash what is there
		data, useCache, err = data[:n], false, nil
	}
	if err != nil {
		return nil, err
	}
	same := func() bool {
		after, err := f.Stat()
		return err == nil && idOf(after) == id
	}
	if useCache && s.verified.has(k, id) && same() {
		return data, nil
	}
	if s.check(c, data) != nil {
		s.verified.forget(k)
		return data, errBadHash
	}
	if same() {
		s.verified.add(k, id, s.now())
	}
	return data, nil
}

// remove deletes a block file and returns its size (0 if it was absent).
func (s *Store) remove(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	if err := os.Remove(p); err != nil {
		return 0
	}
	s.mu.Lock()
	s.removedLocked(p, fi.Size())
	s.mu.Unlock()
	return fi.Size()
}

// dropCorrupt deletes the corrupt block file p of c and queues its report.
func (s *Store) dropCorrupt(c cid.Cid, p, foundBy string) {
	s.remove(p)
	s.mu.Lock()
	s.corruptLocked(c, p, foundBy)
	s.mu.Unlock()
}

// removedLocked accounts for block file p (n bytes) having been deleted.
func (s *Store) removedLocked(p string, n int64) {
	k := filepath.Base(p)
	s.verified.forget(k)
	s.usage -= n
	delete(s.fresh, k)
}

// Has reports whether the block is present (without re-hashing it).
func (s *Store) Has(c cid.Cid) (bool, error) {
	if err := s.checkOpen(); err != nil {
		return false, err
	}
	_, err := os.Stat(s.path(key(c)))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("layout1: %w", err)
	}
	return true, nil
}

// GetSize returns a block's size in bytes, or ErrNotFound.
func (s *Store) GetSize(c cid.Cid) (int, error) {
	if err := s.checkOpen(); err != nil {
		return 0, err
	}
	fi, err := os.Stat(s.path(key(c)))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("%w: %s", ErrNotFound, c)
	}
	if err != nil {
		return 0, fmt.Errorf("layout1: %w", err)
	}
	return int(fi.Size()), nil
}

// Delete removes a block; deleting an absent block is not an error. A held
// bundle that contained it goes back to fetching.
func (s *Store) Delete(c cid.Cid) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	s.remove(s.path(key(c)))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.heldBlocks[key(c)] > 0 {
		return s.recheckHeldLocked(context.Background())
	}
	return nil
}

// HeldBlock reports whether the block belongs to the DAG of a held bundle:
// the blocks a mirror offers to others.
func (s *Store) HeldBlock(c cid.Cid) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.heldBlocks[key(c)] > 0
}

// AllKeys lists every stored block as a CIDv1 with the raw codec (the store
// keeps multihashes, not codecs).
func (s *Store) AllKeys(ctx context.Context) ([]cid.Cid, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	var out []cid.Cid
	err := s.eachBlock(ctx, func(k, _ string) error {
		c, err := keyCid(k)
		if err == nil {
			out = append(out, c)
		}
		return nil
	})
	return out, err
}

func keyCid(k string) (cid.Cid, error) {
	b, err := b32.DecodeString(k)
	if err != nil {
		return cid.Undef, err
	}
	if _, err := mh.Cast(b); err != nil {
		return cid.Undef, err
	}
	return cid.NewCidV1(cid.Raw, b), nil
}

func (s *Store) eachBlock(ctx context.Context, fn func(key, path string) error) error {
	return filepath.WalkDir(s.blocks, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), tmpPrefix) {
			return nil
		}
		return fn(d.Name(), p)
	})
}

// Usage returns the bytes of block data stored.
func (s *Store) Usage() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.usage
}

// Follow records that the mirror keeps root. The record is persisted; the
// bundle is "fetching" until MarkHeld succeeds. Following a followed root
// does nothing.
func (s *Store) Follow(root cid.Cid) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if _, ok := s.bundles[root.KeyString()]; ok {
		return nil
	}
	s.bundles[root.KeyString()] = &BundleInfo{Root: root, State: StateFetching}
	if err := s.saveLocked(); err != nil {
		delete(s.bundles, root.KeyString())
		return err
	}
	return nil
}

// Unfollow stops keeping root. Its blocks stay until GC frees them.
func (s *Store) Unfollow(root cid.Cid) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	b, ok := s.bundles[root.KeyString()]
	if !ok {
		return nil
	}
	delete(s.bundles, root.KeyString())
	if err := s.saveLocked(); err != nil {
		s.bundles[root.KeyString()] = b
		return err
	}
	if b.State == StateHeld {
		return s.recheckHeldLocked(context.Background())
	}
	return nil
}

// MarkHeld follows root if needed, walks its whole DAG re-hashing every
// block (except raw leaves this process put), fsyncs every block (and block
// directory) not yet durable, and only if every block is present, valid and
// durable records the bundle as held. It blocks while it reads and syncs;
// other methods go on meanwhile.
// Otherwise it returns an error wrapping ErrIncomplete (or ErrNoSpace) and
// the bundle stays (or goes back to) fetching; a block found corrupt is
// deleted, so fetching it again and calling MarkHeld again succeeds.
func (s *Store) MarkHeld(root cid.Cid) (BundleInfo, error) {
	defer s.reportCorrupt() // runs after s.mu is released
	if err := s.Follow(root); err != nil {
		return BundleInfo{}, err
	}
	info, keys, err := s.walk(context.Background(), root)
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.bundles[root.KeyString()]
	if !ok { // unfollowed meanwhile
		return BundleInfo{}, fmt.Errorf("%w: %s was unfollowed", ErrIncomplete, root)
	}
	if err != nil {
		if b.State == StateHeld {
			_ = s.recheckHeldLocked(context.Background())
		}
		return *b, err
	}
	if b.State == StateHeld {
		return *b, nil
	}
	// Make every block of the DAG durable before recording the bundle as
	// held. Blocks of other held bundles already are. s.mu is released
	// while syncing so reads and puts go on; the bundle is re-checked after.
	var todo []string
	for _, k := range keys {
		if s.heldBlocks[k] == 0 {
			todo = append(todo, k)
		}
	}
	s.mu.Unlock()
	err = s.syncKeys(todo)
	s.mu.Lock()
	b, ok = s.bundles[root.KeyString()]
	if !ok {
		return BundleInfo{}, fmt.Errorf("%w: %s was unfollowed", ErrIncomplete, root)
	}
	if err != nil {
		return *b, err
	}
	if b.State == StateHeld {
		return *b, nil
	}
	// A block deleted (Delete, Scrub) while s.mu was released is caught
	// here; one deleted after is caught by Delete's recheck of held bundles.
	for _, k := range keys {
		if _, err := os.Stat(s.path(k)); err != nil {
			return *b, fmt.Errorf("%w: %s: block %s went away", ErrIncomplete, root, k)
		}
	}
	prev := *b
	*b = info
	if err := s.saveLocked(); err != nil {
		*b = prev
		return prev, err
	}
	for _, k := range keys {
		s.heldBlocks[k]++
	}
	return info, nil
}

// syncParallel is how many fsyncs MarkHeld runs at once: the file system
// batches concurrent fsyncs into fewer journal commits.
const syncParallel = 8

// syncKeys fsyncs the block files named by keys and then, once each, the
// directories that hold them and the blocks directory. A block that cannot
// be made durable is deleted (its pages may be lost) and the error wraps
// ErrIncomplete, or ErrNoSpace when the disk is full.
func (s *Store) syncKeys(keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	dirs := map[string]struct{}{}
	var paths []string
	for _, k := range keys {
		p := s.path(k)
		paths = append(paths, p)
		dirs[filepath.Dir(p)] = struct{}{}
	}
	if err := s.syncAll(paths, true); err != nil {
		return err
	}
	paths = paths[:0]
	for d := range dirs {
		paths = append(paths, d)
	}
	paths = append(paths, s.blocks)
	return s.syncAll(paths, false)
}

// syncAll fsyncs paths with up to syncParallel goroutines and waits for
// them. The first error is returned; with dropBad, a file whose fsync failed
// (other than by being absent) is deleted.
func (s *Store) syncAll(paths []string, dropBad bool) error {
	work := make(chan string)
	var (
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
	)
	for range min(syncParallel, len(paths)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				err := s.fsync(p)
				if err == nil {
					continue
				}
				if dropBad && !errors.Is(err, fs.ErrNotExist) {
					s.remove(p)
				}
				errMu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				errMu.Unlock()
			}
		}()
	}
	for _, p := range paths {
		work <- p
	}
	close(work)
	wg.Wait()
	switch {
	case firstErr == nil:
		return nil
	case isNoSpace(firstErr):
		return errorf(ErrNoSpace, "layout1: no space left on device making blocks durable in %s: free disk space or lower the storage limit (reads keep working)", s.dir)
	default:
		return fmt.Errorf("%w: making blocks durable: %w", ErrIncomplete, firstErr)
	}
}

// walk verifies the DAG under root and returns its totals and block keys.
// A raw leaf this process wrote with Put (and has not removed since) is
// not read again: Put hashed exactly the bytes it wrote; nor is one whose
// file is the version this process last verified (the verified cache).
// Every other block (inner nodes, blocks found on disk at Open, possibly
// torn by a crash) is read and re-hashed unless the verified cache vouches
// for its file; a corrupt one is deleted.
func (s *Store) walk(ctx context.Context, root cid.Cid) (BundleInfo, []string, error) {
	info, keys, err := s.walkDAG(ctx, root, func(k string) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		_, ok := s.fresh[k]
		return ok
	}, func(c cid.Cid, p string, n int64) { s.dropCorrupt(c, p, "walk") })
	if err != nil && !errors.Is(err, ErrIncomplete) {
		err = fmt.Errorf("%w: %s: %w", ErrIncomplete, root, err)
	}
	return info, keys, err
}

// walkDAG visits the DAG under root depth-first, each block once, and
// returns the first missing or corrupt block's error after visiting all it
// can reach. fresh says whether a block's file was written by this
// process; drop deletes the corrupt block file of c, n bytes.
func (s *Store) walkDAG(ctx context.Context, root cid.Cid, fresh func(key string) bool, drop func(c cid.Cid, path string, n int64)) (BundleInfo, []string, error) {
	info := BundleInfo{Root: root, State: StateHeld}
	var keys []string
	// A missing or corrupt block does not stop the walk: the rest of the
	// DAG is still checked, so every torn block is deleted in one pass and
	// one more fetch completes the bundle.
	var firstErr error
	fail := func(err error) {
		if firstErr == nil {
			firstErr = err
		}
	}
	seen := map[string]struct{}{}
	stack := []cid.Cid{root}
	for len(stack) > 0 {
		if err := ctx.Err(); err != nil {
			return info, keys, err
		}
		c := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		k := key(c)
		if _, ok := seen[k]; ok {
			continue
		}
		seen[k] = struct{}{}
		p := s.path(k)
		if c.Type() == cid.Raw {
			// a leaf has no links: its size is all the walk needs
			fi, err := os.Stat(p)
			if errors.Is(err, fs.ErrNotExist) {
				fail(fmt.Errorf("%w: %s: %w: %s", ErrIncomplete, root, ErrNotFound, c))
				continue
			}
			if err == nil && (fresh(k) || s.verified.has(k, idOf(fi))) {
				info.Bytes += fi.Size()
				info.Blocks++
				keys = append(keys, k)
				continue
			}
		}
		data, err := s.readChecked(c, k, p, true, nil)
		if errors.Is(err, fs.ErrNotExist) {
			fail(fmt.Errorf("%w: %s: %w: %s", ErrIncomplete, root, ErrNotFound, c))
			continue
		}
		if errors.Is(err, errBadHash) {
			drop(c, p, int64(len(data)))
			fail(fmt.Errorf("%w: %s: %w: %s", ErrIncomplete, root, ErrCorrupt, c))
			continue
		}
		if err != nil {
			return info, keys, fmt.Errorf("%w: %s: reading block %s: %w", ErrIncomplete, root, c, err)
		}
		links, err := verify.Links(c, data)
		if err != nil {
			return info, keys, fmt.Errorf("%w: %s: %w", ErrIncomplete, root, err)
		}
		info.Bytes += int64(len(data))
		info.Blocks++
		keys = append(keys, k)
		for i := len(links) - 1; i >= 0; i-- {
			stack = append(stack, links[i])
		}
	}
	return info, keys, firstErr
}

// recheckHeldLocked walks every held bundle again, demotes those no longer
// complete to fetching, persists the change and rebuilds heldBlocks. s.mu
// must be held; the walks read files only.
func (s *Store) recheckHeldLocked(ctx context.Context) error {
	s.heldBlocks = map[string]int{}
	changed := false
	for _, b := range s.bundles {
		if b.State != StateHeld {
			continue
		}
		info, keys, err := s.walkLocked(ctx, b.Root)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			b.State = StateFetching
			changed = true
			continue
		}
		*b = info
		for _, k := range keys {
			s.heldBlocks[k]++
		}
	}
	if changed {
		return s.saveLocked()
	}
	return nil
}

// walkLocked is walk while s.mu is held: corrupt blocks are removed
// without touching s.mu again.
func (s *Store) walkLocked(ctx context.Context, root cid.Cid) (BundleInfo, []string, error) {
	return s.walkDAG(ctx, root, func(k string) bool {
		_, ok := s.fresh[k]
		return ok
	}, func(c cid.Cid, p string, n int64) {
		if os.Remove(p) == nil {
			s.removedLocked(p, n)
			s.corruptLocked(c, p, "walk")
		}
	})
}

// Held reports whether root is followed and complete.
func (s *Store) Held(root cid.Cid) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.bundles[root.KeyString()]
	return ok && b.State == StateHeld
}

// Bundles lists the followed bundles sorted by CID string.
func (s *Store) Bundles() []BundleInfo {
	s.mu.Lock()
	out := make([]BundleInfo, 0, len(s.bundles))
	for _, b := range s.bundles {
		out = append(out, *b)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Root.String() < out[j].Root.String() })
	return out
}

// GC deletes every block not reachable from a followed root (held or still
// fetching) and returns the bytes freed. Puts wait while GC runs.
func (s *Store) GC() (int64, error) {
	if err := s.checkOpen(); err != nil {
		return 0, err
	}
	s.gc.Lock()
	defer s.gc.Unlock()
	live := map[string]struct{}{}
	for _, b := range s.Bundles() {
		// Walk what is present; a missing block ends that branch.
		stack := []cid.Cid{b.Root}
		for len(stack) > 0 {
			c := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			k := key(c)
			if _, ok := live[k]; ok {
				continue
			}
			data, err := os.ReadFile(s.path(k))
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return 0, fmt.Errorf("layout1: gc: %w", err)
			}
			live[k] = struct{}{}
			links, err := verify.Links(c, data)
			if err != nil {
				continue // corrupt or foreign: keep the block, Scrub judges it
			}
			stack = append(stack, links...)
		}
	}
	var freed int64
	err := s.eachBlock(context.Background(), func(k, p string) error {
		if _, ok := live[k]; !ok {
			freed += s.remove(p)
		}
		return nil
	})
	if err != nil {
		return freed, fmt.Errorf("layout1: gc: %w", err)
	}
	return freed, nil
}

// Scrub re-hashes every stored block from its file, deletes the ones that no
// longer match their name and returns them (as raw-codec CIDv1s). It never
// trusts the verified cache, so it finds a block changed under an unchanged
// file identity (bit rot, or a rewrite that restored the timestamps). A held
// bundle that lost a block goes back to fetching.
func (s *Store) Scrub(ctx context.Context) ([]cid.Cid, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	var bad []cid.Cid
	err := s.eachBlock(ctx, func(k, p string) error {
		c, err := keyCid(k)
		if err != nil {
			return nil // not ours
		}
		_, err = s.readChecked(c, k, p, false, nil)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if errors.Is(err, errBadHash) {
			s.dropCorrupt(c, p, "scrub")
			bad = append(bad, c)
			return nil
		}
		return err
	})
	if len(bad) > 0 {
		// even if the scrub stopped early, what it deleted is accounted for
		s.mu.Lock()
		rerr := s.recheckHeldLocked(context.WithoutCancel(ctx))
		s.mu.Unlock()
		s.reportCorrupt()
		if err == nil {
			err = rerr
		}
	}
	if err != nil {
		return bad, fmt.Errorf("layout1: scrub: %w", err)
	}
	return bad, nil
}

// bundleRecord is the persisted form of a BundleInfo.
type bundleRecord struct {
	Root   string `json:"root"`
	State  string `json:"state"`
	Bytes  int64  `json:"bytes,omitempty"`
	Blocks int    `json:"blocks,omitempty"`
}

func (s *Store) load() error {
	p := filepath.Join(s.dir, bundlesFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("layout1: reading %s: %w", p, err)
	}
	var recs []bundleRecord
	if err := json.Unmarshal(b, &recs); err != nil {
		return fmt.Errorf("layout1: %s is damaged: %w", p, err)
	}
	for _, r := range recs {
		c, err := cid.Decode(r.Root)
		if err != nil {
			return fmt.Errorf("layout1: %s: bad root %q: %w", p, r.Root, err)
		}
		if r.State != StateHeld && r.State != StateFetching {
			return fmt.Errorf("layout1: %s: bad state %q for %s", p, r.State, r.Root)
		}
		s.bundles[c.KeyString()] = &BundleInfo{Root: c, State: r.State, Bytes: r.Bytes, Blocks: r.Blocks}
	}
	return nil
}

func (s *Store) saveLocked() error {
	recs := make([]bundleRecord, 0, len(s.bundles))
	for _, b := range s.bundles {
		recs = append(recs, bundleRecord{Root: b.Root.String(), State: b.State, Bytes: b.Bytes, Blocks: b.Blocks})
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Root < recs[j].Root })
	data, err := json.MarshalIndent(recs, "", "  ")
	if err != nil {
		return fmt.Errorf("layout1: encoding bundle list: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(s.dir, bundlesFile), append(data, '\n'), 0o600); err != nil {
		if isNoSpace(err) {
			return errorf(ErrNoSpace, "layout1: no space left on device saving the bundle list in %s: free disk space", s.dir)
		}
		return fmt.Errorf("layout1: saving bundle list: %w", err)
	}
	return nil
}
