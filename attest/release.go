package attest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/protocol"
)

// KindRelease names release records (which are not envelopes; see
// protocol.SignedRelease).
const KindRelease Kind = "release"

// Release verification errors. ErrThreshold and ErrUnknownSigner are
// Reject-class. An expired release is reported with an error that matches
// both ErrExpired and ErrTooOld, so Classify maps it to Ignore.
var (
	ErrThreshold     = errors.New("attest: not enough maintainer signatures")
	ErrUnknownSigner = errors.New("attest: signature by a key that is not a maintainer")
	ErrExpired       = errors.New("attest: release has expired")
)

// Release is a release record whose signatures have been checked.
type Release struct {
	Record protocol.Release
	// Signers are the distinct keys (peer IDs) whose signature verified,
	// sorted. Each is in Record.Maintainers or Record.Previous.
	Signers []string
	// Raw is the exact signed release bytes: store and forward these.
	Raw []byte
}

// Expired reports whether the record's expiry has passed at now.
func (r *Release) Expired(now time.Time) bool { return now.UnixMilli() >= r.Record.Expires }

// SignedBy counts the distinct signers that belong to set.
func (r *Release) SignedBy(set protocol.MaintainerSet) int {
	seen := make(map[string]bool, len(r.Signers))
	for _, k := range r.Signers {
		if set.Has(k) {
			seen[k] = true
		}
	}
	return len(seen)
}

// releaseSigningBytes is what each maintainer signs: the envelope layout
// with the release domain and payload type.
func releaseSigningBytes(record []byte) []byte {
	return signingBytes(protocol.DomainRelease, protocol.PayloadRelease, record)
}

// signingBytes is the signed-envelope layout: uvarint-length-prefixed
// domain, payload type and record.
func signingBytes(domain, payloadType string, record []byte) []byte {
	var b []byte
	for _, f := range [][]byte{[]byte(domain), []byte(payloadType), record} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

// KeyString returns the text form of a public key used in maintainer sets
// and build attestations: its peer ID.
func KeyString(pub crypto.PubKey) (string, error) {
	if pub.Type() != crypto.Ed25519 {
		return "", ErrKeyType
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("attest: peer ID of key: %w", err)
	}
	return id.String(), nil
}

// ParseKey parses a maintainer key (an Ed25519 peer ID in its canonical
// base58 form) into a public key.
func ParseKey(s string) (crypto.PubKey, error) {
	id, err := peer.Decode(s)
	if err != nil {
		return nil, fmt.Errorf("%w: key %q: %v", ErrPayload, s, err)
	}
	if id.String() != s {
		return nil, fmt.Errorf("%w: key %q is not in canonical form", ErrPayload, s)
	}
	pub, err := id.ExtractPublicKey()
	if err != nil {
		return nil, fmt.Errorf("%w: key %q: %v", ErrPayload, s, err)
	}
	if pub.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("%w: key %q", ErrKeyType, s)
	}
	return pub, nil
}

// SignRelease validates rec and signs it with keys, each of which must be in
// rec.Maintainers or rec.Previous. It does not require a threshold, so that
// maintainers can sign one by one (see CosignRelease); VerifyRelease does.
func SignRelease(rec protocol.Release, keys ...crypto.PrivKey) ([]byte, error) {
	if err := rec.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPayload, err)
	}
	payload, err := protocol.Encode(&rec)
	if err != nil {
		return nil, err
	}
	s := &protocol.SignedRelease{Release: payload}
	return addSignatures(s, &rec, keys)
}

// CosignRelease adds keys' signatures to a signed release (one that may not
// yet reach its threshold). Keys that already signed are skipped.
func CosignRelease(raw []byte, keys ...crypto.PrivKey) ([]byte, error) {
	s, err := protocol.DecodeSignedRelease(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	rec, err := protocol.DecodeRelease(s.Release)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPayload, err)
	}
	return addSignatures(s, rec, keys)
}

func addSignatures(s *protocol.SignedRelease, rec *protocol.Release, keys []crypto.PrivKey) ([]byte, error) {
	may := func(name string) bool {
		return rec.Maintainers.Has(name) || (rec.Previous != nil && rec.Previous.Has(name))
	}
	sigs, err := appendSignatures(s.Signatures, releaseSigningBytes(s.Release), may, ErrUnknownSigner, keys)
	if err != nil {
		return nil, err
	}
	s.Signatures = sigs
	return encodeSigned(s)
}

