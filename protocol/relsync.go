package protocol

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
)

// Release anti-entropy (see the package doc, section Release sync).
const (
	// ReleaseSyncProtocolID is the periodic pull of release records and
	// build attestations: a digest, then (only when the digests differ) a
	// per-app summary, a list of wanted apps and their records.
	ReleaseSyncProtocolID = "/mirrornet/release-sync/1.0.0"

	// MaxReleaseDigestSize bounds the request frame ([ReleaseDigest]) and
	// the want frame ([ReleaseWant]) of a release sync.
	MaxReleaseDigestSize = 4 << 10
	// MaxReleaseSummaryApps bounds the apps listed in one
	// [ReleaseSummary]: a responder that holds more lists the first ones
	// in app ID order.
	MaxReleaseSummaryApps = 4096
	// MaxReleaseSummarySize bounds the summary frame: MaxReleaseSummaryApps
	// entries of about 150 bytes each.
	MaxReleaseSummarySize = 768 << 10
	// MaxReleaseWantApps bounds the apps asked for in one exchange.
	MaxReleaseWantApps = 16
	// MaxReleaseSyncRecords and MaxReleaseSyncBytes bound the records
	// (signed releases and build attestation envelopes) one exchange
	// returns, and their bytes (frames of at most MaxStatementSize each).
	MaxReleaseSyncRecords = 1024
	MaxReleaseSyncBytes   = 4 << 20
)

// ReleaseDigest is the first frame of [ReleaseSyncProtocolID]: the
// requester's [ReleaseRoot] (64 lowercase hex digits) and how many apps it
// covers.
type ReleaseDigest struct {
	Root string `json:"root"`
	Apps int    `json:"apps"`
}

// ReleaseAppSummary is what a node holds of one app: the latest version in
// its book and the [ReleaseAppHash] of every record and build attestation it
// keeps for the app.
type ReleaseAppSummary struct {
	App     string `json:"app"`
	Version uint64 `json:"version"`
	Hash    string `json:"hash"`
}

// ReleaseSummary is the responder's answer when the digests differ: one
// entry per app, sorted by app ID, at most [MaxReleaseSummaryApps].
type ReleaseSummary struct {
	Apps []ReleaseAppSummary `json:"apps"`
}

// ReleaseWantApp asks for an app's records: the release records with a
// version above After (0: the whole chain), then the app's build
// attestations.
type ReleaseWantApp struct {
	App   string `json:"app"`
	After uint64 `json:"after,omitempty"`
}

// ReleaseWant is the requester's second frame: at most
// [MaxReleaseWantApps] apps (none: the requester wants nothing).
type ReleaseWant struct {
	Apps []ReleaseWantApp `json:"apps"`
}

// Validate checks a summary's shape: bounded, sorted by app ID without
// duplicates, every entry an app ID with a 64-hex-digit hash.
func (s *ReleaseSummary) Validate() error {
	if len(s.Apps) > MaxReleaseSummaryApps {
		return fmt.Errorf("%w: %d apps in a release summary, at most %d", ErrTooLarge, len(s.Apps), MaxReleaseSummaryApps)
	}
	for i, a := range s.Apps {
		if !IsAppID(a.App) {
			return fmt.Errorf("%w: %q in a release summary is not an app ID", ErrInvalid, a.App)
		}
		if i > 0 && s.Apps[i-1].App >= a.App {
			return fmt.Errorf("%w: release summary not sorted by app ID", ErrInvalid)
		}
		if !isHexDigest(a.Hash) {
			return fmt.Errorf("%w: release summary hash %q", ErrInvalid, a.Hash)
		}
		if a.Version == 0 {
			return fmt.Errorf("%w: release summary of %s names version 0", ErrInvalid, a.App)
		}
	}
	return nil
}

// Validate checks a want's shape: bounded, every entry an app ID, no app
// twice.
func (w *ReleaseWant) Validate() error {
	if len(w.Apps) > MaxReleaseWantApps {
		return fmt.Errorf("%w: %d apps wanted, at most %d", ErrTooLarge, len(w.Apps), MaxReleaseWantApps)
	}
	seen := make(map[string]bool, len(w.Apps))
	for _, a := range w.Apps {
		if !IsAppID(a.App) {
			return fmt.Errorf("%w: wanted %q is not an app ID", ErrInvalid, a.App)
		}
		if seen[a.App] {
			return fmt.Errorf("%w: %s wanted twice", ErrInvalid, a.App)
		}
		seen[a.App] = true
	}
	return nil
}

// Validate checks a digest's shape.
func (d *ReleaseDigest) Validate() error {
	if !isHexDigest(d.Root) || d.Apps < 0 {
		return fmt.Errorf("%w: release digest %q over %d apps", ErrInvalid, d.Root, d.Apps)
	}
	return nil
}

// ReleaseAppHash is the hash a node summarises an app's records with:
// SHA-256 over the SHA-256 digests of every raw record and attestation it
// keeps for the app, sorted bytewise and concatenated, in lowercase hex. Two
// nodes that keep the same records agree on it whatever order they hold
// them in.
func ReleaseAppHash(raws [][]byte) string {
	sums := make([][sha256.Size]byte, len(raws))
	for i, r := range raws {
		sums[i] = sha256.Sum256(r)
	}
	slices.SortFunc(sums, func(a, b [sha256.Size]byte) int { return bytes.Compare(a[:], b[:]) })
	h := sha256.New()
	for _, s := range sums {
		h.Write(s[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ReleaseRoot is the digest of a whole summary: SHA-256 over, for each
// entry in app ID order, uvarint(len(app)) || app || uint64be(version) ||
// the 32 hash bytes; in lowercase hex. apps must be sorted by app ID.
func ReleaseRoot(apps []ReleaseAppSummary) string {
	h := sha256.New()
	var buf [binary.MaxVarintLen64 + 8]byte
	for _, a := range apps {
		n := binary.PutUvarint(buf[:], uint64(len(a.App)))
		h.Write(buf[:n])
		h.Write([]byte(a.App))
		binary.BigEndian.PutUint64(buf[:8], a.Version)
		h.Write(buf[:8])
		raw, _ := hex.DecodeString(a.Hash)
		h.Write(raw)
	}
	return hex.EncodeToString(h.Sum(nil))
}
