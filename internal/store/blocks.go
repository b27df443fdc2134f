package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ipfs/go-cid"
)

var (
	// errNotStored is readBlock's report of a block not in the index.
	errNotStored = errors.New("store: block not stored")
	// errBadHash is the report of a block whose bytes do not hash to its
	// CID.
	errBadHash = errors.New("store: block does not match its CID")
)

// openPacks checks the layout version, finishes or starts a migration from
// the file-per-block layout, and loads every pack.
func (s *Store) openPacks() error {
	hasVersion, err := checkVersion(s.dir)
	if err != nil {
		return err
	}
	leftover, err := migrate(s.dir, s.packSize)
	if err != nil {
		return err
	}
	s.absorb = leftover
	if err := os.MkdirAll(s.packDir, 0o755); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrNotWritable, s.packDir, unwrapPath(err))
	}
	if !hasVersion {
		if err := writeVersion(s.dir); err != nil {
			if isNoSpace(err) {
				return errorf(ErrNoSpace, "store: no space left on device writing %s: free disk space", filepath.Join(s.dir, versionFile))
			}
			return fmt.Errorf("store: %w", err)
		}
	}
	entries, err := os.ReadDir(s.packDir)
	if err != nil {
		return fmt.Errorf("store: reading %s: %w", s.packDir, err)
	}
	var seqs []uint32
	have := map[uint32]bool{}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			_ = os.Remove(filepath.Join(s.packDir, e.Name()))
			continue
		}
		if seq, ok := parseSeq(e.Name(), packExt); ok {
			seqs = append(seqs, seq)
			have[seq] = true
		}
	}
	for _, e := range entries {
		// the index of a pack GC removed (it removes the pack first)
		if seq, ok := parseSeq(e.Name(), idxExt); ok && !have[seq] {
			_ = os.Remove(filepath.Join(s.packDir, e.Name()))
		}
	}
	slices.Sort(seqs)
	var all []*pack
	for i, seq := range seqs {
		p, err := s.loadPack(seq, i == len(seqs)-1)
		if err != nil {
			return err
		}
		if p != nil {
			s.packs[seq] = p
			all = append(all, p)
		}
	}
	// Tombstones first, then the blocks they do not delete; a block in
	// several packs (a compaction interrupted by a crash) lives in the
	// last one.
	dead := map[uint32]map[int64]bool{}
	for _, p := range all {
		for _, r := range p.recs {
			if r.kind == kindTomb {
				seq, off := r.target()
				if dead[seq] == nil {
					dead[seq] = map[int64]bool{}
				}
				dead[seq][off] = true
			}
		}
	}
	for _, p := range all {
		for _, r := range p.recs {
			if r.kind != kindBlock || dead[p.seq][r.off] {
				continue
			}
			k := b32.EncodeToString(r.mh)
			if old, ok := s.index[k]; ok {
				old.p.live -= int64(old.size)
				s.usage -= int64(old.size)
			}
			s.index[k] = loc{p: p, off: r.off, klen: uint8(len(r.mh)), size: r.size}
			p.live += int64(r.size)
			s.usage += int64(r.size)
		}
	}
	for _, p := range all {
		if p.sealed {
			p.recs = nil // on disk in its index; GC reads it from there
		}
	}
	if len(all) > 0 && !all[len(all)-1].sealed {
		s.active = all[len(all)-1]
		return nil
	}
	var next uint32 = 1
	if len(seqs) > 0 {
		next = seqs[len(seqs)-1] + 1
	}
	p, err := s.newPack(next)
	if err != nil {
		return err
	}
	s.packs[p.seq] = p
	s.active = p
	return nil
}

// loadPack opens pack seq and reads its records: from its index, and for
// the active (last) pack also by scanning what the index does not cover,
// cutting off a torn tail. It returns nil for a last pack that a crash left
// without even its header.
func (s *Store) loadPack(seq uint32, last bool) (*pack, error) {
	path := filepath.Join(s.packDir, packName(seq)+packExt)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("store: opening %s: %w", path, err)
	}
	p, err := s.readPack(seq, path, f, last)
	if err != nil || p == nil {
		f.Close()
	}
	if p == nil && err == nil {
		if rerr := os.Remove(path); rerr != nil {
			return nil, fmt.Errorf("store: removing empty %s: %w", path, rerr)
		}
	}
	return p, err
}

