package protocol

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Probe outcomes.
const (
	// OutcomePass: every block of the challenge arrived within the deadline
	// and hashed to its CID.
	OutcomePass = "pass"
	// OutcomeFail: the target answered, but with an error status, a block
	// whose bytes do not match its CID, or a node that does not decode.
	OutcomeFail = "fail"
	// OutcomeTimeout: the challenge did not complete within the deadline.
	OutcomeTimeout = "timeout"
)

// ChallengeDescent is the prefix of a random-descent challenge:
//
//	descent:<nonce>:<path>[,<path>...]
//
// nonce is 32 lowercase hex digits (16 bytes from the observer's
// cryptographic random source, drawn at probe time), and each path is the
// child index chosen at each level of one descent from the root,
// dot-separated ("" when the root is a leaf), e.g.
// "descent:9f1c...e0:3.0.17,5.1.2" for two descents. At most
// [MaxChallengeDescents] descents.
const ChallengeDescent = "descent"

// ChallengeCanary is the prefix of a canary challenge:
//
//	canary:<nonce>
//
// A canary asks the target for [CanaryCID] of the nonce, a block whose
// bytes nobody knows: an honest observer can only report it as failed or
// timed out. Whether a nonce is a canary is public ([IsCanary]), so a
// result whose challenge kind disagrees with its nonce is invalid.
const ChallengeCanary = "canary"

// MaxChallengeDescents bounds the descents of one challenge.
const MaxChallengeDescents = 8

// MaxProbeLatency bounds LatencyMS: no challenge deadline is longer.
const MaxProbeLatency = 10 * 60 * 1000

// Probe nonces, rounds and receipts.
const (
	// ProbeRoundsPerEpoch cuts an epoch into rounds: round =
	// (time - epoch start) * ProbeRoundsPerEpoch / epoch length. A
	// result's nonce is derived from (epoch, round, target, observer), so
	// an observer has one challenge per round and target, and a receipt
	// made for one round never serves another.
	ProbeRoundsPerEpoch = 64
	// CanaryOneIn: one nonce in CanaryOneIn is a canary.
	CanaryOneIn = 8
	// MaxProbeReceipts bounds the receipts in one result: the root and
	// at most the last block of each descent.
	MaxProbeReceipts = 1 + MaxChallengeDescents
	// MaxReceiptLen bounds one receipt's text form in bytes: a CID, a
	// time and a base64 Ed25519 signature.
	MaxReceiptLen = 256
	// ReceiptSigSize is the size of an Ed25519 signature.
	ReceiptSigSize = 64
	// MaxAddrLen bounds the observed address of a result.
	MaxAddrLen = 64
)

// HTTP headers of a retrieval challenge. The observer sends
// [HeaderProbeObserver] (its peer ID) and [HeaderProbeNonce] (32 hex
// digits) with GET /ipfs/{cid}?format=raw; a target that serves the block
// (200) adds [HeaderProbeReceipt]: its [ProbeReceipt] for that block.
const (
	HeaderProbeObserver = "Mirrornet-Probe-Observer"
	HeaderProbeNonce    = "Mirrornet-Probe-Nonce"
	HeaderProbeReceipt  = "Mirrornet-Probe-Receipt"
)

const nonceDomain = "mirrornet-probe-nonce/1"

// ProbeNonce is the nonce of the challenge observer puts to target in
// (epoch, round): the first 16 bytes of
//
//	SHA-256("mirrornet-probe-nonce/1" || uint64be(epoch) || uint64be(round) ||
//	        uvarint(len(target)) || target || uvarint(len(observer)) || observer)
//
// with target and observer as peer ID strings. It comes from the same public
// values as the assignment, so anyone can check it and nobody can choose it.
func ProbeNonce(epoch, round uint64, target, observer string) [16]byte {
	b := make([]byte, 0, len(nonceDomain)+16+2*(binary.MaxVarintLen64+len(target)))
	b = append(b, nonceDomain...)
	b = binary.BigEndian.AppendUint64(b, epoch)
	b = binary.BigEndian.AppendUint64(b, round)
	b = binary.AppendUvarint(b, uint64(len(target)))
	b = append(b, target...)
	b = binary.AppendUvarint(b, uint64(len(observer)))
	b = append(b, observer...)
	h := sha256.Sum256(b)
	var n [16]byte
	copy(n[:], h[:16])
	return n
}

