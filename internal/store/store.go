// Package store is mirrornet's content-addressed, crash-safe block store and
// the bookkeeping of which bundles a mirror follows and holds.
//
// Blocks live in pack files under DIR/packs, appended one record after
// another, rather than one file per block: creating a file per block cost
// about half a millisecond of kernel time per block (see pack.go for the
// format and docs/BENCHMARKS.md for the measurements that chose it). An
// in-memory index, rebuilt at Open from each pack's index file, maps a
// block's multihash (so a CIDv0 and a CIDv1 of the same bytes share one
// record) to its place. Every block is hashed against its CID on Put
// (PutVerified is for callers that hashed the bytes themselves) and again
// when read back; a block that no longer matches is deleted and reported as
// ErrCorrupt. A store directory of the older file-per-block layout is
// migrated on first Open (see migrate.go).
//
// Reads do not hash a block again while its pack is the very version this
// process last verified it in: a bounded in-memory cache maps each such
// block to its pack and the pack's epoch, and the epoch moves whenever the
// pack file's identity (device, inode, size, mtime and ctime, taken from
// the open file before and after reading) differs from the one last seen.
// Rewriting a pack in place, replacing or truncating it, or touching it
// with os.Chtimes (which moves the ctime) thus makes the next read of each
// of its blocks hash it. A pack changed within [racyWindow] of a
// verification is not cached (Git's "racy clean" rule), and where the
// identity lacks inode and ctime (systems other than Linux) the cache is
// off. The cache starts empty at Open, so after a crash every block is
// hashed on its first read. Scrub never consults it: it re-hashes every
// block, which is what finds bit rot under an unchanged file.
//
// Durability is group-committed. Put appends a block to the active pack and
// starts its writeback (sync_file_range on Linux, which does not wait): no
// fsync per block. A block that is not part of a held bundle may therefore
// be torn or missing after a power loss; reads re-hash, so such a block is
// found, deleted and fetched again. A block becomes durable when a bundle
// containing it is marked held: MarkHeld walks the whole DAG, re-hashing
// every block except raw leaves this process itself wrote with Put (their
// bytes were hashed on the way in), then fsyncs every pack holding a block
// not yet durable and writes its index, and only then records the bundle
// as held.
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
package store

import (
	"context"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
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
	blocksDir   = "blocks" // the file-per-block layout, migrated at Open
	bundlesFile = "bundles.json"
	tmpPrefix   = atomicfile.TempPrefix
)

var (
	// ErrNotFound means the block is not in the store.
	ErrNotFound = errors.New("store: block not found")
	// ErrCorrupt means a stored block no longer hashes to its CID; it has
	// been deleted and must be fetched again.
	ErrCorrupt = errors.New("store: block corrupt on disk (deleted)")
	// ErrHashMismatch means Put was given bytes that do not hash to the CID.
	ErrHashMismatch = errors.New("store: block does not match its CID")
	// ErrTooLarge means a block is larger than verify.MaxBlockSize.
	ErrTooLarge = errors.New("store: block too large")
	// ErrStorageLimit means the block would take the store over
	// Options.MaxBytes.
	ErrStorageLimit = errors.New("store: storage limit reached")
	// ErrNoSpace means the file system is full (ENOSPC). Nothing partial was
	// left behind; reads keep working and writes succeed once space is freed.
	ErrNoSpace = errors.New("store: no space left on device")
	// ErrIncomplete means MarkHeld found a block of the DAG missing or
	// invalid.
	ErrIncomplete = errors.New("store: bundle incomplete")
	// ErrNotWritable means the store directory cannot be written.
	ErrNotWritable = errors.New("store: directory not writable")
	// ErrClosed means the store was closed.
	ErrClosed = errors.New("store: closed")
)

