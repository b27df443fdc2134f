package release

import (
	"errors"
	"math/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/protocol"
)

var t0 = time.UnixMilli(1_800_000_000_000)

const (
	cid1 = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
	cid2 = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
)

type maintainers struct {
	keys  map[string]crypto.PrivKey
	names []string
}

func newMaintainers(t testing.TB, seed int64, n int) maintainers {
	t.Helper()
	r := rand.New(rand.NewSource(seed))
	m := maintainers{keys: map[string]crypto.PrivKey{}}
	for range n {
		k, _, err := crypto.GenerateEd25519Key(r)
		if err != nil {
			t.Fatal(err)
		}
		name, err := PublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		m.keys[name] = k
		m.names = append(m.names, name)
	}
	m.names = protocol.SortUnique(m.names)
	return m
}

func (m maintainers) set(threshold int) protocol.MaintainerSet {
	return protocol.MaintainerSet{Keys: m.names, Threshold: threshold}
}

// signers returns the first n keys.
func (m maintainers) first(n int) []crypto.PrivKey {
	var out []crypto.PrivKey
	for _, name := range m.names[:n] {
		out = append(out, m.keys[name])
	}
	return out
}

// signed makes, signs and verifies a release; verification errors other
// than expiry fail the test.
func signed(t *testing.T, p Params, keys ...crypto.PrivKey) *attest.Release {
	t.Helper()
	raw, err := Sign(p, keys...)
	if err != nil {
		t.Fatal(err)
	}
	rel, err := attest.VerifyRelease(raw, p.Time)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return rel
}

func genesis(m maintainers, threshold int, version uint64, cid string, at time.Time) Params {
	return Params{Name: "demo", Version: version, CID: cid, Maintainers: m.set(threshold), Time: at, TTL: time.Hour}
}