// IsCanary reports whether a nonce's challenge is a canary: the first 8
// bytes, big-endian, of SHA-256(nonce || "mirrornet-canary") are 0 modulo
// [CanaryOneIn].
func IsCanary(nonce [16]byte) bool {
	h := sha256.Sum256(append(nonce[:], "mirrornet-canary"...))
	return binary.BigEndian.Uint64(h[:8])%CanaryOneIn == 0
}

// CanaryCID is the block a canary challenge asks for: a CIDv1, raw codec,
// sha2-256 multihash of digest SHA-256(nonce || "mirrornet-canary-block"),
// in base32 ("b..."). It names bytes nobody knows.
func CanaryCID(nonce [16]byte) string {
	d := sha256.Sum256(append(nonce[:], "mirrornet-canary-block"...))
	b := append([]byte{0x01, 0x55, 0x12, 0x20}, d[:]...)
	return "b" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

// ChallengeNonce returns the nonce of a challenge string and whether it is
// a canary. The challenge must be valid (see ProbeResult.Validate).
func ChallengeNonce(c string) (nonce [16]byte, canary bool, err error) {
	kind, rest, _ := strings.Cut(c, ":")
	hexNonce, _, _ := strings.Cut(rest, ":")
	if len(hexNonce) != 32 {
		return nonce, false, fmt.Errorf("%w: challenge nonce must be 32 lowercase hex digits", ErrInvalid)
	}
	if _, err := hex.Decode(nonce[:], []byte(hexNonce)); err != nil {
		return nonce, false, fmt.Errorf("%w: challenge nonce: %v", ErrInvalid, err)
	}
	return nonce, kind == ChallengeCanary, nil
}

// ProbeReceipt is a target's signed word that it answered a challenge: "I,
// the target, served block CID to the observer for the challenge with this
// nonce, at Time". Its text form, in results and in the
// [HeaderProbeReceipt] header, is
//
//	<cid>:<time>:<signature>
//
// with time in Unix milliseconds (decimal) and the target's Ed25519
// signature in standard base64 with padding, over [ReceiptSigningBytes].
// The target's key is its peer ID (an identity multihash of the Ed25519
// key), so a receipt needs no key of its own.
type ProbeReceipt struct {
	CID  string
	Time int64
	Sig  []byte
}

// DomainProbeReceipt separates receipt signatures from every other signature.
const DomainProbeReceipt = "mirrornet-probe-receipt/1"

// ReceiptSigningBytes is what a target signs for a receipt:
//
//	uvarint(len(d)) || d || nonce (16 bytes) || uvarint(len(cid)) || cid ||
//	uvarint(len(observer)) || observer || uint64be(time)
//
// with d = [DomainProbeReceipt], cid the block's CID string and observer the
// observer's peer ID string.
func ReceiptSigningBytes(nonce [16]byte, cid, observer string, time int64) []byte {
	b := make([]byte, 0, 2*binary.MaxVarintLen64+len(DomainProbeReceipt)+16+len(cid)+len(observer)+binary.MaxVarintLen64+8)
	b = binary.AppendUvarint(b, uint64(len(DomainProbeReceipt)))
	b = append(b, DomainProbeReceipt...)
	b = append(b, nonce[:]...)
	b = binary.AppendUvarint(b, uint64(len(cid)))
	b = append(b, cid...)
	b = binary.AppendUvarint(b, uint64(len(observer)))
	b = append(b, observer...)
	return binary.BigEndian.AppendUint64(b, uint64(time))
}

// String is the receipt's text form.
func (r ProbeReceipt) String() string {
	return r.CID + ":" + strconv.FormatInt(r.Time, 10) + ":" + base64.StdEncoding.EncodeToString(r.Sig)
}

// ParseReceipt parses a receipt's text form (at most [MaxReceiptLen]
// bytes). It checks the shape only, not the signature.
func ParseReceipt(s string) (ProbeReceipt, error) {
	if len(s) > MaxReceiptLen {
		return ProbeReceipt{}, fmt.Errorf("%w: receipt of %d bytes (limit %d)", ErrTooLarge, len(s), MaxReceiptLen)
	}
	c, rest, ok1 := strings.Cut(s, ":")
	ts, sig, ok2 := strings.Cut(rest, ":")
	if !ok1 || !ok2 || c == "" {
		return ProbeReceipt{}, fmt.Errorf("%w: receipt is not <cid>:<time>:<signature>", ErrInvalid)
	}
	if err := checkToken("receipt cid", c); err != nil {
		return ProbeReceipt{}, err
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || t <= 0 || strconv.FormatInt(t, 10) != ts {
		return ProbeReceipt{}, fmt.Errorf("%w: receipt time %q", ErrInvalid, ts)
	}
	b, err := base64.StdEncoding.Strict().DecodeString(sig)
	if err != nil || len(b) != ReceiptSigSize {
		return ProbeReceipt{}, fmt.Errorf("%w: receipt signature is not %d bytes of base64", ErrInvalid, ReceiptSigSize)
	}
	return ProbeReceipt{CID: c, Time: t, Sig: b}, nil
}

// ProbeResult is an observer's signed verdict on one retrieval challenge:
// "observer Observer, assigned to probe Target in Epoch, asked for Challenge
// of Bundle in Round and got Outcome after LatencyMS, reaching Target at
// Addr". The subject (signer) is Observer. A pass carries the target's
// Receipts, so it is bound to an answer that really happened.
type ProbeResult struct {
	// Observer is the subject: the probing mirror's peer ID. It must be
	// the signer.
	Observer string `json:"observer"`
	// Target is the probed mirror's peer ID; never the observer.
	Target string `json:"target"`
	// Epoch is floor(Time / epoch length) under the network's profile;
	// it selects the observers assigned to Target (see "Probes").
	Epoch uint64 `json:"epoch"`
	// Seq rises with every probe result the observer signs.
	Seq uint64 `json:"seq"`
	// Time is the probe's start in Unix milliseconds.
	Time int64 `json:"time"`
	// Bundle is the root CID (string form) challenged; the target must
	// have listed it in its own liveness statement.
	Bundle string `json:"bundle"`
	// Challenge records what was asked, with the observer's randomness
	// (see ChallengeDescent).
	Challenge string `json:"challenge"`
	// Outcome is OutcomePass, OutcomeFail or OutcomeTimeout.
	Outcome string `json:"outcome"`
	// LatencyMS is the challenge's wall time in milliseconds.
	LatencyMS int64 `json:"latency_ms"`
	// Round is the round of the epoch the challenge was put in
	// (< ProbeRoundsPerEpoch); with Epoch, Target and Observer it
	// derives the challenge nonce (ProbeNonce).
	Round uint64 `json:"round"`
	// Addr is the IP address (no port) at which the observer reached the
	// target for this challenge: a signed observation of where the target
	// is. "" when unknown.
	Addr string `json:"addr,omitempty"`
	// Receipts are the target's receipts (ProbeReceipt text form) for
	// blocks of this challenge: the bundle root first, then leaves a
	// descent ended on. A pass of a descent challenge carries at least the
	// root's.
	Receipts []string `json:"receipts,omitempty"`
}

// Validate checks the fields' shape (not signatures, time or assignment).
func (p *ProbeResult) Validate() error {
	if p.Observer == "" {
		return fmt.Errorf("%w: observer is empty", ErrInvalid)
	}
	if p.Target == "" {
		return fmt.Errorf("%w: target is empty", ErrInvalid)
	}
	if p.Observer == p.Target {
		return fmt.Errorf("%w: observer probes itself", ErrInvalid)
	}
	if p.Seq == 0 {
		return fmt.Errorf("%w: seq is zero", ErrInvalid)
	}
	if p.Time <= 0 {
		return fmt.Errorf("%w: time is not positive", ErrInvalid)
	}
	for _, f := range []struct{ name, v string }{
		{"observer", p.Observer}, {"target", p.Target}, {"bundle", p.Bundle}, {"challenge", p.Challenge},
	} {
		if err := checkString(f.name, f.v); err != nil {
			return err
		}
		if strings.ContainsFunc(f.v, func(r rune) bool { return r <= ' ' || r > '~' }) {
			return fmt.Errorf("%w: %s has a space, control or non-ASCII character", ErrInvalid, f.name)
		}
	}
	if p.Bundle == "" {
		return fmt.Errorf("%w: bundle is empty", ErrInvalid)
	}
	if err := checkChallenge(p.Challenge); err != nil {
		return err
	}
	switch p.Outcome {
	case OutcomePass, OutcomeFail, OutcomeTimeout:
	default:
		return fmt.Errorf("%w: outcome %q", ErrInvalid, p.Outcome)
	}
	if p.LatencyMS < 0 || p.LatencyMS > MaxProbeLatency {
		return fmt.Errorf("%w: latency_ms %d outside [0, %d]", ErrInvalid, p.LatencyMS, MaxProbeLatency)
	}
	if p.Round >= ProbeRoundsPerEpoch {
		return fmt.Errorf("%w: round %d (limit %d)", ErrInvalid, p.Round, ProbeRoundsPerEpoch-1)
	}
	nonce, canary, err := ChallengeNonce(p.Challenge)
	if err != nil {
		return err
	}
	if nonce != ProbeNonce(p.Epoch, p.Round, p.Target, p.Observer) {
		return fmt.Errorf("%w: challenge nonce is not the one epoch %d, round %d, target and observer derive", ErrInvalid, p.Epoch, p.Round)
	}
	if canary != IsCanary(nonce) {
		return fmt.Errorf("%w: challenge kind disagrees with its nonce (canary: %v)", ErrInvalid, IsCanary(nonce))
	}
	if p.Addr != "" {
		a, err := netip.ParseAddr(p.Addr)
		if err != nil || len(p.Addr) > MaxAddrLen || a.Zone() != "" || a.String() != p.Addr {
			return fmt.Errorf("%w: addr %q is not an IP address in canonical form", ErrInvalid, p.Addr)
		}
	}
	if len(p.Receipts) > MaxProbeReceipts {
		return fmt.Errorf("%w: %d receipts (limit %d)", ErrInvalid, len(p.Receipts), MaxProbeReceipts)
	}
	for _, r := range p.Receipts {
		if _, err := ParseReceipt(r); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	if p.Outcome == OutcomePass && !canary && len(p.Receipts) == 0 {
		return fmt.Errorf("%w: a pass carries no receipt", ErrInvalid)
	}
	return nil
}

func (p *ProbeResult) normalize() {
	if len(p.Receipts) == 0 {
		p.Receipts = nil
	}
}

func checkToken(name, v string) error {
	if err := checkString(name, v); err != nil {
		return err
	}
	if strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return fmt.Errorf("%w: %s has a space, control or non-ASCII character", ErrInvalid, name)
	}
	return nil
}

func checkNonce(n string) error {
	if len(n) != 32 || strings.ContainsFunc(n, func(r rune) bool {
		return !('0' <= r && r <= '9' || 'a' <= r && r <= 'f')
	}) {
		return fmt.Errorf("%w: challenge nonce must be 32 lowercase hex digits", ErrInvalid)
	}
	return nil
}

func checkChallenge(c string) error {
	kind, rest, ok := strings.Cut(c, ":")
	if ok && kind == ChallengeCanary {
		return checkNonce(rest)
	}
	if !ok || kind != ChallengeDescent {
		return fmt.Errorf("%w: challenge %q is not %s:<nonce>:<path> or %s:<nonce>", ErrInvalid, c, ChallengeDescent, ChallengeCanary)
	}
	nonce, path, ok := strings.Cut(rest, ":")
	if !ok {
		return fmt.Errorf("%w: challenge %q is not %s:<nonce>:<path>", ErrInvalid, c, ChallengeDescent)
	}
	if err := checkNonce(nonce); err != nil {
		return err
	}
	paths := strings.Split(path, ",")
	if len(paths) > MaxChallengeDescents {
		return fmt.Errorf("%w: challenge has %d descents (limit %d)", ErrInvalid, len(paths), MaxChallengeDescents)
	}
	for _, p := range paths {
		if p == "" {
			continue
		}
		for _, step := range strings.Split(p, ".") {
			if step == "" || len(step) > 5 || (len(step) > 1 && step[0] == '0') ||
				strings.ContainsFunc(step, func(r rune) bool { return r < '0' || r > '9' }) {
				return fmt.Errorf("%w: challenge path step %q", ErrInvalid, step)
			}
		}
	}
	return nil
}

// DecodeProbeResult decodes and validates a canonical probe-result payload.
func DecodeProbeResult(data []byte) (*ProbeResult, error) {
	var p ProbeResult
	if err := DecodeCanonical(data, &p); err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}
