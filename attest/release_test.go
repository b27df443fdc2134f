package attest

import (
	"bytes"
	"errors"
	"math/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/mirrornet/mirrornet/protocol"
)

var t0 = time.UnixMilli(1_800_000_000_000)

// testKeys returns n deterministic Ed25519 keys, sorted by key string, and
// their key strings.
func testKeys(t testing.TB, seed int64, n int) ([]crypto.PrivKey, []string) {
	t.Helper()
	r := rand.New(rand.NewSource(seed))
	var keys []crypto.PrivKey
	var names []string
	for range n {
		k, _, err := crypto.GenerateEd25519Key(r)
		if err != nil {
			t.Fatal(err)
		}
		name, err := KeyString(k.GetPublic())
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
		names = append(names, name)
	}
	// Sort keys by name so callers can index both consistently.
	for i := range names {
		for j := i + 1; j < len(names); j++ {
			if names[j] < names[i] {
				names[i], names[j] = names[j], names[i]
				keys[i], keys[j] = keys[j], keys[i]
			}
		}
	}
	return keys, names
}

func testRelease(names []string, threshold int) protocol.Release {
	set := protocol.MaintainerSet{Keys: names, Threshold: threshold}
	return protocol.Release{
		App: protocol.DeriveAppID("demo", set), Name: "demo", Version: 1,
		CID: "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi", Repo: "https://example.org/demo.git",
		Commit: "0123456789abcdef", Build: "make dist", Time: t0.UnixMilli(), Expires: t0.Add(24 * time.Hour).UnixMilli(),
		Maintainers: set,
	}
}

func TestVerifyReleaseThreshold(t *testing.T) {
	keys, names := testKeys(t, 1, 3)
	rec := testRelease(names, 2)
	raw, err := SignRelease(rec, keys[0], keys[2])
	if err != nil {
		t.Fatal(err)
	}
	rel, err := VerifyRelease(raw, t0)
	if err != nil {
		t.Fatalf("2 of 3: %v", err)
	}
	if len(rel.Signers) != 2 || rel.Signers[0] != names[0] || rel.Signers[1] != names[2] {
		t.Fatalf("signers = %v", rel.Signers)
	}
	if rel.Record.CID != rec.CID || !bytes.Equal(rel.Raw, raw) {
		t.Fatal("record not returned as signed")
	}

	one, err := SignRelease(rec, keys[1])
	if err != nil {
		t.Fatal(err)
	}
	rel, err = VerifyRelease(one, t0)
	if !errors.Is(err, ErrThreshold) || rel != nil {
		t.Fatalf("1 of 3 (threshold 2): rel=%v err=%v, want ErrThreshold", rel, err)
	}
	if Classify(err) != Reject {
		t.Fatalf("below threshold classified %v", Classify(err))
	}
}

func TestVerifyReleaseKeySigningTwiceCountsOnce(t *testing.T) {
	keys, names := testKeys(t, 2, 3)
	rec := testRelease(names, 2)
	raw, err := SignRelease(rec, keys[0])
	if err != nil {
		t.Fatal(err)
	}
	s, err := protocol.DecodeSignedRelease(raw)
	if err != nil {
		t.Fatal(err)
	}
	// The same key's signature twice: two entries, one signer.
	s.Signatures = append(s.Signatures, s.Signatures[0])
	twice, err := protocol.Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := protocol.DecodeSignedRelease(twice); err != nil {
		t.Fatalf("duplicate entries must still decode: %v", err)
	}
	_, err = VerifyRelease(twice, t0)
	if !errors.Is(err, ErrThreshold) {
		t.Fatalf("one key twice with threshold 2: %v, want ErrThreshold", err)
	}
	// Cosigning with a key that already signed adds nothing.
	again, err := CosignRelease(raw, keys[0])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, raw) {
		t.Fatal("cosigning with the same key changed the record")
	}
	// A second distinct key reaches the threshold.
	both, err := CosignRelease(raw, keys[1])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyRelease(both, t0); err != nil {
		t.Fatalf("after cosign: %v", err)
	}
}

