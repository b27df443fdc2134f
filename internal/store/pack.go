package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/mirrornet/mirrornet/internal/atomicfile"
)

// The pack layout (store layout version 2).
//
//	DIR/store-version        "2\n": the layout; a larger number is refused
//	DIR/bundles.json         the followed bundles (see saveLocked)
//	DIR/packs/NNNNNNNN.pack  blocks, appended one record after another
//	DIR/packs/NNNNNNNN.idx   the records of a pack, written when it is made
//	                         durable (partial, covering its durable prefix)
//	                         and when it is sealed (complete)
//
// A pack starts with a 16-byte header (packMagic and a format version byte)
// and holds records: a 16-byte header (recMagic, kind, key length, data
// length, CRC-32C of the header and key), then for a block its multihash
// and its bytes, or for a tombstone the pack number and offset of the
// block record it deletes. Delete and GC append tombstones, make them
// durable, and only then punch the deleted bytes out of their pack
// (fallocate), which frees the space at once; a pack left mostly dead is
// compacted by GC. The header CRC tells a torn or garbage header from a record; the
// block bytes are checked against the multihash on every read that the
// verified cache does not vouch for, and by Scrub.
//
// Only the highest-numbered pack is written to (the active pack). A pack is
// sealed once it reaches Options.PackSize or maxPackRecords: fsynced, its
// complete index written, and a new active pack created (and its directory
// fsynced). An index is written to a temporary file,
// fsynced and renamed into place, with the directory fsynced after, so each
// is either the old or the new version after a crash, never torn.
//
// Open reads every index, and scans the active pack beyond
// what its index covers. Bytes past the last complete record of the active
// pack are a write torn by a crash (never part of a held bundle: MarkHeld
// fsyncs the records and writes the index before recording a bundle held)
// and are cut off. Anything else that does not add up (a pack shorter than
// its index, an index that fails its checksum, a sealed pack
// whose records do not parse) is damage Open refuses with ErrDamaged rather
// than silently dropping blocks.
const (
	packsDir      = "packs"
	migratingDir  = "packs.migrating"
	versionFile   = "store-version"
	layoutVersion = 2

	packFormat  = 1
	packExt     = ".pack"
	idxExt      = ".idx"
	fileHdrSize = 16
	recHdrSize  = 16
	recMagic    = 0x4d4e424b // "MNBK"
	kindBlock   = 1
	kindTomb    = 2
	tombKeyLen  = 12 // pack number (4 bytes) and record offset (8)

	// DefaultPackSize is the default Options.PackSize: large enough that a
	// terabyte is a few thousand files, small enough that sealing (one
	// fsync and an index of a few KiB) and compacting a pack are quick.
	DefaultPackSize = 128 << 20
	// maxPackRecords seals a pack of many small blocks early, so its index,
	// rewritten whenever MarkHeld makes the active pack durable, stays
	// below about a MiB.
	maxPackRecords = 16384
)

var (
	packMagic = []byte("mirrornet-pack\x00")
	idxMagic  = []byte("mirrornet-idx\x00\x00")
	crcTable  = crc32.MakeTable(crc32.Castagnoli)
)

var (
	// ErrDamaged means a pack or its index is truncated or
	// does not add up. Open refuses the store rather than lose blocks.
	ErrDamaged = errors.New("store: store directory damaged")
	// ErrNewerVersion means the store directory was written by a newer
	// mirrornet whose layout this one does not know.
	ErrNewerVersion = errors.New("store: store directory from a newer version")
)

func packName(seq uint32) string { return fmt.Sprintf("%08d", seq) }

// parseSeq returns the sequence number of a pack or index file
// name with extension ext.
func parseSeq(name, ext string) (uint32, bool) {
	base, ok := strings.CutSuffix(name, ext)
	if !ok || len(base) != 8 {
		return 0, false
	}
	n, err := strconv.ParseUint(base, 10, 32)
	return uint32(n), err == nil
}