func (s *Store) readPack(seq uint32, path string, f *os.File, last bool) (*pack, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	size := fi.Size()
	hdr := make([]byte, fileHdrSize)
	n, _ := f.ReadAt(hdr, 0)
	if n < fileHdrSize && last {
		return nil, nil // created, then a crash before its header was written
	}
	if err := checkFileHeader(path, hdr[:n], packMagic, packFormat); err != nil {
		return nil, err
	}
	idxPath := filepath.Join(s.packDir, packName(seq)+idxExt)
	raw, err := readSmall(idxPath)
	if err != nil {
		return nil, fmt.Errorf("store: reading %s: %w", idxPath, err)
	}
	ix := packIndex{covered: fileHdrSize}
	if raw != nil {
		if ix, err = decodeIndex(idxPath, raw); err != nil {
			return nil, err
		}
	}
	if ix.covered > size {
		return nil, fmt.Errorf("%w: %s is truncated: %d bytes, its index lists records up to byte %d; %s",
			ErrDamaged, path, size, ix.covered, damagedAdvice(path))
	}
	p := &pack{seq: seq, path: path, f: f, size: size, synced: ix.covered, indexed: ix.covered, sealed: ix.sealed, recs: ix.recs}
	if raw != nil && ix.sealed {
		p.size = ix.covered
	}
	if !ix.sealed {
		more, stop, err := scanPack(f, ix.covered, size)
		if err != nil {
			return nil, fmt.Errorf("store: reading %s: %w", path, err)
		}
		p.recs = append(p.recs, more...)
		if stop < size {
			if !last {
				return nil, fmt.Errorf("%w: %s has no complete record at byte %d of %d; %s", ErrDamaged, path, stop, size, damagedAdvice(path))
			}
			// the torn tail of the last write before a crash: never part
			// of a held bundle (MarkHeld syncs before it records one)
			if err := f.Truncate(stop); err != nil {
				return nil, fmt.Errorf("store: cutting the torn tail off %s: %w", path, err)
			}
		}
		p.size = stop
		if !last {
			// its index went missing: rebuild it from the pack
			if err := s.writeIndex(p, true, p.size, p.recs); err != nil {
				return nil, err
			}
			p.sealed = true
		}
	}
	if fi, err := f.Stat(); err == nil {
		p.trusted = idOf(fi)
	}
	return p, nil
}

// newPack creates pack seq with its header and makes it and its directory
// entry durable.
func (s *Store) newPack(seq uint32) (*pack, error) {
	path := filepath.Join(s.packDir, packName(seq)+packExt)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, s.writeErr(path, err)
	}
	fail := func(err error) (*pack, error) {
		f.Close()
		os.Remove(path)
		return nil, s.writeErr(path, err)
	}
	if _, err := f.WriteAt(packHeader(), 0); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := s.fsync(s.packDir); err != nil {
		return fail(err)
	}
	p := &pack{seq: seq, path: path, f: f, size: fileHdrSize, synced: fileHdrSize, indexed: fileHdrSize}
	if fi, err := f.Stat(); err == nil {
		p.trusted = idOf(fi)
	}
	return p, nil
}

// writeErr turns a failed write of path into ErrNoSpace's line when the
// disk is full.
func (s *Store) writeErr(path string, err error) error {
	if isNoSpace(err) {
		return errorf(ErrNoSpace, "store: no space left on device writing %s: free disk space or lower the storage limit (reads keep working)", path)
	}
	return fmt.Errorf("store: writing %s: %w", path, err)
}

// activeLocked returns the pack to append to, creating one if the last
// seal could not. s.wmu must be held.
func (s *Store) activeLocked() (*pack, error) {
	s.mu.Lock()
	p, closed := s.active, s.closed
	var next uint32 = 1
	for seq := range s.packs {
		next = max(next, seq+1)
	}
	s.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if p != nil {
		return p, nil
	}
	p, err := s.newPack(next)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.packs[p.seq] = p
	s.active = p
	s.mu.Unlock()
	return p, nil
}

// appendBlock appends the record of block k (multihash m) and indexes it.
func (s *Store) appendBlock(k string, m, data []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	r, p, err := s.appendLocked(kindBlock, m, data)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.index[k] = loc{p: p, off: r.off, klen: uint8(len(m)), size: r.size}
	p.live += int64(r.size)
	full := p.size >= s.packSize || len(p.recs) >= maxPackRecords
	s.mu.Unlock()
	// the bytes just written are the verified ones
	if id, epoch, ok := p.current(); ok {
		s.verified.add(k, p.seq, epoch, id, s.now())
	}
	if full {
		_ = s.sealLocked(p) // on failure the next write tries again
	}
	return nil
}

