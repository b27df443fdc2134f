package release

import (
	"bytes"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/mirrornet/mirrornet/attest"
)

func TestBookAdd(t *testing.T) {
	a := newMaintainers(t, 40, 1)
	b := NewBook()
	raw1, _ := Sign(genesis(a, 1, 1, cid1, t0), a.first(1)...)
	// Verified long after expiry: applied, but reported stale (Ignore).
	late := t0.Add(2 * time.Hour)
	rel, err := b.Add(raw1, late)
	if !errors.Is(err, attest.ErrExpired) || Verdict(err) != attest.Ignore || rel == nil {
		t.Fatalf("expired add: %v", err)
	}
	if _, st := b.Current(rel.Record.App, late); st != StatusStale {
		t.Fatalf("status %v", st)
	}
	p2 := genesis(a, 1, 2, cid2, late)
	p2.App = rel.Record.App
	raw2, _ := Sign(p2, a.first(1)...)
	if _, err := b.Add(raw2, late); err != nil {
		t.Fatal(err)
	}
	if rec, st := b.Current(rel.Record.App, late); st != StatusCurrent || rec.Version != 2 {
		t.Fatalf("after fresh release: %v v%d", st, rec.Version)
	}
	if _, err := b.Add(raw1, late); !errors.Is(err, ErrRollback) || Reason(err) != "rollback" {
		t.Fatalf("re-adding v1: %v (%s)", err, Reason(err))
	}
	// Signed in the future: not applied.
	p3 := genesis(a, 1, 3, cid1, late.Add(time.Hour))
	p3.App = rel.Record.App
	raw3, _ := Sign(p3, a.first(1)...)
	if _, err := b.Add(raw3, late); !errors.Is(err, attest.ErrFuture) {
		t.Fatalf("future: %v", err)
	}
	if rec, _ := b.Current(rel.Record.App, late); rec.Version != 2 {
		t.Fatal("future record applied")
	}
	if _, err := b.Add([]byte("junk"), late); Verdict(err) != attest.Reject {
		t.Fatalf("junk: %v", err)
	}
}

func TestBookSaveLoad(t *testing.T) {
	a := newMaintainers(t, 41, 2)
	n := newMaintainers(t, 42, 1)
	b := NewBook()
	v1 := signed(t, genesis(a, 2, 1, cid1, t0), a.first(2)...)
	p2 := genesis(n, 1, 2, cid2, t0)
	p2.App = v1.Record.App
	s := a.set(2)
	p2.Previous = &s
	v2 := signed(t, p2, append(a.first(2), n.first(1)...)...)
	other := signed(t, Params{Name: "other", Version: 7, CID: cid1, Maintainers: n.set(1), Time: t0, TTL: time.Hour}, n.first(1)...)
	for _, r := range []*attest.Release{v1, v2, other} {
		if err := b.Apply(r, t0); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "releases")
	if err := b.SaveFile(path); err != nil {
		t.Fatal(err)
	}
	// Loaded after everything expired: the chain (with its rotation) is
	// intact, and the rollback floor too.
	later := t0.Add(48 * time.Hour)
	got, skipped, err := LoadFile(path, later)
	if err != nil || len(skipped) != 0 {
		t.Fatalf("load: %v %v", err, skipped)
	}
	if rec, st := got.Current(v1.Record.App, later); rec.Version != 2 || st != StatusStale {
		t.Fatalf("loaded: v%d %v", rec.Version, st)
	}
	if set, _ := got.Maintainers(v1.Record.App); !set.Equal(n.set(1)) {
		t.Fatal("rotation lost")
	}
	if _, ok := got.Get(other.Record.App, 7); !ok {
		t.Fatal("second app lost")
	}
	data, _ := os.ReadFile(path)
	if _, _, err := ReadBook(bytes.NewReader(data[:len(data)-3]), later); !errors.Is(err, ErrBookFile) {
		t.Fatalf("truncated: %v", err)
	}
	if empty, _, err := LoadFile(filepath.Join(t.TempDir(), "none"), later); err != nil || len(empty.Apps()) != 0 {
		t.Fatalf("missing file: %v", err)
	}
}

