// Package attest signs and verifies mirrornet's statements: liveness
// heartbeats, probe results and build attestations, each a libp2p signed
// envelope whose domain separates it from every other kind (see package
// protocol for the wire format).
//
// Verification is a pure function of (bytes, now): [Verify] starts no
// goroutine, does no I/O and reads no clock. Its errors fall into two
// classes that [Classify] maps to a gossip verdict: provably bad statements
// (Reject: penalise whoever forwarded them) and statements that are merely
// stale, early or already superseded (Ignore). [SeqGuard] adds the
// per-signer sequence check that keeps replays out after gossipsub's
// seen-message cache has forgotten them.
package attest

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"

	"github.com/mirrornet/mirrornet/protocol"
)

// Reject-class errors: the statement is provably bad.
var (
	ErrOversize  = errors.New("attest: statement exceeds size limit")
	ErrMalformed = errors.New("attest: malformed envelope")
	ErrKind      = errors.New("attest: unknown statement kind")
	ErrSignature = errors.New("attest: signature does not verify")
	ErrKeyType   = errors.New("attest: signer key is not Ed25519")
	ErrPayload   = errors.New("attest: invalid payload")
	ErrSubject   = errors.New("attest: subject is not the signer")
)

// Ignore-class errors: the statement may be genuine but is not fresh.
var (
	ErrFuture = errors.New("attest: statement time is ahead of the clock disparity window")
	ErrTooOld = errors.New("attest: statement is older than its maximum age")
	ErrReplay = errors.New("attest: sequence number not newer than the last one seen")
	// ErrRateLimited: the signer's previous statement of this kind was
	// accepted less than the guard's minimum interval ago (see
	// [SeqGuard.SetMinInterval]). The statement is dropped, not forwarded.
	ErrRateLimited = errors.New("attest: rate-limited: signer published again too soon")
)

// Kind names a statement kind.
type Kind string

const (
	KindLiveness Kind = "liveness"
	KindProbe    Kind = "probe"
	KindBuild    Kind = "build"
)

// Statement is a verified statement.
type Statement struct {
	Kind Kind
	// Signer is the peer ID of the key that signed the envelope; it is
	// always the statement's subject.
	Signer peer.ID
	// Seq and Time come from the payload.
	Seq  uint64
	Time time.Time
	// Raw is the exact signed bytes: forward or store these, never a
	// re-encoding. Owned by the Statement.
	Raw []byte
	// Exactly one of these is set, by Kind.
	Liveness *protocol.Liveness
	Probe    *protocol.ProbeResult
	Build    *protocol.BuildAttestation
	// Suspicion is a failure detector's report (KindSuspicion).
	Suspicion *protocol.Suspicion
	// Holdings is a mirror's signed holdings list (KindHoldings).
	Holdings *protocol.Holdings
	// Payout statements (see fund.go).
	Payout     *protocol.PayoutAddress
	Receipt    *protocol.Receipt
	LedgerRoot *protocol.LedgerRoot
	Witness    *protocol.ReceiptWitness
}

// kindSpec describes how one statement kind is framed and checked.
type kindSpec struct {
	kind        Kind
	domain      string
	payloadType string
	maxAge      time.Duration // 0: no age limit
	maxSize     int           // 0: protocol.MaxStatementSize
	// decode parses and validates a payload and fills the kind's field, Seq
	// and Time in st; it returns the subject peer ID string.
	decode func(payload []byte, st *Statement) (subject string, err error)
}

var kinds = map[string]kindSpec{}

func register(k kindSpec) { kinds[k.payloadType] = k }

// maxStatementSize is the largest statement of any kind.
const maxStatementSize = max(protocol.MaxStatementSize, protocol.MaxHoldingsSize)

// sizeLimit is the largest statement of kind k in bytes.
func (k kindSpec) sizeLimit() int {
	if k.maxSize > 0 {
		return k.maxSize
	}
	return protocol.MaxStatementSize
}

// checkSize refuses raw if it is larger than its kind allows.
func (k kindSpec) checkSize(raw []byte) error {
	if len(raw) > k.sizeLimit() {
		return fmt.Errorf("%w: %d bytes (limit %d for %s)", ErrOversize, len(raw), k.sizeLimit(), k.kind)
	}
	return nil
}

func init() {
	register(kindSpec{
		kind: KindLiveness, domain: protocol.DomainLiveness, payloadType: protocol.PayloadLiveness,
		maxAge: protocol.MaxLivenessAge,
		decode: func(payload []byte, st *Statement) (string, error) {
			// The statement keeps raw, so the decoded strings may share
			// it rather than copy it.
			l, err := protocol.DecodeLivenessShared(payload)
			if err != nil {
				return "", err
			}
			st.Liveness, st.Seq, st.Time = l, l.Seq, time.UnixMilli(l.Time)
			return l.Peer, nil
		},
	})
}

