package protocol

import (
	"bytes"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// PayloadRelease is the payload type bound into every release signature
// (see [SignedRelease]).
const PayloadRelease = "/mirrornet/release/1"

// MaxReleaseSignatures bounds the signature entries of one signed release: a
// maintainer rotation carries signatures of both the old and the new set.
const MaxReleaseSignatures = 2 * MaxMaintainers

// Ed25519SignatureSize is the size of every release signature.
const Ed25519SignatureSize = 64

// AppIDPrefix starts every app ID; see [DeriveAppID].
const AppIDPrefix = "app-b"

// appIDLen is len(AppIDPrefix) + unpadded base32 of a sha256 digest.
const appIDLen = len(AppIDPrefix) + 52

var appIDEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// MaintainerSet is the keys allowed to sign an app's releases and how many
// of them must sign.
type MaintainerSet struct {
	// Keys are the maintainers' public keys as Ed25519 libp2p peer IDs
	// (base58, "12D3KooW..."), sorted, without duplicates.
	Keys []string `json:"keys"`
	// Threshold is how many distinct keys of Keys must sign, 1..len(Keys).
	Threshold int `json:"threshold"`
}

// Validate checks the set's shape. It does not parse the keys (this package
// imports only the standard library); attest does.
func (s MaintainerSet) Validate() error {
	if len(s.Keys) == 0 {
		return fmt.Errorf("%w: maintainer set has no keys", ErrInvalid)
	}
	if err := checkStrings("keys", s.Keys, MaxMaintainers); err != nil {
		return err
	}
	if !sortedUnique(s.Keys) {
		return fmt.Errorf("%w: maintainer keys not sorted and unique", ErrInvalid)
	}
	if s.Threshold < 1 || s.Threshold > len(s.Keys) {
		return fmt.Errorf("%w: threshold %d outside 1..%d", ErrInvalid, s.Threshold, len(s.Keys))
	}
	return nil
}

// Equal reports whether s and o hold the same keys and threshold.
func (s MaintainerSet) Equal(o MaintainerSet) bool {
	return s.Threshold == o.Threshold && slices.Equal(s.Keys, o.Keys)
}

// Has reports whether key is one of the set's keys.
func (s MaintainerSet) Has(key string) bool {
	_, ok := slices.BinarySearch(s.Keys, key)
	return ok
}

// Release is a release record: "app App (Name), version Version, is CID,
// built from Repo at Commit with Build; valid until Expires; the app's
// maintainers are Maintainers" signed by a threshold of maintainers (see
// [SignedRelease]).
type Release struct {
	// App is the app ID, derived from the app's first (genesis) maintainer
	// set by [DeriveAppID]; it never changes.
	App string `json:"app"`
	// Name is the app's human-readable name; it never changes either.
	Name string `json:"name"`
	// Version rises with every release, starting from 1.
	Version uint64 `json:"version"`
	// CID is the root CID of the release's bundle.
	CID string `json:"cid"`
	// Repo, Commit and Build say where the bundle comes from, so that
	// anyone can rebuild it (see [BuildAttestation]). Optional.
	Repo   string `json:"repo,omitempty"`
	Commit string `json:"commit,omitempty"`
	Build  string `json:"build,omitempty"`
	// Time is the signing time in Unix milliseconds.
	Time int64 `json:"time"`
	// Expires is when the record stops being current, in Unix milliseconds
	// (TUF's freeze protection: a client that sees nothing newer after
	// that reports the release as stale).
	Expires int64 `json:"expires"`
	// Maintainers is the app's maintainer set from this version on.
	Maintainers MaintainerSet `json:"maintainers"`
	// Previous is set on a rotation only: the maintainer set this record
	// replaces, which must equal the set currently known and whose
	// threshold must also sign.
	Previous *MaintainerSet `json:"previous,omitempty"`
	// Builders are the builder keys whose [BuildAttestation]s count for
	// this release's code integrity, and how many of them must attest its
	// CID (k-of-n, like maintainers). Attestations by any other key are
	// "unlisted" and change nothing. Absent: no builder is declared, and
	// the release's integrity stays unverified whatever anyone attests.
	Builders *MaintainerSet `json:"builders,omitempty"`
}

func (r *Release) normalize() {
	if r.Maintainers.Keys == nil {
		r.Maintainers.Keys = []string{}
	}
	if r.Previous != nil && r.Previous.Keys == nil {
		r.Previous.Keys = []string{}
	}
	if r.Builders != nil && r.Builders.Keys == nil {
		r.Builders.Keys = []string{}
	}
}

// Validate checks the record's shape (not signatures, time or chain).
func (r *Release) Validate() error {
	if !IsAppID(r.App) {
		return fmt.Errorf("%w: app %q is not an app ID", ErrInvalid, r.App)
	}
	if r.Name == "" {
		return fmt.Errorf("%w: name is empty", ErrInvalid)
	}
	if r.Version == 0 {
		return fmt.Errorf("%w: version is zero", ErrInvalid)
	}
	if r.CID == "" {
		return fmt.Errorf("%w: cid is empty", ErrInvalid)
	}
	for _, f := range []struct{ name, v string }{{"name", r.Name}, {"cid", r.CID}, {"repo", r.Repo}, {"commit", r.Commit}, {"build", r.Build}} {
		if err := checkString(f.name, f.v); err != nil {
			return err
		}
	}
	if r.Time <= 0 {
		return fmt.Errorf("%w: time is not positive", ErrInvalid)
	}
	if r.Expires <= r.Time {
		return fmt.Errorf("%w: expires is not after time", ErrInvalid)
	}
	if err := r.Maintainers.Validate(); err != nil {
		return fmt.Errorf("maintainers: %w", err)
	}
	if r.Previous != nil {
		if err := r.Previous.Validate(); err != nil {
			return fmt.Errorf("previous: %w", err)
		}
	}
	if r.Builders != nil {
		if err := r.Builders.Validate(); err != nil {
			return fmt.Errorf("builders: %w", err)
		}
	}
	return nil
}

// DecodeRelease decodes and validates a canonical release record.
func DecodeRelease(data []byte) (*Release, error) {
	if len(data) > MaxStatementSize {
		return nil, fmt.Errorf("%w: release of %d bytes", ErrTooLarge, len(data))
	}
	var r Release
	if err := DecodeCanonical(data, &r); err != nil {
		return nil, err
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// ReleaseSignature is one maintainer's signature over a release record.
type ReleaseSignature struct {
	// Key is the signer's Ed25519 peer ID.
	Key string `json:"key"`
	// Sig is the Ed25519 signature (base64 in JSON) over
	//
	//	varint(len(d)) || d || varint(len(t)) || t || varint(len(r)) || r
	//
	// with d = [DomainRelease], t = [PayloadRelease] and r the exact bytes
	// of SignedRelease.Release: the same layout as a signed envelope, so a
	// release signature can never be replayed as any other statement.
	Sig []byte `json:"sig"`
}

// SignedRelease is a release record and its maintainers' signatures: the
// unit gossiped on [TopicRelease], synced and stored. Release holds the
// canonical bytes of a [Release] (base64 in JSON). Signatures are sorted by
// key, then by signature bytes; a key may appear more than once but counts
// once towards a threshold. The whole encoding is canonical JSON and at most
// [MaxStatementSize] bytes.
type SignedRelease struct {
	Release    []byte             `json:"release"`
	Signatures []ReleaseSignature `json:"signatures"`
}

func (s *SignedRelease) normalize() {
	if s.Signatures == nil {
		s.Signatures = []ReleaseSignature{}
	}
	slices.SortFunc(s.Signatures, compareSigs)
}

func compareSigs(a, b ReleaseSignature) int {
	if c := strings.Compare(a.Key, b.Key); c != 0 {
		return c
	}
	return bytes.Compare(a.Sig, b.Sig)
}

// Validate checks the envelope's shape (not the signatures themselves).
func (s *SignedRelease) Validate() error {
	if len(s.Release) == 0 {
		return fmt.Errorf("%w: release is empty", ErrInvalid)
	}
	if len(s.Signatures) == 0 {
		return fmt.Errorf("%w: no signatures", ErrInvalid)
	}
	if len(s.Signatures) > MaxReleaseSignatures {
		return fmt.Errorf("%w: %d signatures (limit %d)", ErrInvalid, len(s.Signatures), MaxReleaseSignatures)
	}
	for i, sig := range s.Signatures {
		if sig.Key == "" {
			return fmt.Errorf("%w: signature %d has no key", ErrInvalid, i)
		}
		if err := checkString("key", sig.Key); err != nil {
			return err
		}
		if len(sig.Sig) != Ed25519SignatureSize {
			return fmt.Errorf("%w: signature %d is %d bytes, want %d", ErrInvalid, i, len(sig.Sig), Ed25519SignatureSize)
		}
		if i > 0 && compareSigs(s.Signatures[i-1], sig) > 0 {
			return fmt.Errorf("%w: signatures not sorted", ErrInvalid)
		}
	}
	return nil
}

// DecodeSignedRelease decodes and validates the shape of a canonical signed
// release. It does not decode the inner record or check signatures.
func DecodeSignedRelease(data []byte) (*SignedRelease, error) {
	if len(data) > MaxStatementSize {
		return nil, fmt.Errorf("%w: signed release of %d bytes (limit %d)", ErrTooLarge, len(data), MaxStatementSize)
	}
	var s SignedRelease
	if err := DecodeCanonical(data, &s); err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// appGenesis is what an app ID commits to.
type appGenesis struct {
	Name      string   `json:"name"`
	Threshold int      `json:"threshold"`
	Keys      []string `json:"keys"`
}

// DeriveAppID returns the app ID of an app named name whose first
// (genesis) maintainer set is genesis:
//
//	"app-" + "b" + base32lower-nopad(sha256(json({"name","threshold","keys"})))
//
// where the JSON is canonical (this package's rules) and keys are sorted.
// "b" is the multibase prefix of that base32 form. The ID commits to the
// genesis set, so it stays the same when maintainers rotate, and a client
// given only the ID can check the first record of the chain.
func DeriveAppID(name string, genesis MaintainerSet) string {
	keys := slices.Clone(genesis.Keys)
	slices.Sort(keys)
	if keys == nil {
		keys = []string{}
	}
	b, err := json.Marshal(appGenesis{Name: name, Threshold: genesis.Threshold, Keys: keys})
	if err != nil {
		panic("protocol: marshal app genesis: " + err.Error()) // strings and ints always marshal
	}
	sum := sha256.Sum256(b)
	return AppIDPrefix + strings.ToLower(appIDEncoding.EncodeToString(sum[:]))
}

// IsAppID reports whether s has the form of an app ID.
func IsAppID(s string) bool {
	if len(s) != appIDLen || !strings.HasPrefix(s, AppIDPrefix) {
		return false
	}
	rest := s[len(AppIDPrefix):]
	if rest != strings.ToLower(rest) {
		return false
	}
	b, err := appIDEncoding.DecodeString(strings.ToUpper(rest))
	// Re-encoding rules out non-zero trailing bits: one app, one ID string.
	return err == nil && len(b) == sha256.Size && strings.ToLower(appIDEncoding.EncodeToString(b)) == rest
}

// signedReleasePrefix starts every canonical SignedRelease encoding.
var signedReleasePrefix = []byte(`{"release":"`)

// IsSignedRelease reports whether a statement (a sync or HTTP statements
// frame) is a signed release rather than a signed envelope. Envelopes are
// protobuf and never start with '{'.
func IsSignedRelease(b []byte) bool { return bytes.HasPrefix(b, signedReleasePrefix) }