// Options configure a Store.
type Options struct {
	// MaxBytes caps the bytes of block data kept; 0 means unlimited. Put
	// fails with ErrStorageLimit rather than exceed it.
	MaxBytes int64

	// VerifiedCache is how many blocks' verified locations the store
	// remembers so reads need not hash them again; 0 means
	// DefaultVerifiedCache, -1 turns the cache off (every read hashes).
	VerifiedCache int

	// PackSize is the size at which the active pack is sealed and a new
	// one started; 0 means DefaultPackSize.
	PackSize int64

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
	File string  // the pack file that held it
	// Offset is where the block's bytes started in File.
	Offset int64
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
	dir      string
	packDir  string
	opts     Options
	packSize int64

	// gc is held for reading by Put and for writing by GC, so a block
	// written while GC sweeps is never swept.
	gc sync.RWMutex
	// wmu serialises writes to packs: appends, sealing, tombstones.
	// Lock order: gc, then wmu, then mu, then a pack's idxMu.
	wmu sync.Mutex

	mu       sync.Mutex
	closed   bool
	usage    int64
	bundles  map[string]*BundleInfo   // by root KeyString
	inflight map[string]chan struct{} // blocks being written, by key
	// index locates every live block, by key.
	index map[string]loc
	// packs by number; active is the one appended to (nil after a failed
	// seal until the next write creates one).
	packs  map[uint32]*pack
	active *pack
	// heldBlocks counts, per block key, the held bundles whose DAG holds it.
	// Those blocks are durable: MarkHeld fsynced them.
	heldBlocks map[string]int
	// fresh holds the blocks this process wrote with Put (and has not
	// removed since): their bytes were hashed on the way in, so MarkHeld
	// need not read raw leaves among them again.
	fresh map[string]struct{}
	// verified remembers the block locations this process hashed.
	verified *verifiedCache
	// corrupt queues blocks found corrupt for Options.OnCorrupt until the
	// finding method has released s.mu and updated bundle states.
	corrupt []Corruption
	// tombs queues tombstones of blocks dropped while s.mu was held, to be
	// appended once it is released (reportCorrupt).
	tombs []loc
	// absorb: old block files were found beside the packs at Open.
	absorb bool
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

// pack is one pack file.
type pack struct {
	seq  uint32
	path string
	f    *os.File

	// guarded by Store.mu
	size   int64 // bytes in the file: where the next record goes
	synced int64 // the prefix known durable (fsynced)
	sealed bool
	live   int64    // bytes of live blocks
	recs   []record // every record in file order, for the index (nil once sealed)

	// idxMu serialises index writes and hole punching.
	idxMu   sync.Mutex
	indexed int64 // what the index file on disk covers

	// wbFrom is where the appended data whose writeback has not been
	// started yet begins (guarded by Store.wmu).
	wbFrom int64

	// idMu guards the identity the verified cache trusts.
	idMu    sync.Mutex
	trusted fileID
	epoch   uint64
}

// loc is where a live block is.
type loc struct {
	p    *pack
	off  int64  // record start
	klen uint8  // multihash length
	size uint32 // block bytes
}

func (l loc) dataOff() int64 { return l.off + recHdrSize + int64(l.klen) }

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// key is the index key of a block: base32 of its multihash.
func key(c cid.Cid) string { return b32.EncodeToString(c.Hash()) }

// Open opens (creating if needed) the store in dir. It migrates a directory
// of the file-per-block layout, loads the pack indexes, cuts off a write
// torn by a crash, and rechecks every held bundle. A damaged store
// (ErrDamaged) or one from a newer version (ErrNewerVersion) is refused with
// one line saying which file and what to do; nothing is changed then.
func Open(dir string, opts Options) (*Store, error) {
	if opts.MaxBytes < 0 {
		return nil, fmt.Errorf("store: Options.MaxBytes must be >= 0, got %d", opts.MaxBytes)
	}
	if opts.VerifiedCache < -1 {
		return nil, fmt.Errorf("store: Options.VerifiedCache must be >= -1, got %d", opts.VerifiedCache)
	}
	if opts.PackSize < 0 {
		return nil, fmt.Errorf("store: Options.PackSize must be >= 0, got %d", opts.PackSize)
	}
	cacheSize := opts.VerifiedCache
	if cacheSize == 0 {
		cacheSize = DefaultVerifiedCache
	}
	if !strongFileID {
		cacheSize = -1 // size and mtime alone miss a same-size rewrite with its mtime kept
	}
	s := &Store{
		dir:        dir,
		packDir:    filepath.Join(dir, packsDir),
		opts:       opts,
		packSize:   opts.PackSize,
		bundles:    map[string]*BundleInfo{},
		inflight:   map[string]chan struct{}{},
		index:      map[string]loc{},
		packs:      map[uint32]*pack{},
		heldBlocks: map[string]int{},
		fresh:      map[string]struct{}{},
		verified:   newVerifiedCache(cacheSize),
		now:        time.Now,
		fsync:      fsyncPath,
		check:      verify.Check,
	}
	if s.packSize == 0 {
		s.packSize = DefaultPackSize
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNotWritable, dir, unwrapPath(err))
	}
	probe, err := os.CreateTemp(dir, tmpPrefix+"probe-")
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNotWritable, dir, unwrapPath(err))
	}
	probe.Close()
	os.Remove(probe.Name())

	if err := s.openPacks(); err != nil {
		s.closeFiles()
		return nil, err
	}
	if s.absorb {
		if err := s.absorbOld(); err != nil {
			s.closeFiles()
			return nil, err
		}
	}
	if err := s.load(); err != nil {
		s.closeFiles()
		return nil, err
	}
	// A held bundle must still be complete and valid: recheck and rebuild
	// the index of blocks that belong to held bundles.
	s.mu.Lock()
	err = s.recheckHeldLocked(context.Background())
	s.mu.Unlock()
	if err != nil {
		s.closeFiles()
		return nil, err
	}
	s.reportCorrupt()
	return s, nil
}