// rawRecord adapts an already-encoded payload to record.Record.
type rawRecord struct {
	spec    kindSpec
	payload []byte
}

func (r *rawRecord) Domain() string                 { return r.spec.domain }
func (r *rawRecord) Codec() []byte                  { return []byte(r.spec.payloadType) }
func (r *rawRecord) MarshalRecord() ([]byte, error) { return r.payload, nil }
func (r *rawRecord) UnmarshalRecord(b []byte) error { r.payload = b; return nil }
func (r *rawRecord) String() string                 { return string(r.spec.kind) }
func kindOf(payloadType string) (kindSpec, bool)    { k, ok := kinds[payloadType]; return k, ok }
func specFor(k Kind) kindSpec {
	for _, s := range kinds {
		if s.kind == k {
			return s
		}
	}
	panic("attest: unregistered kind " + string(k))
}

// sign seals payload (already canonical) as kind k with key.
func sign(key crypto.PrivKey, k Kind, payload []byte) ([]byte, error) {
	if key.Type() != crypto.Ed25519 {
		return nil, ErrKeyType
	}
	env, err := record.Seal(&rawRecord{spec: specFor(k), payload: payload}, key)
	if err != nil {
		return nil, fmt.Errorf("attest: seal: %w", err)
	}
	raw, err := env.Marshal()
	if err != nil {
		return nil, fmt.Errorf("attest: marshal envelope: %w", err)
	}
	if err := specFor(k).checkSize(raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// SignLiveness signs a liveness statement. l.Peer must be key's peer ID;
// slices are normalised (nil becomes empty) before signing.
//
// A statement without Holdings lists its bundles inline: nil Bundles then
// means "holds nothing".
func SignLiveness(key crypto.PrivKey, l protocol.Liveness) ([]byte, error) {
	if l.Bundles == nil && l.Holdings == "" {
		l.Bundles = []string{}
	}
	return signValidated(key, KindLiveness, l.Peer, &l)
}

// signValidated checks that subject is key's peer ID and that the payload
// is valid, encodes it canonically and seals it as kind k.
func signValidated(key crypto.PrivKey, k Kind, subject string, payload interface{ Validate() error }) ([]byte, error) {
	if err := checkSubject(key, subject); err != nil {
		return nil, err
	}
	if err := payload.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPayload, err)
	}
	raw, err := protocol.Encode(payload)
	if err != nil {
		return nil, err
	}
	return sign(key, k, raw)
}

func checkSubject(key crypto.PrivKey, subject string) error {
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return fmt.Errorf("attest: peer ID of key: %w", err)
	}
	if id.String() != subject {
		return fmt.Errorf("%w: statement names %s, key is %s", ErrSubject, subject, id)
	}
	return nil
}

// Verify checks a signed statement: size, envelope encoding, kind, signature,
// key type, payload canonical form and fields, subject = signer, and time
// against now. It is pure.
//
// When the only problem is timing (ErrFuture, ErrTooOld) Verify returns the
// verified statement together with the error, so that sync (which accepts
// old statements as evidence of a dead mirror) can still use it.
func Verify(raw []byte, now time.Time) (*Statement, error) {
	if len(raw) > maxStatementSize {
		return nil, fmt.Errorf("%w: %d bytes (limit %d)", ErrOversize, len(raw), maxStatementSize)
	}
	spec, signer, payload, err := openEnvelope(raw)
	if err != nil {
		return nil, err
	}
	st := &Statement{Kind: spec.kind, Signer: signer, Raw: raw}
	subject, err := spec.decode(payload, st)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPayload, err)
	}
	if subject != signer.String() {
		return nil, fmt.Errorf("%w: statement names %s, signed by %s", ErrSubject, subject, signer)
	}
	if st.Time.After(now.Add(protocol.MaxClockDisparity)) {
		return st, fmt.Errorf("%w: %s ahead", ErrFuture, st.Time.Sub(now).Round(time.Millisecond))
	}
	if spec.maxAge > 0 && now.Sub(st.Time) > spec.maxAge {
		return st, fmt.Errorf("%w: %s old (limit %s)", ErrTooOld, now.Sub(st.Time).Round(time.Millisecond), spec.maxAge)
	}
	return st, nil
}