// TestBookNeverGoesBack applies random records (any version, any signer
// subset, any time) and checks TUF's invariants after each step: the
// latest version never decreases, only records with a threshold of the
// then-current maintainers land, and an expired latest is never current.
func TestBookNeverGoesBack(t *testing.T) {
	a := newMaintainers(t, 50, 3)
	n := newMaintainers(t, 51, 2)
	all := map[string]crypto.PrivKey{}
	for k, v := range a.keys {
		all[k] = v
	}
	for k, v := range n.keys {
		all[k] = v
	}
	app := mustRecord(t, genesis(a, 2, 1, cid1, t0)).App
	r := rand.New(rand.NewSource(1))
	b := NewBook()
	var lastVersion uint64
	for i := range 300 {
		now := t0.Add(time.Duration(i) * time.Minute)
		p := Params{App: app, Name: "demo", Version: uint64(r.Intn(12) + 1), CID: cid1, Time: now.Add(-time.Duration(r.Intn(120)) * time.Minute), TTL: time.Duration(r.Intn(90)+1) * time.Minute}
		switch r.Intn(3) {
		case 0:
			p.Maintainers = a.set(2)
		case 1:
			p.Maintainers = n.set(2)
		default:
			p.Maintainers = n.set(2)
			s := a.set(2)
			p.Previous = &s
		}
		var keys []crypto.PrivKey
		for _, k := range append(append([]string{}, p.Maintainers.Keys...), prevKeys(p)...) {
			if r.Intn(2) == 0 {
				keys = append(keys, all[k])
			}
		}
		if len(keys) == 0 {
			continue
		}
		before, _ := b.Maintainers(app)
		raw, err := Sign(p, keys...)
		if err != nil {
			t.Fatal(err)
		}
		rel, err := b.Add(raw, now)
		applied := err == nil || (errors.Is(err, attest.ErrExpired) && Reason(err) == "expired")
		rec, st := b.Current(app, now)
		if applied {
			if rel.Record.Version <= lastVersion {
				t.Fatalf("step %d: version %d applied after %d", i, rel.Record.Version, lastVersion)
			}
			if lastVersion > 0 && rel.SignedBy(before) < before.Threshold {
				t.Fatalf("step %d: applied without the current maintainers' threshold", i)
			}
			lastVersion = rel.Record.Version
		}
		if lastVersion > 0 && rec.Version != lastVersion {
			t.Fatalf("step %d: current v%d, want v%d", i, rec.Version, lastVersion)
		}
		if st == StatusCurrent && now.UnixMilli() >= rec.Expires {
			t.Fatalf("step %d: expired record reported current", i)
		}
	}
	if lastVersion == 0 {
		t.Fatal("nothing was ever applied: the test exercises nothing")
	}
}

func prevKeys(p Params) []string {
	if p.Previous == nil {
		return nil
	}
	return p.Previous.Keys
}

// FuzzReadBook: a saved book file never panics the loader, and whatever
// loads can be saved and loaded again to the same records.
func FuzzReadBook(f *testing.F) {
	a := newMaintainers(f, 60, 1)
	b := NewBook()
	raw, _ := Sign(genesis(a, 1, 1, cid1, t0), a.first(1)...)
	b.Add(raw, t0)
	var buf bytes.Buffer
	b.WriteTo(&buf)
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		got, _, err := ReadBook(bytes.NewReader(data), t0)
		if err != nil {
			return
		}
		var out bytes.Buffer
		if _, err := got.WriteTo(&out); err != nil {
			t.Fatal(err)
		}
		again, skipped, err := ReadBook(&out, t0)
		if err != nil || len(skipped) != 0 {
			t.Fatalf("reload: %v %v", err, skipped)
		}
		if len(again.Apps()) != len(got.Apps()) {
			t.Fatal("apps lost on reload")
		}
	})
}