// corruptLocked queues a report of block c, found corrupt by foundBy at l.
// s.mu must be held.
func (s *Store) corruptLocked(c cid.Cid, l loc, foundBy string) {
	if s.opts.OnCorrupt != nil {
		s.corrupt = append(s.corrupt, Corruption{Cid: c, File: l.p.path, Offset: l.dataOff(), FoundBy: foundBy})
	}
}

// reportCorrupt appends the tombstones of blocks dropped under s.mu and
// hands queued corruption reports to Options.OnCorrupt. Call it without
// s.mu held, after bundle states are up to date.
func (s *Store) reportCorrupt() {
	s.mu.Lock()
	pending, tombs := s.corrupt, s.tombs
	s.corrupt, s.tombs = nil, nil
	s.mu.Unlock()
	if len(tombs) > 0 {
		// Not fsynced and not punched: were a tombstone lost, the corrupt
		// record would be found corrupt again.
		s.wmu.Lock()
		for _, l := range tombs {
			if err := s.appendTombLocked(l); err != nil {
				break
			}
		}
		s.wmu.Unlock()
	}
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

// Close marks the store closed and closes its pack files. It is
// idempotent; later calls fail with ErrClosed.
func (s *Store) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.closeFiles()
	return nil
}

func (s *Store) closeFiles() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.packs {
		p.f.Close()
	}
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
		if _, ok := s.index[k]; ok {
			s.mu.Unlock()
			return nil
		}
		n := int64(len(data))
		if s.opts.MaxBytes > 0 && s.usage+n > s.opts.MaxBytes {
			used := s.usage
			s.mu.Unlock()
			return errorf(ErrStorageLimit, "store: storage limit of %d bytes reached: %d used, block %s needs %d more; raise the limit or unfollow a bundle and run gc",
				s.opts.MaxBytes, used, c, n)
		}
		s.usage += n
		ch := make(chan struct{})
		s.inflight[k] = ch
		s.mu.Unlock()

		err := s.appendBlock(k, c.Hash(), data)
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
			return errorf(ErrNoSpace, "store: no space left on device writing block %s to %s: free disk space or lower the storage limit (reads keep working)", c, s.dir)
		}
		if errors.Is(err, ErrClosed) {
			return err
		}
		if err != nil {
			return fmt.Errorf("store: writing block %s: %w", c, err)
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
	k := key(c)
	data, l, err := s.readBlock(c, k, true, buf)
	switch {
	case errors.Is(err, errNotStored):
		return nil, fmt.Errorf("%w: %s", ErrNotFound, c)
	case errors.Is(err, errBadHash):
		s.mu.Lock()
		s.dropLocked(c, k, l, "read")
		if s.heldBlocks[k] > 0 {
			_ = s.recheckHeldLocked(context.Background())
		}
		s.mu.Unlock()
		s.reportCorrupt()
		return nil, fmt.Errorf("%w: %s", ErrCorrupt, c)
	case err != nil:
		return nil, fmt.Errorf("store: reading block %s: %w", c, err)
	}
	return data, nil
}

// Has reports whether the block is present (without re-hashing it).
func (s *Store) Has(c cid.Cid) (bool, error) {
	if err := s.checkOpen(); err != nil {
		return false, err
	}
	_, ok := s.lookup(key(c))
	return ok, nil
}

// GetSize returns a block's size in bytes, or ErrNotFound.
func (s *Store) GetSize(c cid.Cid) (int, error) {
	if err := s.checkOpen(); err != nil {
		return 0, err
	}
	l, ok := s.lookup(key(c))
	if !ok {
		return 0, fmt.Errorf("%w: %s", ErrNotFound, c)
	}
	return int(l.size), nil
}