// openEnvelope checks raw's envelope (encoding, kind, key type, signature)
// and returns its kind, signer and payload. A canonical Ed25519 envelope
// is read in place (envelope.go: the payload is a slice of raw); anything
// else goes through go-libp2p's record package, which says what is wrong.
func openEnvelope(raw []byte) (kindSpec, peer.ID, []byte, error) {
	if f, ok := parseEnvelope(raw); ok {
		spec, ok := kindOf(string(f.payloadType))
		if !ok {
			return kindSpec{}, "", nil, fmt.Errorf("%w: payload type %q", ErrKind, f.payloadType)
		}
		if err := spec.checkSize(raw); err != nil {
			return kindSpec{}, "", nil, err
		}
		if !checkSignature(f, spec.domain) {
			return kindSpec{}, "", nil, fmt.Errorf("%w: %v", ErrSignature, record.ErrInvalidSignature)
		}
		key, err := crypto.UnmarshalEd25519PublicKey(f.pub)
		if err != nil {
			return kindSpec{}, "", nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		signer, err := peer.IDFromPublicKey(key)
		if err != nil {
			return kindSpec{}, "", nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		return spec, signer, f.payload, nil
	}
	return openEnvelopeSlow(raw)
}

// openEnvelopeSlow is openEnvelope through go-libp2p's record package: it
// copies the statement several times, and is what every envelope took
// before the fast path.
func openEnvelopeSlow(raw []byte) (kindSpec, peer.ID, []byte, error) {
	env, err := record.UnmarshalEnvelope(raw)
	if err != nil {
		return kindSpec{}, "", nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	// Reject any encoding but the canonical one, so that one statement has
	// exactly one byte form (and one gossip message ID).
	again, err := env.Marshal()
	if err != nil || !bytes.Equal(again, raw) {
		return kindSpec{}, "", nil, fmt.Errorf("%w: non-canonical envelope encoding", ErrMalformed)
	}
	spec, ok := kindOf(string(env.PayloadType))
	if !ok {
		return kindSpec{}, "", nil, fmt.Errorf("%w: payload type %q", ErrKind, env.PayloadType)
	}
	if err := spec.checkSize(raw); err != nil {
		return kindSpec{}, "", nil, err
	}
	if env.PublicKey.Type() != crypto.Ed25519 {
		return kindSpec{}, "", nil, ErrKeyType
	}
	if _, err := record.ConsumeTypedEnvelope(raw, &rawRecord{spec: spec}); err != nil {
		return kindSpec{}, "", nil, fmt.Errorf("%w: %v", ErrSignature, err)
	}
	signer, err := peer.IDFromPublicKey(env.PublicKey)
	if err != nil {
		return kindSpec{}, "", nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return spec, signer, env.RawPayload, nil
}

// Verdict is what a gossip validator answers.
type Verdict int

const (
	Accept Verdict = iota
	// Ignore drops the message without penalising the sender.
	Ignore
	// Reject drops the message and penalises the sender (gossipsub P4).
	Reject
)

func (v Verdict) String() string {
	switch v {
	case Accept:
		return "accept"
	case Ignore:
		return "ignore"
	default:
		return "reject"
	}
}

// Classify maps a verification error to a gossip verdict: nil is Accept,
// timing and sequence errors are Ignore, everything else is Reject.
func Classify(err error) Verdict {
	switch {
	case err == nil:
		return Accept
	case errors.Is(err, ErrFuture), errors.Is(err, ErrTooOld), errors.Is(err, ErrReplay), errors.Is(err, ErrRateLimited):
		return Ignore
	default:
		return Reject
	}
}

// Reason is a short, stable label for an error, for metrics.
func Reason(err error) string {
	for _, r := range []struct {
		err  error
		name string
	}{
		{ErrOversize, "oversize"}, {ErrMalformed, "malformed"}, {ErrKind, "kind"},
		{ErrSignature, "signature"}, {ErrKeyType, "key_type"}, {ErrReceipt, "receipt"}, {ErrPayload, "payload"},
		{ErrSubject, "subject"}, {ErrHoldings, "holdings_mismatch"}, {ErrFuture, "future"}, {ErrTooOld, "too_old"}, {ErrReplay, "replay"},
		{ErrRateLimited, "rate_limited"},
	} {
		if errors.Is(err, r.err) {
			return r.name
		}
	}
	if err == nil {
		return "ok"
	}
	return "other"
}

// Peek reads the signer and kind of a statement without checking its
// signature or payload: cheap enough to run before Verify, for rate limits.
// Nothing it returns is authenticated; use it only to decide to do less
// work, never to accept.
func Peek(raw []byte) (peer.ID, Kind, error) {
	if len(raw) > protocol.MaxStatementSize {
		return "", "", fmt.Errorf("%w: %d bytes (limit %d)", ErrOversize, len(raw), protocol.MaxStatementSize)
	}
	env, err := record.UnmarshalEnvelope(raw)
	if err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	spec, ok := kindOf(string(env.PayloadType))
	if !ok {
		return "", "", fmt.Errorf("%w: payload type %q", ErrKind, env.PayloadType)
	}
	id, err := peer.IDFromPublicKey(env.PublicKey)
	if err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return id, spec.kind, nil
}