func TestBookAcceptsAndReportsCurrent(t *testing.T) {
	a := newMaintainers(t, 1, 3)
	b := NewBook()
	v1 := signed(t, genesis(a, 2, 1, cid1, t0), a.first(2)...)
	if err := b.Apply(v1, t0); err != nil {
		t.Fatal(err)
	}
	p2 := genesis(a, 2, 2, cid2, t0.Add(time.Minute))
	p2.App = v1.Record.App
	v2 := signed(t, p2, a.first(2)...)
	if err := b.Apply(v2, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	rec, st := b.Current(v1.Record.App, t0.Add(2*time.Minute))
	if st != StatusCurrent || rec.Version != 2 || rec.CID != cid2 {
		t.Fatalf("current = %v %d %s", st, rec.Version, rec.CID)
	}
	if r, ok := b.Get(v1.Record.App, 1); !ok || r.CID != cid1 {
		t.Fatal("version 1 not kept")
	}
	if raws := b.Raw(v1.Record.App); len(raws) != 2 || string(raws[0]) != string(v1.Raw) {
		t.Fatal("Raw not in version order")
	}
	if err := b.Apply(v2, t0.Add(time.Minute)); !errors.Is(err, ErrDuplicate) || Verdict(err) != attest.Ignore {
		t.Fatalf("duplicate: %v", err)
	}
}

func TestBookRejectsBelowThreshold(t *testing.T) {
	a := newMaintainers(t, 2, 3)
	raw, err := Sign(genesis(a, 2, 1, cid1, t0), a.first(1)...)
	if err != nil {
		t.Fatal(err)
	}
	_, err = attest.VerifyRelease(raw, t0)
	if !errors.Is(err, attest.ErrThreshold) || Verdict(err) != attest.Reject {
		t.Fatalf("1 of 2: %v", err)
	}
	// The book checks the threshold itself too, for a caller that hands
	// it a record another way.
	rel := &attest.Release{Record: mustRecord(t, genesis(a, 2, 1, cid1, t0)), Signers: a.names[:1]}
	if err := NewBook().Apply(rel, t0); !errors.Is(err, ErrNewThreshold) {
		t.Fatalf("book, 1 of 2: %v", err)
	}
}

func mustRecord(t *testing.T, p Params) protocol.Release {
	t.Helper()
	r, err := p.Record()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestBookKeySigningTwiceCountsOnce(t *testing.T) {
	a := newMaintainers(t, 3, 2)
	k := a.first(1)[0]
	raw, err := Sign(genesis(a, 2, 1, cid1, t0), k, k)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := protocol.DecodeSignedRelease(raw)
	s.Signatures = append(s.Signatures, s.Signatures[0])
	twice, _ := protocol.Encode(s)
	if _, err := attest.VerifyRelease(twice, t0); !errors.Is(err, attest.ErrThreshold) {
		t.Fatalf("one key twice, threshold 2: %v", err)
	}
	// The book counts distinct keys too.
	rel := &attest.Release{Record: mustRecord(t, genesis(a, 2, 1, cid1, t0)), Signers: []string{a.names[0], a.names[0]}}
	if err := NewBook().Apply(rel, t0); !errors.Is(err, ErrNewThreshold) {
		t.Fatalf("book, one key listed twice: %v", err)
	}
}

func TestBookRollback(t *testing.T) {
	a := newMaintainers(t, 4, 1)
	b := NewBook()
	v1 := signed(t, genesis(a, 1, 1, cid1, t0), a.first(1)...)
	p3 := genesis(a, 1, 3, cid2, t0.Add(time.Minute))
	v3 := signed(t, p3, a.first(1)...)
	p2 := genesis(a, 1, 2, cid1, t0.Add(2*time.Minute)) // newer time, lower version
	v2 := signed(t, p2, a.first(1)...)
	if errs := b.ApplyAll([]*attest.Release{v3, v1}, t0.Add(time.Minute)); errs != nil {
		t.Fatal(errs)
	}
	err := b.Apply(v2, t0.Add(2*time.Minute))
	if !errors.Is(err, ErrRollback) || Verdict(err) != attest.Ignore {
		t.Fatalf("version 2 after 3: %v", err)
	}
	p3b := p3
	p3b.CID = cid1
	if err := b.Apply(signed(t, p3b, a.first(1)...), t0.Add(time.Minute)); !errors.Is(err, ErrRollback) {
		t.Fatalf("another version 3: %v", err)
	}
	// After the local copy expired, an older record (still within its own
	// expiry) must not come back as current.
	late := t0.Add(3 * time.Hour)
	if _, st := b.Current(v1.Record.App, late); st != StatusStale {
		t.Fatalf("status after expiry = %v", st)
	}
	p2late := genesis(a, 1, 2, cid1, late)
	v2late := signed(t, p2late, a.first(1)...)
	if err := b.Apply(v2late, late); !errors.Is(err, ErrRollback) {
		t.Fatalf("rollback after local expiry: %v", err)
	}
	if rec, st := b.Current(v1.Record.App, late); st != StatusStale || rec.Version != 3 {
		t.Fatalf("after refused rollback: %v %d", st, rec.Version)
	}
}

func TestBookExpiredIsStaleNeverCurrent(t *testing.T) {
	a := newMaintainers(t, 5, 1)
	p := genesis(a, 1, 1, cid1, t0)
	raw, err := Sign(p, a.first(1)...)
	if err != nil {
		t.Fatal(err)
	}
	exp := t0.Add(time.Hour)
	rel, err := attest.VerifyRelease(raw, exp)
	if !errors.Is(err, attest.ErrExpired) || rel == nil || Verdict(err) != attest.Ignore {
		t.Fatalf("verify expired: %v", err)
	}
	b := NewBook()
	if err := b.Apply(rel, exp); err != nil {
		t.Fatalf("an expired record still extends the chain: %v", err)
	}
	if _, st := b.Current(rel.Record.App, exp); st != StatusStale {
		t.Fatalf("expired record is %v", st)
	}
	if _, st := b.Current(rel.Record.App, exp.Add(-time.Millisecond)); st != StatusCurrent {
		t.Fatalf("before expiry: %v", st)
	}
	if _, st := b.Current("app-bnope", exp); st != StatusUnknown {
		t.Fatal("unknown app not unknown")
	}
}

// rotation returns records v1 (set a, 2-of-3) and a v2 rotating to set n
// (2-of-2) signed by the given keys.
func rotation(t *testing.T, a, n maintainers, prev bool) (*attest.Release, Params) {
	v1 := signed(t, genesis(a, 2, 1, cid1, t0), a.first(2)...)
	p := genesis(n, 2, 2, cid2, t0.Add(time.Minute))
	p.App = v1.Record.App
	if prev {
		s := a.set(2)
		p.Previous = &s
	}
	return v1, p
}

func TestBookRotation(t *testing.T) {
	a := newMaintainers(t, 6, 3)
	n := newMaintainers(t, 7, 2)
	now := t0.Add(time.Minute)

	t.Run("both thresholds", func(t *testing.T) {
		v1, p := rotation(t, a, n, true)
		b := NewBook()
		if err := b.Apply(v1, t0); err != nil {
			t.Fatal(err)
		}
		v2 := signed(t, p, append(a.first(2), n.first(2)...)...)
		if err := b.Apply(v2, now); err != nil {
			t.Fatal(err)
		}
		if set, _ := b.Maintainers(v1.Record.App); !set.Equal(n.set(2)) {
			t.Fatal("maintainers not rotated")
		}
		// The old set alone can no longer release.
		p3 := genesis(a, 2, 3, cid1, now)
		p3.App = v1.Record.App
		err := b.Apply(signed(t, p3, a.first(2)...), now)
		if !errors.Is(err, ErrUnknownPrevious) {
			t.Fatalf("old set after rotation: %v", err)
		}
		// The new set can.
		p4 := genesis(n, 2, 4, cid1, now)
		p4.App = v1.Record.App
		if err := b.Apply(signed(t, p4, n.first(2)...), now); err != nil {
			t.Fatal(err)
		}
		// A late joiner anchors from the rotation record alone, and the
		// app ID is unchanged.
		late := NewBook()
		if err := late.Apply(v2, now); err != nil {
			t.Fatalf("anchor on the first rotation: %v", err)
		}
		if v2.Record.App != v1.Record.App {
			t.Fatal("app ID changed")
		}
	})
	t.Run("only new keys", func(t *testing.T) {
		v1, p := rotation(t, a, n, true)
		raw, err := Sign(p, n.first(2)...)
		if err != nil {
			t.Fatal(err)
		}
		rel, err := attest.VerifyRelease(raw, now) // the record's own set signed
		if err != nil {
			t.Fatal(err)
		}
		b := NewBook()
		b.Apply(v1, t0)
		err = b.Apply(rel, now)
		if !errors.Is(err, ErrOldThreshold) || Verdict(err) != attest.Reject {
			t.Fatalf("rotation signed by the new keys only: %v", err)
		}
		// Without naming the previous set at all.
		_, p = rotation(t, a, n, false)
		err = b.Apply(signed(t, p, n.first(2)...), now)
		if !errors.Is(err, ErrUnknownPrevious) {
			t.Fatalf("rotation without previous: %v", err)
		}
		// Nor can it anchor a fresh book.
		if err := NewBook().Apply(rel, now); !errors.Is(err, ErrOldThreshold) {
			t.Fatalf("anchoring on a rotation the genesis set did not sign: %v", err)
		}
	})
	t.Run("only old keys", func(t *testing.T) {
		v1, p := rotation(t, a, n, true)
		raw, err := Sign(p, a.first(3)...)
		if err != nil {
			t.Fatal(err)
		}
		_, err = attest.VerifyRelease(raw, now)
		if !errors.Is(err, attest.ErrThreshold) {
			t.Fatalf("rotation signed by the old keys only: %v", err)
		}
		rel := &attest.Release{Record: mustRecord(t, p), Signers: a.names}
		b := NewBook()
		b.Apply(v1, t0)
		if err := b.Apply(rel, now); !errors.Is(err, ErrNewThreshold) {
			t.Fatalf("book, old keys only: %v", err)
		}
	})
}

func TestBookAnchor(t *testing.T) {
	a := newMaintainers(t, 8, 2)
	evil := newMaintainers(t, 9, 2)
	v1 := signed(t, genesis(a, 1, 1, cid1, t0), a.first(1)...)
	// A record for the same app ID signed by other keys cannot start the
	// chain.
	p := genesis(evil, 1, 5, cid2, t0)
	p.App = v1.Record.App
	err := NewBook().Apply(signed(t, p, evil.first(1)...), t0)
	if !errors.Is(err, ErrNotAnchored) || Verdict(err) != attest.Ignore {
		t.Fatalf("unanchored: %v", err)
	}
	b := NewBook()
	b.Apply(v1, t0)
	p = genesis(a, 1, 2, cid2, t0)
	p.App = v1.Record.App
	p.Name = "renamed"
	if err := b.Apply(signed(t, p, a.first(1)...), t0); !errors.Is(err, ErrNameChange) {
		t.Fatalf("rename: %v", err)
	}
}

func verifyAndApply(b *Book, raw []byte) (*attest.Release, error) {
	rel, err := attest.VerifyRelease(raw, t0)
	if err != nil {
		return nil, err
	}
	return rel, b.Apply(rel, t0)
}