// Locate returns the pack file holding block c and the offset of the
// block's bytes in it: for logs, and for tests that damage a block.
func (s *Store) Locate(c cid.Cid) (file string, offset int64, size int, err error) {
	l, ok := s.lookup(key(c))
	if !ok {
		return "", 0, 0, fmt.Errorf("%w: %s", ErrNotFound, c)
	}
	return l.p.path, l.dataOff(), int(l.size), nil
}

// Delete removes a block; deleting an absent block is not an error. Its
// space is freed at once (its bytes are punched out of its pack once the
// deletion is durable). A held bundle that contained it goes back to
// fetching.
func (s *Store) Delete(c cid.Cid) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	k := key(c)
	_, err := s.deleteKeys([]string{k})
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.heldBlocks[k] > 0 {
		if rerr := s.recheckHeldLocked(context.Background()); err == nil {
			err = rerr
		}
	}
	return err
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
	for _, k := range s.keys() {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		c, err := keyCid(k)
		if err == nil {
			out = append(out, c)
		}
	}
	return out, nil
}

// keys lists the index keys, sorted.
func (s *Store) keys() []string {
	s.mu.Lock()
	out := make([]string, 0, len(s.index))
	for k := range s.index {
		out = append(out, k)
	}
	s.mu.Unlock()
	sort.Strings(out)
	return out
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
// block (except raw leaves this process put), fsyncs every pack holding a
// block not yet durable, and only if every block is present, valid and
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
	todo := map[*pack]int64{} // pack -> end of the last record to make durable
	for _, k := range keys {
		l, ok := s.index[k]
		if !ok || s.heldBlocks[k] > 0 {
			continue
		}
		if end := l.dataOff() + int64(l.size); end > l.p.synced && end > todo[l.p] {
			todo[l.p] = end
		}
	}
	s.mu.Unlock()
	err = s.syncPacks(todo)
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
	// A block deleted (Delete, Scrub) or lost to a failed sync while s.mu
	// was released is caught here; one deleted after is caught by Delete's
	// recheck of held bundles.
	for _, k := range keys {
		l, ok := s.index[k]
		if !ok {
			return *b, fmt.Errorf("%w: %s: block %s went away", ErrIncomplete, root, k)
		}
		if l.dataOff()+int64(l.size) > l.p.synced {
			return *b, fmt.Errorf("%w: %s: block %s was rewritten and is not durable yet", ErrIncomplete, root, k)
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

// syncParallel is how many packs MarkHeld fsyncs at once.
const syncParallel = 8

// syncPacks makes each pack durable at least up to the given offset (and
// writes its index). A pack whose fsync fails loses its records not known
// durable (their pages may be gone): they are dropped from the index, and
// the error wraps ErrIncomplete, or ErrNoSpace when the disk is full.
func (s *Store) syncPacks(todo map[*pack]int64) error {
	if len(todo) == 0 {
		return nil
	}
	work := make(chan *pack)
	var (
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
	)
	for range min(syncParallel, len(todo)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				if err := s.syncPack(p); err != nil {
					errMu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					errMu.Unlock()
				}
			}
		}()
	}
	for p := range todo {
		work <- p
	}
	close(work)
	wg.Wait()
	switch {
	case firstErr == nil:
		return nil
	case isNoSpace(firstErr):
		return errorf(ErrNoSpace, "store: no space left on device making blocks durable in %s: free disk space or lower the storage limit (reads keep working)", s.dir)
	default:
		return fmt.Errorf("%w: making blocks durable: %w", ErrIncomplete, firstErr)
	}
}

// walk verifies the DAG under root and returns its totals and block keys.
// A raw leaf this process wrote with Put (and has not removed since) is
// not read again: Put hashed exactly the bytes it wrote; nor is one the
// verified cache vouches for. Every other block (inner nodes, blocks found
// on disk at Open, possibly torn by a crash) is read and re-hashed; a
// corrupt one is deleted.
func (s *Store) walk(ctx context.Context, root cid.Cid) (BundleInfo, []string, error) {
	info, keys, err := s.walkDAG(ctx, root, func(k string) (loc, bool) { return s.lookup(k) }, func(k string) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		_, ok := s.fresh[k]
		return ok
	}, func(c cid.Cid, k string, l loc) {
		s.mu.Lock()
		s.dropLocked(c, k, l, "walk")
		s.mu.Unlock()
	})
	if err != nil && !errors.Is(err, ErrIncomplete) {
		err = fmt.Errorf("%w: %s: %w", ErrIncomplete, root, err)
	}
	return info, keys, err
}