// appendLocked writes one record at the end of the active pack, starts its
// writeback, and records it in the pack. A failed write is cut off again,
// so the pack never holds a partial record while the system runs. s.wmu
// must be held.
func (s *Store) appendLocked(kind byte, m, data []byte) (record, *pack, error) {
	p, err := s.activeLocked()
	if err != nil {
		return record{}, nil, err
	}
	s.mu.Lock()
	off := p.size
	s.mu.Unlock()
	r := record{kind: kind, mh: m, off: off, size: uint32(len(data))}
	before, _ := p.f.Stat()
	if err := writeRecord(p.f, off, recordHeader(kind, m, len(data)), data); err != nil {
		_ = p.f.Truncate(off)
		return record{}, nil, err
	}
	// Start the writeback of what was appended since the last start, once
	// there is at least writebackChunk of it: one call per 1 MiB block, one
	// per few hundred small ones.
	if r.end()-p.wbFrom >= writebackChunk {
		startWriteback(p.f, p.wbFrom, r.end()-p.wbFrom)
		p.wbFrom = r.end()
	}
	if after, err := p.f.Stat(); err == nil && before != nil {
		p.ownWrite(idOf(before), idOf(after))
	}
	s.mu.Lock()
	p.size = r.end()
	p.recs = append(p.recs, r)
	s.mu.Unlock()
	return r, p, nil
}

// writebackChunk is how much appended data appendLocked lets accumulate
// before it starts its writeback.
const writebackChunk = 1 << 20

// appendTombLocked appends a tombstone for the block record at l. s.wmu
// must be held.
func (s *Store) appendTombLocked(l loc) error {
	_, p, err := s.appendLocked(kindTomb, tombKey(l.p.seq, l.off), nil)
	if err != nil {
		return err
	}
	s.mu.Lock()
	full := p.size >= s.packSize || len(p.recs) >= maxPackRecords
	s.mu.Unlock()
	if full {
		_ = s.sealLocked(p)
	}
	return nil
}

// sealLocked seals the active pack p: fsyncs it, writes its complete index
// and starts a new active pack. s.wmu must be held.
func (s *Store) sealLocked(p *pack) error {
	if err := s.syncPack(p); err != nil {
		return err
	}
	s.mu.Lock()
	size := p.size
	recs := slices.Clone(p.recs)
	s.mu.Unlock()
	if err := s.writeIndex(p, true, size, recs); err != nil {
		return err
	}
	s.mu.Lock()
	p.sealed = true
	p.recs = nil // on disk in its index now
	if s.active == p {
		s.active = nil
	}
	s.mu.Unlock()
	_, err := s.activeLocked()
	return err
}

// syncPack fsyncs pack p and records how much of it is durable; for the
// active pack it also rewrites the index to cover that prefix, so that Open
// can tell a pack cut short from a torn tail. When the fsync fails, the
// records not known durable are dropped from the index (the kernel may have
// discarded their pages) and will be fetched again.
func (s *Store) syncPack(p *pack) error {
	s.mu.Lock()
	target := p.size
	done := target <= p.synced
	s.mu.Unlock()
	if done {
		return nil
	}
	if err := s.fsync(p.path); err != nil {
		s.dropUnsynced(p)
		return err
	}
	s.mu.Lock()
	p.synced = max(p.synced, target)
	sealed := p.sealed
	var recs []record
	for _, r := range p.recs {
		if r.end() <= target {
			recs = append(recs, r)
		}
	}
	s.mu.Unlock()
	if !sealed {
		// The records are durable either way (a scan finds them): an index
		// that cannot be written only makes Open scan more.
		_ = s.writeIndex(p, false, target, recs)
	}
	return nil
}

// writeIndex writes p's index covering [fileHdrSize, covered). A partial
// index never replaces a sealed or longer one.
func (s *Store) writeIndex(p *pack, sealed bool, covered int64, recs []record) error {
	p.idxMu.Lock()
	defer p.idxMu.Unlock()
	if !sealed && covered <= p.indexed {
		return nil
	}
	path := filepath.Join(s.packDir, packName(p.seq)+idxExt)
	if err := writeSmall(path, encodeIndex(packIndex{sealed: sealed, covered: covered, recs: recs})); err != nil {
		return s.writeErr(path, err)
	}
	p.indexed = max(p.indexed, covered)
	return nil
}