// appendSignatures signs msg with each of keys that has not signed yet;
// a key for which may is false is refused with notAllowed.
func appendSignatures(sigs []protocol.ReleaseSignature, msg []byte, may func(string) bool, notAllowed error, keys []crypto.PrivKey) ([]protocol.ReleaseSignature, error) {
	for _, key := range keys {
		if key.Type() != crypto.Ed25519 {
			return nil, ErrKeyType
		}
		name, err := KeyString(key.GetPublic())
		if err != nil {
			return nil, err
		}
		if !may(name) {
			return nil, fmt.Errorf("%w: %s", notAllowed, name)
		}
		if slices.ContainsFunc(sigs, func(sig protocol.ReleaseSignature) bool { return sig.Key == name }) {
			continue
		}
		sig, err := key.Sign(msg)
		if err != nil {
			return nil, fmt.Errorf("attest: sign: %w", err)
		}
		sigs = append(sigs, protocol.ReleaseSignature{Key: name, Sig: sig})
	}
	return sigs, nil
}

// encodeSigned encodes a multi-signed record within the statement size.
func encodeSigned(v any) ([]byte, error) {
	raw, err := protocol.Encode(v)
	if err != nil {
		return nil, err
	}
	if len(raw) > protocol.MaxStatementSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrOversize, len(raw))
	}
	return raw, nil
}

// VerifyRelease checks a signed release: size, canonical encoding, record
// fields, every maintainer key, every signature (each must verify and come
// from a key in the record's Maintainers or Previous set), and that distinct
// signers of the record's own maintainer set reach its threshold. A key that
// signs twice counts once. Chain rules (rollback, rotation, anchoring) are
// not checked here: see package internal/release. It is pure.
//
// When the only problem is timing Verify returns the verified record with
// the error: ErrFuture (signed ahead of now beyond the clock disparity) or
// an error matching ErrExpired and ErrTooOld (past its expiry: stale).
func VerifyRelease(raw []byte, now time.Time) (*Release, error) {
	if len(raw) > protocol.MaxStatementSize {
		return nil, fmt.Errorf("%w: %d bytes (limit %d)", ErrOversize, len(raw), protocol.MaxStatementSize)
	}
	s, err := protocol.DecodeSignedRelease(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	rec, err := protocol.DecodeRelease(s.Release)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPayload, err)
	}
	sets := []protocol.MaintainerSet{rec.Maintainers}
	if rec.Previous != nil {
		sets = append(sets, *rec.Previous)
	}
	for _, set := range sets {
		for _, k := range set.Keys {
			if _, err := ParseKey(k); err != nil {
				return nil, err
			}
		}
	}
	msg := releaseSigningBytes(s.Release)
	var signers []string
	for _, sig := range s.Signatures {
		if !rec.Maintainers.Has(sig.Key) && (rec.Previous == nil || !rec.Previous.Has(sig.Key)) {
			return nil, fmt.Errorf("%w: %s", ErrUnknownSigner, sig.Key)
		}
		pub, err := ParseKey(sig.Key)
		if err != nil {
			return nil, err
		}
		ok, err := pub.Verify(msg, sig.Sig)
		if err != nil || !ok {
			return nil, fmt.Errorf("%w: release signature by %s", ErrSignature, sig.Key)
		}
		signers = append(signers, sig.Key)
	}
	signers = protocol.SortUnique(signers)
	rel := &Release{Record: *rec, Signers: signers, Raw: raw}
	if n := rel.SignedBy(rec.Maintainers); n < rec.Maintainers.Threshold {
		return nil, fmt.Errorf("%w: %d of %d required maintainers signed", ErrThreshold, n, rec.Maintainers.Threshold)
	}
	t := time.UnixMilli(rec.Time)
	if t.After(now.Add(protocol.MaxClockDisparity)) {
		return rel, fmt.Errorf("%w: %s ahead", ErrFuture, t.Sub(now).Round(time.Millisecond))
	}
	if rel.Expired(now) {
		return rel, fmt.Errorf("%w: %w: version %d expired at %s", ErrExpired, ErrTooOld, rec.Version, time.UnixMilli(rec.Expires).UTC().Format(time.RFC3339))
	}
	return rel, nil
}
