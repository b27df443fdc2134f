// Package evidence holds one fund epoch's evidence, the signed statements a
// payout ledger is computed from, and turns it into the ledger's input.
//
// A [Set] is a set of signed statements in their exact bytes: fund records,
// the app's releases, payout addresses, probe results, liveness samples,
// receipt witnesses and ledger roots. Its identity is [Set.Root]: the hex
// SHA-256 of the sorted SHA-256 digests of its items, so two mirrors that
// hold the same items have the same root whatever order they received them
// in, and a mirror that misses an item sees a different root (and pulls the
// difference from a peer).
//
// [WriteCAR] exports a set as a CARv1 whose root block is a manifest (the
// app, fund, epoch, the set's root and item count, and the CIDs of the
// ledger roots carried beside it) and whose other blocks are the items as
// raw blocks; [ReadCAR] reads one back, checking every block against its
// CID and the items against the root, so one altered byte fails the
// import.
//
// [Derive] is a pure function from (set, epoch parameters) to
// ledger.Input: it verifies every item itself, as an outsider would, and
// says why each unusable item was left out.
package evidence

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	car "github.com/ipld/go-car/v2"
	"github.com/ipld/go-car/v2/storage"
	"github.com/multiformats/go-multihash"

	"github.com/mirrornet/mirrornet/protocol"
)

// Errors.
var (
	ErrCAR      = errors.New("evidence: malformed evidence CAR")
	ErrManifest = errors.New("evidence: manifest does not match the items")
	ErrTooMany  = errors.New("evidence: too many items")
)

// MaxItems bounds the items of one epoch's evidence set (a day of lan
// probes for a few thousand mirrors).
const MaxItems = 4 << 20

// Set is a set of signed statements, keyed by SHA-256. It is not safe for
// concurrent use.
type Set struct {
	items map[[32]byte][]byte
}

// NewSet returns an empty set.
func NewSet() *Set { return &Set{items: map[[32]byte][]byte{}} }

// Add adds raw (kept as is; the caller must not modify it afterwards) and
// reports whether it was new.
func (s *Set) Add(raw []byte) bool {
	h := sha256.Sum256(raw)
	if _, ok := s.items[h]; ok {
		return false
	}
	s.items[h] = raw
	return true
}

// AddDigest is Add for a caller that already knows raw's SHA-256 h (a
// keeper that keyed its statements by it): it saves hashing every item of
// a day's evidence again.
func (s *Set) AddDigest(h [32]byte, raw []byte) bool {
	if _, ok := s.items[h]; ok {
		return false
	}
	s.items[h] = raw
	return true
}

// Len is the number of items.
func (s *Set) Len() int { return len(s.items) }

// Has reports whether the set holds the item with digest h.
func (s *Set) Has(h [32]byte) bool { _, ok := s.items[h]; return ok }