// dropUnsynced forgets p's blocks beyond its durable prefix.
func (s *Store) dropUnsynced(p *pack) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, l := range s.index {
		if l.p == p && l.dataOff()+int64(l.size) > p.synced {
			s.unindexLocked(k, l)
		}
	}
}

// lookup finds a live block.
func (s *Store) lookup(k string) (loc, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.index[k]
	return l, ok
}

// readBlock finds and reads block c (key k) and checks it (see readAt). It
// returns errNotStored for a block not in the store. A block moved by a
// concurrent compaction is looked up again.
func (s *Store) readBlock(c cid.Cid, k string, useCache bool, buf []byte) ([]byte, loc, error) {
	for range 3 {
		l, ok := s.lookup(k)
		if !ok {
			return nil, loc{}, errNotStored
		}
		data, err := s.readAt(c, k, l, useCache, buf)
		if errors.Is(err, os.ErrClosed) {
			continue
		}
		return data, l, err
	}
	return nil, loc{}, errNotStored
}

// readAt reads the block at l and checks it against c. With useCache, a
// block the verified cache vouches for in the pack's current version (its
// identity the same before and after the read) is not hashed again. A block
// found valid is remembered in the cache. A block that does not match c
// gives errBadHash along with the bytes read.
func (s *Store) readAt(c cid.Cid, k string, l loc, useCache bool, buf []byte) ([]byte, error) {
	p := l.p
	fi, err := p.f.Stat()
	if err != nil {
		return nil, err
	}
	id := idOf(fi)
	epoch := p.epochOf(id)
	var data []byte
	if buf != nil && int(l.size) <= cap(buf) {
		data = buf[:l.size]
	} else {
		data = make([]byte, l.size)
	}
	n, err := p.f.ReadAt(data, l.dataOff())
	if errors.Is(err, io.EOF) {
		// the pack was cut short under us: hash what is there
		data, useCache, err = data[:n], false, nil
	}
	if err != nil {
		return nil, err
	}
	same := func() bool {
		after, err := p.f.Stat()
		return err == nil && idOf(after) == id
	}
	return data, s.vouch(c, k, p, id, epoch, same, useCache, data)
}

// vouch checks data, read for block c (key k) from pack p while its
// identity was id (at epoch): with useCache, a block the verified cache
// vouches for in that version is not hashed again if the pack still has
// that identity after the read (same); a block found valid is remembered
// in the cache; one that does not match c is forgotten and gives
// errBadHash.
func (s *Store) vouch(c cid.Cid, k string, p *pack, id fileID, epoch uint64, same func() bool, useCache bool, data []byte) error {
	if useCache && s.verified.has(k, p.seq, epoch) && same() {
		return nil
	}
	if s.check(c, data) != nil {
		s.verified.forget(k)
		return errBadHash
	}
	if same() {
		s.verified.add(k, p.seq, epoch, id, s.now())
	}
	return nil
}

// readRaw reads the block at l without checking it.
func (s *Store) readRaw(l loc) ([]byte, error) {
	data := make([]byte, l.size)
	_, err := l.p.f.ReadAt(data, l.dataOff())
	return data, err
}

// cachedValid reports whether the verified cache vouches for the block at
// l in its pack's current version.
func (s *Store) cachedValid(k string, l loc) bool {
	fi, err := l.p.f.Stat()
	if err != nil {
		return false
	}
	return s.verified.has(k, l.p.seq, l.p.epochOf(idOf(fi)))
}

// epochOf returns the epoch of the pack version with identity id: the
// epoch moves whenever the identity differs from the last one seen, which
// invalidates every cached verification of a block in the pack.
func (p *pack) epochOf(id fileID) uint64 {
	p.idMu.Lock()
	defer p.idMu.Unlock()
	if id != p.trusted {
		p.trusted = id
		p.epoch++
	}
	return p.epoch
}

// ownWrite records that this process changed p from identity before to
// after by appending: blocks verified in the version before stay verified
// (their bytes did not move), unless the pack had changed otherwise since
// it was last seen.
func (p *pack) ownWrite(before, after fileID) {
	p.idMu.Lock()
	defer p.idMu.Unlock()
	if before != p.trusted {
		p.epoch++
	}
	p.trusted = after
}

