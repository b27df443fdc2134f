package protocol

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// Well-formed (not necessarily valid-key) peer-ID-like strings, sorted.
var (
	keyA = "12D3KooWAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	keyB = "12D3KooWBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
)

func sampleRelease() Release {
	set := MaintainerSet{Keys: []string{keyA, keyB}, Threshold: 2}
	return Release{
		App: DeriveAppID("demo", set), Name: "demo", Version: 1, CID: "bafyexample",
		Time: 1000, Expires: 2000, Maintainers: set,
	}
}

func TestDeriveAppID(t *testing.T) {
	set := MaintainerSet{Keys: []string{keyA, keyB}, Threshold: 2}
	id := DeriveAppID("demo", set)
	if !IsAppID(id) || !strings.HasPrefix(id, "app-b") {
		t.Fatalf("id %q", id)
	}
	if DeriveAppID("demo", MaintainerSet{Keys: []string{keyB, keyA}, Threshold: 2}) != id {
		t.Fatal("key order changed the ID")
	}
	for _, other := range []string{
		DeriveAppID("demo2", set),
		DeriveAppID("demo", MaintainerSet{Keys: []string{keyA, keyB}, Threshold: 1}),
		DeriveAppID("demo", MaintainerSet{Keys: []string{keyA}, Threshold: 1}),
	} {
		if other == id {
			t.Fatal("ID does not commit to name, threshold and keys")
		}
	}
	for _, bad := range []string{"", "app-", id[:len(id)-1], strings.ToUpper(id), "app-c" + id[5:], id[:len(id)-1] + "b"} {
		if IsAppID(bad) {
			t.Errorf("IsAppID(%q) = true", bad)
		}
	}
}

func TestReleaseValidate(t *testing.T) {
	cases := map[string]func(r *Release){
		"bad app":          func(r *Release) { r.App = "demo" },
		"no name":          func(r *Release) { r.Name = "" },
		"version 0":        func(r *Release) { r.Version = 0 },
		"no cid":           func(r *Release) { r.CID = "" },
		"expires early":    func(r *Release) { r.Expires = r.Time },
		"no time":          func(r *Release) { r.Time = 0 },
		"threshold 0":      func(r *Release) { r.Maintainers.Threshold = 0 },
		"threshold > keys": func(r *Release) { r.Maintainers.Threshold = 3 },
		"unsorted keys":    func(r *Release) { r.Maintainers.Keys = []string{keyB, keyA} },
		"duplicate keys":   func(r *Release) { r.Maintainers.Keys = []string{keyA, keyA} },
		"no keys":          func(r *Release) { r.Maintainers.Keys = nil },
		"bad previous":     func(r *Release) { r.Previous = &MaintainerSet{Threshold: 1} },
		"long build":       func(r *Release) { r.Build = strings.Repeat("x", MaxStringLen+1) },
		"too many maintainers": func(r *Release) {
			r.Maintainers.Keys = nil
			for i := range MaxMaintainers + 1 {
				r.Maintainers.Keys = append(r.Maintainers.Keys, keyA+string(rune('A'+i/26))+string(rune('A'+i%26)))
			}
		},
	}
	r := sampleRelease()
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, f := range cases {
		r := sampleRelease()
		f(&r)
		if err := r.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestReleaseRoundTrip(t *testing.T) {
	r := sampleRelease()
	r.Previous = &MaintainerSet{Keys: []string{keyA}, Threshold: 1}
	b, err := Encode(&r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeRelease(b)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Maintainers.Equal(r.Maintainers) || !got.Previous.Equal(*r.Previous) || got.App != r.App {
		t.Fatalf("round trip: %+v", got)
	}
	if _, err := DecodeRelease(bytes.Replace(b, []byte(`"name"`), []byte(` "name"`), 1)); !errors.Is(err, ErrNonCanonical) && !errors.Is(err, ErrMalformed) {
		t.Fatalf("non-canonical: %v", err)
	}
	if _, err := DecodeRelease(bytes.Replace(b, []byte(`{"app"`), []byte(`{"x":1,"app"`), 1)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("unknown field: %v", err)
	}
}

func TestSignedReleaseShape(t *testing.T) {
	r := sampleRelease()
	rb, _ := Encode(&r)
	sig := make([]byte, Ed25519SignatureSize)
	s := SignedRelease{Release: rb, Signatures: []ReleaseSignature{{keyB, sig}, {keyA, sig}}}
	b, err := Encode(&s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeSignedRelease(b)
	if err != nil {
		t.Fatal(err)
	}
	if !IsSignedRelease(b) || IsSignedRelease([]byte{0x0a, 0x24}) {
		t.Fatal("IsSignedRelease")
	}
	if got.Signatures[0].Key != keyA {
		t.Fatal("Encode did not sort signatures")
	}
	unsorted, _ := Encode(&s)
	unsorted = bytes.Replace(unsorted, []byte(keyA), []byte("TMP"), 1)
	unsorted = bytes.Replace(unsorted, []byte(keyB), []byte(keyA), 1)
	unsorted = bytes.Replace(unsorted, []byte("TMP"), []byte(keyB), 1)
	if _, err := DecodeSignedRelease(unsorted); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unsorted signatures: %v", err)
	}
	s.Signatures[0].Sig = sig[:10]
	short, _ := Encode(&s)
	if _, err := DecodeSignedRelease(short); !errors.Is(err, ErrInvalid) {
		t.Fatalf("short signature: %v", err)
	}
	if _, err := DecodeSignedRelease(make([]byte, MaxStatementSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversize: %v", err)
	}
}

// FuzzDecodeRelease: no panics; anything accepted re-encodes to itself.
// Seeds live in testdata/fuzz/FuzzDecodeRelease.
func FuzzDecodeRelease(f *testing.F) {
	r := sampleRelease()
	b, _ := Encode(&r)
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeRelease(data)
		if err != nil {
			return
		}
		again, err := Encode(r)
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted non-canonical input %q", data)
		}
		if err := r.Validate(); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzDecodeSignedRelease: no panics; anything accepted re-encodes to
// itself.
func FuzzDecodeSignedRelease(f *testing.F) {
	r := sampleRelease()
	rb, _ := Encode(&r)
	b, _ := Encode(&SignedRelease{Release: rb, Signatures: []ReleaseSignature{{keyA, make([]byte, 64)}}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := DecodeSignedRelease(data)
		if err != nil {
			return
		}
		again, err := Encode(s)
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted non-canonical input %q", data)
		}
	})
}