// Digests returns the items' digests, sorted.
func (s *Set) Digests() [][32]byte {
	out := make([][32]byte, 0, len(s.items))
	for h := range s.items {
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	return out
}

// Items returns the items sorted by digest. The slices are the set's own.
func (s *Set) Items() [][]byte {
	ds := s.Digests()
	out := make([][]byte, len(ds))
	for i, h := range ds {
		out[i] = s.items[h]
	}
	return out
}

// Get returns the item with digest h.
func (s *Set) Get(h [32]byte) ([]byte, bool) { b, ok := s.items[h]; return b, ok }

// Root is the set's identity: hex SHA-256 over the concatenated sorted item
// digests.
func (s *Set) Root() string { return RootOf(s.Digests()) }

// RootOf is the root of a set whose sorted item digests are ds.
func RootOf(ds [][32]byte) string {
	h := sha256.New()
	for _, d := range ds {
		h.Write(d[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Manifest is the root block of an exported evidence CAR.
type Manifest struct {
	App   string `json:"app"`
	Fund  string `json:"fund"`
	Epoch uint64 `json:"epoch"`
	// Root is the set's root (see Set.Root).
	Root string `json:"root"`
	// ProbeEpochMS and K are the network's probe parameters the epoch was
	// judged with (see package protocol, "Probes").
	ProbeEpochMS int64 `json:"probe_epoch_ms"`
	K            int   `json:"k"`
	// Count is the number of items. The items are every block of the CAR
	// but the manifest and the ledger roots; their CIDs (CIDv1, raw,
	// sha2-256) are not listed, as a day of evidence holds millions and
	// the root already names them all.
	Count int `json:"count"`
	// LedgerRoots are the CIDs of signed ledger-root statements carried
	// beside the evidence (they sign its root, so they are not part of
	// it), sorted.
	LedgerRoots []string `json:"ledger_roots,omitempty"`
}

func itemCID(digest [32]byte) cid.Cid {
	mh, err := multihash.Encode(digest[:], multihash.SHA2_256)
	if err != nil {
		panic("evidence: encode multihash: " + err.Error()) // a 32-byte sha2-256 digest always encodes
	}
	return cid.NewCidV1(cid.Raw, mh)
}

// WriteCAR writes the set as a CARv1: the manifest first (the CAR's root),
// then every item as a raw block in digest order, then the signed ledger
// roots. m's Root, Count and LedgerRoots are filled in.
func WriteCAR(w io.Writer, m Manifest, s *Set, ledgerRoots [][]byte) error {
	m.Root, m.Count = s.Root(), s.Len()
	lr := NewSet()
	for _, r := range ledgerRoots {
		lr.Add(r)
	}
	m.LedgerRoots = nil
	for _, d := range lr.Digests() {
		m.LedgerRoots = append(m.LedgerRoots, itemCID(d).String())
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("evidence: encode manifest: %w", err)
	}
	if len(mb) > maxManifest {
		return fmt.Errorf("%w: manifest of %d bytes (%d ledger roots)", ErrTooMany, len(mb), len(m.LedgerRoots))
	}
	mc := itemCID(sha256.Sum256(mb))
	cw, err := storage.NewWritable(w, []cid.Cid{mc}, car.WriteAsCarV1(true))
	if err != nil {
		return fmt.Errorf("evidence: write CAR: %w", err)
	}
	ctx := context.Background()
	if err := cw.Put(ctx, mc.KeyString(), mb); err != nil {
		return fmt.Errorf("evidence: write CAR: %w", err)
	}
	for _, set := range []*Set{s, lr} {
		for _, d := range set.Digests() {
			if err := cw.Put(ctx, itemCID(d).KeyString(), set.items[d]); err != nil {
				return fmt.Errorf("evidence: write CAR: %w", err)
			}
		}
	}
	return cw.Finalize()
}

// maxManifest bounds the manifest block (its ledger roots' CIDs: a few
// thousand mirrors).
const maxManifest = 1 << 20

// ReadCAR reads an evidence CAR written by WriteCAR and returns its
// manifest, its evidence and the signed ledger roots beside it. Every block
// must hash to its CID, every ledger root the manifest lists must be
// present, and the items (every other block) must be as many as the
// manifest counts and give its root.
func ReadCAR(r io.Reader) (*Manifest, *Set, [][]byte, error) {
	br, err := car.NewBlockReader(r, car.MaxAllowedSectionSize(maxManifest+256))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %v", ErrCAR, err)
	}
	if len(br.Roots) != 1 {
		return nil, nil, nil, fmt.Errorf("%w: %d roots, want 1", ErrCAR, len(br.Roots))
	}
	var m *Manifest
	s := NewSet()
	var blocksSeen []blocks.Block
	for {
		b, err := br.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%w: %v", ErrCAR, err)
		}
		if err := checkBlock(b); err != nil {
			return nil, nil, nil, err
		}
		if b.Cid().Equals(br.Roots[0]) {
			if m != nil {
				return nil, nil, nil, fmt.Errorf("%w: manifest twice", ErrCAR)
			}
			m = new(Manifest)
			if err := json.Unmarshal(b.RawData(), m); err != nil {
				return nil, nil, nil, fmt.Errorf("%w: manifest: %v", ErrCAR, err)
			}
			continue
		}
		if len(blocksSeen) >= MaxItems {
			return nil, nil, nil, ErrTooMany
		}
		if len(b.RawData()) > max(protocol.MaxStatementSize, protocol.MaxHoldingsSize) {
			return nil, nil, nil, fmt.Errorf("%w: block %s is larger than a statement", ErrCAR, b.Cid())
		}
		blocksSeen = append(blocksSeen, b)
	}
	if m == nil {
		return nil, nil, nil, fmt.Errorf("%w: no manifest block", ErrCAR)
	}
	isRoot := map[string]bool{}
	for _, c := range m.LedgerRoots {
		isRoot[c] = true
	}
	var ledgerRoots [][]byte
	for _, b := range blocksSeen {
		if isRoot[b.Cid().String()] {
			ledgerRoots = append(ledgerRoots, bytes.Clone(b.RawData()))
			delete(isRoot, b.Cid().String())
			continue
		}
		s.Add(bytes.Clone(b.RawData()))
	}
	if len(isRoot) != 0 {
		return nil, nil, nil, fmt.Errorf("%w: %d ledger roots listed but missing", ErrManifest, len(isRoot))
	}
	if s.Len() != m.Count {
		return nil, nil, nil, fmt.Errorf("%w: manifest counts %d items, CAR holds %d", ErrManifest, m.Count, s.Len())
	}
	if got := s.Root(); got != m.Root {
		return nil, nil, nil, fmt.Errorf("%w: items give root %s, manifest says %s", ErrManifest, got, m.Root)
	}
	return m, s, ledgerRoots, nil
}

func checkBlock(b blocks.Block) error {
	c := b.Cid()
	if c.Prefix().Codec != cid.Raw || c.Prefix().MhType != multihash.SHA2_256 {
		return fmt.Errorf("%w: block %s is not a raw sha2-256 block", ErrCAR, c)
	}
	want, err := c.Prefix().Sum(b.RawData())
	if err != nil || !want.Equals(c) {
		return fmt.Errorf("%w: block %s does not match its CID", ErrCAR, c)
	}
	return nil
}