// record is one record of a pack: a block or a tombstone.
type record struct {
	kind byte
	mh   []byte // a block's multihash; a tombstone's target (tombKey)
	off  int64  // where the record (its header) starts
	size uint32 // block bytes (0 for a tombstone)
}

// tombKey encodes the target of a tombstone: the record at off in pack seq.
func tombKey(seq uint32, off int64) []byte {
	b := binary.BigEndian.AppendUint32(nil, seq)
	return binary.BigEndian.AppendUint64(b, uint64(off))
}

// target decodes a tombstone's target.
func (r record) target() (uint32, int64) {
	return binary.BigEndian.Uint32(r.mh[:4]), int64(binary.BigEndian.Uint64(r.mh[4:12]))
}

func (r record) dataOff() int64 { return r.off + recHdrSize + int64(len(r.mh)) }
func (r record) end() int64     { return r.dataOff() + int64(r.size) }

// recordHeader encodes the header and key of a record of kind with key m
// and n bytes of data.
func recordHeader(kind byte, m []byte, n int) []byte {
	h := make([]byte, recHdrSize, recHdrSize+len(m))
	binary.BigEndian.PutUint32(h[0:4], recMagic)
	h[4] = kind
	h[5] = byte(len(m))
	binary.BigEndian.PutUint32(h[8:12], uint32(n))
	crc := crc32.Update(crc32.Checksum(h[:12], crcTable), crcTable, m)
	binary.BigEndian.PutUint32(h[12:16], crc)
	return append(h, m...)
}

// packHeader is the first 16 bytes of every pack.
func packHeader() []byte { return append(append([]byte{}, packMagic...), packFormat) }

// checkFileHeader checks the 16-byte header of a pack or index.
func checkFileHeader(path string, hdr, magic []byte, format byte) error {
	if len(hdr) < fileHdrSize {
		return fmt.Errorf("%w: %s is truncated (%d bytes, not even a header); %s", ErrDamaged, path, len(hdr), damagedAdvice(path))
	}
	if !bytes.Equal(hdr[:len(magic)], magic) {
		return fmt.Errorf("%w: %s is not a mirrornet store file; %s", ErrDamaged, path, damagedAdvice(path))
	}
	if v := hdr[fileHdrSize-1]; v > format {
		return fmt.Errorf("%w: %s has format %d, this mirrornet reads up to %d: upgrade mirrornet", ErrNewerVersion, path, v, format)
	}
	return nil
}

// damagedAdvice says what a user can do about a damaged store file.
func damagedAdvice(path string) string {
	switch filepath.Ext(path) {
	case idxExt:
		return "delete it to have it rebuilt from its pack"
	default:
		return "restore it from a backup, or move it and its .idx file away (its blocks are fetched again)"
	}
}

// scanPack reads the records of pack f (size bytes) from offset from and
// returns them with the offset where parsing stopped: size when every byte
// was a complete record, less at a torn or garbage record.
func scanPack(f *os.File, from, size int64) ([]record, int64, error) {
	r := io.NewSectionReader(f, 0, size)
	var out []record
	off := from
	hdr := make([]byte, recHdrSize+255)
	for off < size {
		if size-off < recHdrSize {
			return out, off, nil
		}
		if _, err := r.ReadAt(hdr[:recHdrSize], off); err != nil {
			return out, off, err
		}
		klen := int(hdr[5])
		kind := hdr[4]
		if binary.BigEndian.Uint32(hdr[0:4]) != recMagic || (kind != kindBlock && kind != kindTomb) || klen == 0 ||
			(kind == kindTomb && klen != tombKeyLen) || size-off < recHdrSize+int64(klen) {
			return out, off, nil
		}
		if _, err := r.ReadAt(hdr[recHdrSize:recHdrSize+klen], off+recHdrSize); err != nil {
			return out, off, err
		}
		want := binary.BigEndian.Uint32(hdr[12:16])
		if crc32.Update(crc32.Checksum(hdr[:12], crcTable), crcTable, hdr[recHdrSize:recHdrSize+klen]) != want {
			return out, off, nil
		}
		rec := record{kind: kind, mh: append([]byte(nil), hdr[recHdrSize:recHdrSize+klen]...), off: off, size: binary.BigEndian.Uint32(hdr[8:12])}
		if rec.end() > size {
			return out, off, nil // data torn off
		}
		out = append(out, rec)
		off = rec.end()
	}
	return out, off, nil
}