// walkDAG visits the DAG under root depth-first, each block once, and
// returns the first missing or corrupt block's error after visiting all it
// can reach. find locates a block; fresh says whether it was written by
// this process; drop deletes the corrupt block c at l.
func (s *Store) walkDAG(ctx context.Context, root cid.Cid, find func(k string) (loc, bool), fresh func(key string) bool, drop func(c cid.Cid, k string, l loc)) (BundleInfo, []string, error) {
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
		l, ok := find(k)
		if !ok {
			fail(fmt.Errorf("%w: %s: %w: %s", ErrIncomplete, root, ErrNotFound, c))
			continue
		}
		if c.Type() == cid.Raw && (fresh(k) || s.cachedValid(k, l)) {
			// a leaf has no links: its size is all the walk needs
			info.Bytes += int64(l.size)
			info.Blocks++
			keys = append(keys, k)
			continue
		}
		data, err := s.readAt(c, k, l, true, nil)
		if errors.Is(err, errBadHash) {
			drop(c, k, l)
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
// must be held; the walks read pack files only.
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

// walkLocked is walk while s.mu is held.
func (s *Store) walkLocked(ctx context.Context, root cid.Cid) (BundleInfo, []string, error) {
	return s.walkDAG(ctx, root, func(k string) (loc, bool) {
		l, ok := s.index[k]
		return l, ok
	}, func(k string) bool {
		_, ok := s.fresh[k]
		return ok
	}, func(c cid.Cid, k string, l loc) { s.dropLocked(c, k, l, "walk") })
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
// fetching), frees their space, compacts packs left mostly dead, and
// returns the bytes of block data freed. Puts wait while GC runs.
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
			l, ok := s.lookup(k)
			if !ok {
				continue
			}
			live[k] = struct{}{}
			if c.Type() == cid.Raw {
				continue // no links
			}
			data, err := s.readRaw(l)
			if err != nil {
				return 0, fmt.Errorf("store: gc: %w", err)
			}
			links, err := verify.Links(c, data)
			if err != nil {
				continue // corrupt or foreign: keep the block, Scrub judges it
			}
			stack = append(stack, links...)
		}
	}
	var dead []string
	for _, k := range s.keys() {
		if _, ok := live[k]; !ok {
			dead = append(dead, k)
		}
	}
	freed, err := s.deleteKeys(dead)
	if err != nil {
		return freed, fmt.Errorf("store: gc: %w", err)
	}
	if err := s.compact(); err != nil {
		return freed, fmt.Errorf("store: gc: %w", err)
	}
	return freed, nil
}

// Scrub re-hashes every stored block, deletes the ones that no longer match
// their multihash and returns them (as raw-codec CIDv1s). It never trusts
// the verified cache, so it finds a block changed under an unchanged file
// identity (bit rot, or a rewrite that restored the timestamps). A held
// bundle that lost a block goes back to fetching.
func (s *Store) Scrub(ctx context.Context) ([]cid.Cid, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	var bad []cid.Cid
	var err error
	var buf []byte
	for _, k := range s.keys() {
		if err = ctx.Err(); err != nil {
			break
		}
		c, kerr := keyCid(k)
		if kerr != nil {
			continue // not ours
		}
		var l loc
		buf, l, err = s.readBlock(c, k, false, buf[:0])
		if errors.Is(err, errNotStored) {
			err = nil
			continue
		}
		if errors.Is(err, errBadHash) {
			err = nil
			s.mu.Lock()
			s.dropLocked(c, k, l, "scrub")
			s.mu.Unlock()
			bad = append(bad, c)
			continue
		}
		if err != nil {
			break
		}
	}
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
		return bad, fmt.Errorf("store: scrub: %w", err)
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
		return fmt.Errorf("store: reading %s: %w", p, err)
	}
	var recs []bundleRecord
	if err := json.Unmarshal(b, &recs); err != nil {
		return fmt.Errorf("store: %s is damaged: %w", p, err)
	}
	for _, r := range recs {
		c, err := cid.Decode(r.Root)
		if err != nil {
			return fmt.Errorf("store: %s: bad root %q: %w", p, r.Root, err)
		}
		if r.State != StateHeld && r.State != StateFetching {
			return fmt.Errorf("store: %s: bad state %q for %s", p, r.State, r.Root)
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
		return fmt.Errorf("store: encoding bundle list: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(s.dir, bundlesFile), append(data, '\n'), 0o600); err != nil {
		if isNoSpace(err) {
			return errorf(ErrNoSpace, "store: no space left on device saving the bundle list in %s: free disk space", s.dir)
		}
		return fmt.Errorf("store: saving bundle list: %w", err)
	}
	return nil
}