// current returns the identity and epoch of the pack as this process last
// saw it.
func (p *pack) current() (fileID, uint64, bool) {
	p.idMu.Lock()
	defer p.idMu.Unlock()
	return p.trusted, p.epoch, p.trusted != fileID{}
}

// unindexLocked forgets block k at l (if it is still there) and accounts
// for it. s.mu must be held.
func (s *Store) unindexLocked(k string, l loc) bool {
	cur, ok := s.index[k]
	if !ok || cur.p != l.p || cur.off != l.off {
		return false
	}
	delete(s.index, k)
	s.usage -= int64(l.size)
	l.p.live -= int64(l.size)
	delete(s.fresh, k)
	s.verified.forget(k)
	return true
}

// dropLocked deletes the corrupt block c (key k) at l and queues its
// tombstone and report (appended and reported by reportCorrupt once s.mu
// is released). s.mu must be held.
func (s *Store) dropLocked(c cid.Cid, k string, l loc, foundBy string) {
	if s.unindexLocked(k, l) {
		s.tombs = append(s.tombs, l)
		s.corruptLocked(c, l, foundBy)
	}
}

// deleteKeys deletes blocks: appends their tombstones, makes them durable,
// then punches the blocks' bytes out of their packs, freeing the space. It
// returns the block bytes deleted.
func (s *Store) deleteKeys(keys []string) (int64, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	var (
		freed   int64
		victims []loc
		err     error
	)
	for _, k := range keys {
		s.mu.Lock()
		l, ok := s.index[k]
		if ok {
			s.unindexLocked(k, l)
		}
		s.mu.Unlock()
		if !ok {
			continue
		}
		freed += int64(l.size)
		victims = append(victims, l)
		if err = s.appendTombLocked(l); err != nil {
			break
		}
	}
	if err == nil {
		s.mu.Lock()
		p := s.active
		s.mu.Unlock()
		if p != nil {
			err = s.syncPack(p)
		}
	}
	if err != nil {
		// Without durable tombstones the bytes must stay: after a crash
		// the blocks would come back, and must still read as themselves.
		if isNoSpace(err) {
			return freed, errorf(ErrNoSpace, "store: no space left on device recording deletions in %s: free disk space", s.dir)
		}
		return freed, fmt.Errorf("store: recording deletions: %w", err)
	}
	for _, l := range victims {
		l.p.idxMu.Lock()
		punchHole(l.p.f, l.dataOff(), int64(l.size))
		l.p.idxMu.Unlock()
	}
	return freed, nil
}

// compactRatio: GC rewrites a sealed pack whose live blocks fill less than
// this fraction of it, and removes one with none.
const compactRatio = 0.5