func TestVerifyReleaseRejects(t *testing.T) {
	keys, names := testKeys(t, 3, 2)
	outsiders, outNames := testKeys(t, 4, 1)
	rec := testRelease(names, 1)
	good, err := SignRelease(rec, keys[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := SignRelease(rec, outsiders[0]); !errors.Is(err, ErrUnknownSigner) {
		t.Fatalf("SignRelease by outsider: %v", err)
	}
	mutate := func(f func(s *protocol.SignedRelease)) []byte {
		s, err := protocol.DecodeSignedRelease(good)
		if err != nil {
			t.Fatal(err)
		}
		f(s)
		b, err := protocol.Encode(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	outsiderSig, _ := outsiders[0].Sign(releaseSigningBytes(mustDecode(t, good).Release))
	noDomainSig, _ := keys[0].Sign(mustDecode(t, good).Release)
	otherRec := rec
	otherRec.CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
	otherRaw, _ := SignRelease(otherRec, keys[0])

	cases := []struct {
		name string
		raw  []byte
		want error
	}{
		{"flipped signature", mutate(func(s *protocol.SignedRelease) { s.Signatures[0].Sig[3] ^= 1 }), ErrSignature},
		{"signature without domain", mutate(func(s *protocol.SignedRelease) { s.Signatures[0].Sig = noDomainSig }), ErrSignature},
		{"signature moved to another record", mutate(func(s *protocol.SignedRelease) {
			s.Release = mustDecode(t, otherRaw).Release
			s.Signatures = mustDecode(t, good).Signatures
		}), nil},
		{"record changed after signing", mutate(func(s *protocol.SignedRelease) {
			s.Release = bytes.Replace(s.Release, []byte(`"make dist"`), []byte(`"make evil"`), 1)
		}), ErrSignature},
		{"outsider signature", mutate(func(s *protocol.SignedRelease) {
			s.Signatures = append(s.Signatures, protocol.ReleaseSignature{Key: outNames[0], Sig: outsiderSig})
		}), ErrUnknownSigner},
		{"no signatures", mutate(func(s *protocol.SignedRelease) { s.Signatures = nil }), ErrMalformed},
		{"non-canonical", append(append([]byte{}, good...), ' '), ErrMalformed},
		{"not json", []byte("\x00\x01"), ErrMalformed},
		{"oversize", make([]byte, protocol.MaxStatementSize+1), ErrOversize},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := VerifyRelease(c.raw, t0)
			if c.want == nil {
				// The moved signature verifies only if it covers the
				// record it sits on: it must not.
				if err == nil {
					t.Fatal("signature of one record accepted on another")
				}
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if Classify(err) != Reject {
				t.Fatalf("classified %v, want reject", Classify(err))
			}
		})
	}
}

func mustDecode(t *testing.T, raw []byte) *protocol.SignedRelease {
	t.Helper()
	s, err := protocol.DecodeSignedRelease(raw)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerifyReleaseTiming(t *testing.T) {
	keys, names := testKeys(t, 5, 1)
	rec := testRelease(names, 1)
	raw, err := SignRelease(rec, keys[0])
	if err != nil {
		t.Fatal(err)
	}
	exp := time.UnixMilli(rec.Expires)
	if _, err := VerifyRelease(raw, exp.Add(-time.Millisecond)); err != nil {
		t.Fatalf("just before expiry: %v", err)
	}
	rel, err := VerifyRelease(raw, exp)
	if !errors.Is(err, ErrExpired) || !errors.Is(err, ErrTooOld) {
		t.Fatalf("at expiry: %v, want ErrExpired", err)
	}
	if rel == nil || rel.Record.Version != 1 {
		t.Fatal("expired release must still be returned")
	}
	if Classify(err) != Ignore {
		t.Fatalf("expired classified %v, want ignore", Classify(err))
	}
	rel, err = VerifyRelease(raw, t0.Add(-time.Minute))
	if !errors.Is(err, ErrFuture) || rel == nil || Classify(err) != Ignore {
		t.Fatalf("signed in the future: rel=%v err=%v", rel, err)
	}
}

func TestAppIDStableAcrossRotation(t *testing.T) {
	keys, names := testKeys(t, 6, 2)
	newKeys, newNames := testKeys(t, 7, 2)
	v1 := testRelease(names, 2)
	v2 := v1
	v2.Version = 2
	v2.Previous = &protocol.MaintainerSet{Keys: names, Threshold: 2}
	v2.Maintainers = protocol.MaintainerSet{Keys: newNames, Threshold: 1}
	raw, err := SignRelease(v2, keys[0], keys[1], newKeys[0])
	if err != nil {
		t.Fatal(err)
	}
	rel, err := VerifyRelease(raw, t0)
	if err != nil {
		t.Fatal(err)
	}
	if rel.Record.App != v1.App || rel.Record.App != protocol.DeriveAppID("demo", *rel.Record.Previous) {
		t.Fatal("app ID changed across rotation")
	}
	if protocol.DeriveAppID("demo", rel.Record.Maintainers) == v1.App {
		t.Fatal("app ID does not depend on the maintainer set")
	}
	if rel.SignedBy(*rel.Record.Previous) != 2 || rel.SignedBy(rel.Record.Maintainers) != 1 {
		t.Fatalf("signed by old %d new %d", rel.SignedBy(*rel.Record.Previous), rel.SignedBy(rel.Record.Maintainers))
	}
}

// FuzzVerifyRelease checks that no input panics and that anything accepted
// is canonical and internally consistent. Seeds live in
// testdata/fuzz/FuzzVerifyRelease.
func FuzzVerifyRelease(f *testing.F) {
	keys, names := testKeys(f, 8, 2)
	raw, err := SignRelease(testRelease(names, 2), keys[0], keys[1])
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Fuzz(func(t *testing.T, raw []byte) {
		rel, err := VerifyRelease(raw, t0)
		if rel == nil {
			if err == nil {
				t.Fatal("nil release without error")
			}
			return
		}
		if !bytes.Equal(rel.Raw, raw) {
			t.Fatal("Raw is not the input")
		}
		if rel.SignedBy(rel.Record.Maintainers) < rel.Record.Maintainers.Threshold {
			t.Fatal("accepted below threshold")
		}
		s, err := protocol.DecodeSignedRelease(raw)
		if err != nil {
			t.Fatalf("accepted but does not decode: %v", err)
		}
		again, err := protocol.Encode(s)
		if err != nil || !bytes.Equal(again, raw) {
			t.Fatal("accepted a non-canonical encoding")
		}
	})
}