// packIndex is the content of an index file.
type packIndex struct {
	sealed  bool
	covered int64 // the index lists every record in [fileHdrSize, covered)
	recs    []record
}

func encodeIndex(ix packIndex) []byte {
	b := append([]byte{}, idxMagic...)
	b = append(b, packFormat)
	var sealed byte
	if ix.sealed {
		sealed = 1
	}
	b = append(b, sealed)
	b = binary.BigEndian.AppendUint64(b, uint64(ix.covered))
	b = binary.BigEndian.AppendUint32(b, uint32(len(ix.recs)))
	for _, r := range ix.recs {
		b = append(b, r.kind, byte(len(r.mh)))
		b = append(b, r.mh...)
		b = binary.BigEndian.AppendUint64(b, uint64(r.off))
		b = binary.BigEndian.AppendUint32(b, r.size)
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

func decodeIndex(path string, b []byte) (packIndex, error) {
	var ix packIndex
	if err := checkFileHeader(path, b, idxMagic, packFormat); err != nil {
		return ix, err
	}
	bad := func(what string) (packIndex, error) {
		return packIndex{}, fmt.Errorf("%w: %s is %s; %s", ErrDamaged, path, what, damagedAdvice(path))
	}
	if len(b) < fileHdrSize+1+8+4+4 {
		return bad("truncated")
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, crcTable) != sum {
		return bad("truncated or corrupt (checksum mismatch)")
	}
	p := body[fileHdrSize:]
	ix.sealed = p[0] == 1
	ix.covered = int64(binary.BigEndian.Uint64(p[1:9]))
	n := binary.BigEndian.Uint32(p[9:13])
	p = p[13:]
	for range n {
		if len(p) < 2 || len(p) < 2+int(p[1])+12 {
			return bad("truncated")
		}
		k := int(p[1])
		r := record{kind: p[0], mh: append([]byte(nil), p[2:2+k]...)}
		r.off = int64(binary.BigEndian.Uint64(p[2+k : 10+k]))
		r.size = binary.BigEndian.Uint32(p[10+k : 14+k])
		if r.off < fileHdrSize || r.end() > ix.covered || (r.kind != kindBlock && r.kind != kindTomb) || (r.kind == kindTomb && k != tombKeyLen) {
			return bad("inconsistent (a record beyond what it covers)")
		}
		ix.recs = append(ix.recs, r)
		p = p[14+k:]
	}
	if len(p) != 0 {
		return bad("inconsistent (trailing bytes)")
	}
	return ix, nil
}

// readSmall reads an index; absent is (nil, nil).
func readSmall(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// writeSmall replaces an index atomically and durably.
func writeSmall(path string, data []byte) error {
	return atomicfile.WriteFile(path, data, 0o644)
}

// writeVersion records the layout version of dir.
func writeVersion(dir string) error {
	return atomicfile.WriteFile(filepath.Join(dir, versionFile), []byte(strconv.Itoa(layoutVersion)+"\n"), 0o644)
}

// checkVersion refuses a store directory written by a newer layout.
func checkVersion(dir string) (present bool, err error) {
	p := filepath.Join(dir, versionFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: reading %s: %w", p, err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || v < 1 {
		return false, fmt.Errorf("%w: %s holds %q, not a layout version; restore it (this mirrornet writes %d)", ErrDamaged, p, strings.TrimSpace(string(b)), layoutVersion)
	}
	if v > layoutVersion {
		return false, fmt.Errorf("%w: %s was written by a newer mirrornet (store layout %d, this one reads up to %d): upgrade mirrornet", ErrNewerVersion, dir, v, layoutVersion)
	}
	return true, nil
}