// compact removes sealed packs with no live block and rewrites those that
// are mostly dead: their live blocks, and tombstones still needed, are
// appended to the active pack and made durable; only then is the old pack
// removed (then its index). A crash in between leaves a block in two packs,
// which Open resolves to the later one. s.gc must be held for writing.
func (s *Store) compact() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	// The highest-numbered pack stays (even sealed, while no new active
	// pack could be made): pack numbers are never reused, so a tombstone
	// naming a removed pack can never hit a later one.
	var last uint32
	for seq := range s.packs {
		last = max(last, seq)
	}
	var victims []*pack
	for _, p := range s.packs {
		if p.sealed && p != s.active && p.seq != last && float64(p.live) < compactRatio*float64(p.size) {
			victims = append(victims, p)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(victims, func(a, b *pack) int { return int(a.seq) - int(b.seq) })
	for _, p := range victims {
		if err := s.compactPack(p); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) compactPack(p *pack) error {
	idxPath := filepath.Join(s.packDir, packName(p.seq)+idxExt)
	raw, err := os.ReadFile(idxPath)
	if err != nil {
		return err
	}
	ix, err := decodeIndex(idxPath, raw)
	if err != nil {
		return err
	}
	recs := ix.recs
	moved := 0
	for _, r := range recs {
		switch r.kind {
		case kindBlock:
			k := b32.EncodeToString(r.mh)
			s.mu.Lock()
			l, ok := s.index[k]
			s.mu.Unlock()
			if !ok || l.p != p || l.off != r.off {
				continue
			}
			data, err := s.readRaw(l) // as is: reads still verify it
			if err != nil {
				return err
			}
			nr, np, err := s.appendLocked(kindBlock, r.mh, data)
			if err != nil {
				return err
			}
			s.mu.Lock()
			if cur, ok := s.index[k]; ok && cur == l {
				s.index[k] = loc{p: np, off: nr.off, klen: l.klen, size: l.size}
				np.live += int64(l.size)
				p.live -= int64(l.size)
				s.verified.forget(k)
			}
			s.mu.Unlock()
			moved++
		case kindTomb:
			seq, _ := r.target()
			s.mu.Lock()
			_, exists := s.packs[seq]
			s.mu.Unlock()
			if !exists || seq == p.seq {
				continue
			}
			if _, _, err := s.appendLocked(kindTomb, r.mh, nil); err != nil {
				return err
			}
			moved++
		}
	}
	if moved > 0 {
		s.mu.Lock()
		a := s.active
		s.mu.Unlock()
		if err := s.syncPack(a); err != nil {
			return err
		}
	}
	s.mu.Lock()
	delete(s.packs, p.seq)
	s.mu.Unlock()
	if err := os.Remove(p.path); err != nil {
		return fmt.Errorf("removing %s: %w", p.path, err)
	}
	_ = os.Remove(filepath.Join(s.packDir, packName(p.seq)+idxExt))
	_ = s.fsync(s.packDir)
	p.f.Close()
	s.mu.Lock()
	a := s.active
	full := a != nil && (a.size >= s.packSize || len(a.recs) >= maxPackRecords)
	s.mu.Unlock()
	if full {
		return s.sealLocked(a)
	}
	return nil
}

// GetManyInto reads blocks cs in order, as GetInto would one by one, into
// buf (cap(buf) bytes in all) until the next block does not fit, and
// returns the blocks read: at least one (in memory of its own if it does
// not fit buf), else the error GetInto gives for cs[0]. Blocks stored one
// after another in one pack, as a bundle's small files are once imported
// or fetched, come in one read (a system call and two file identity
// checks for the run, not for each block); each is still checked against
// the verified cache in the pack's version around the read, or hashed. A
// block that fails its check, or anything unusual about the run (a pack
// compacted under it, cut short), is left to GetInto, which reports and
// drops what is corrupt.
func (s *Store) GetManyInto(cs []cid.Cid, buf []byte) ([][]byte, error) {
	if len(cs) == 0 {
		return nil, nil
	}
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	// The run: blocks next to each other in one pack that fit buf.
	keys := make([]string, 0, len(cs))
	locs := make([]loc, 0, len(cs))
	var start int64 // where the run's read starts
	s.mu.Lock()
	for _, c := range cs {
		k := key(c)
		l, ok := s.index[k]
		if !ok {
			break
		}
		if n := len(locs); n > 0 {
			prev := locs[n-1]
			if l.p != prev.p || l.off != prev.dataOff()+int64(prev.size) {
				break
			}
		} else {
			start = l.dataOff()
		}
		if l.dataOff()+int64(l.size)-start > int64(cap(buf)) {
			break
		}
		keys, locs = append(keys, k), append(locs, l)
	}
	s.mu.Unlock()
	if len(locs) < 2 {
		return s.getOneInto(cs[0], buf)
	}
	p := locs[0].p
	end := locs[len(locs)-1].dataOff() + int64(locs[len(locs)-1].size)
	fi, err := p.f.Stat()
	if err != nil {
		return s.getOneInto(cs[0], buf)
	}
	id := idOf(fi)
	epoch := p.epochOf(id)
	span := buf[:end-start]
	if n, err := p.f.ReadAt(span, start); err != nil || n != len(span) {
		return s.getOneInto(cs[0], buf)
	}
	after, err := p.f.Stat()
	same := err == nil && idOf(after) == id
	sameRun := func() bool { return same }
	out := make([][]byte, 0, len(locs))
	for i, l := range locs {
		data := span[l.dataOff()-start : l.dataOff()-start+int64(l.size)]
		if s.vouch(cs[i], keys[i], p, id, epoch, sameRun, true, data) != nil {
			// GetInto reads it again, drops it if it is still corrupt
			// and reports it; the caller asks for it next.
			break
		}
		out = append(out, data)
	}
	if len(out) == 0 {
		return s.getOneInto(cs[0], buf)
	}
	return out, nil
}

// getOneInto is GetManyInto's answer for one block read by GetInto.
func (s *Store) getOneInto(c cid.Cid, buf []byte) ([][]byte, error) {
	data, err := s.GetInto(c, buf)
	if err != nil {
		return nil, err
	}
	return [][]byte{data}, nil
}
