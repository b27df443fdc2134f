package attest

import (
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/protocol"
)

// Receipt errors (Reject class: a result carrying such a receipt is
// provably bad, since its observer checked the receipt before signing).
var (
	// ErrReceipt reports a receipt that does not bind the result to a
	// real answer: not signed by the target, for another observer, nonce
	// or time, or missing where a pass needs one.
	ErrReceipt = errors.New("attest: probe receipt does not match its result")
)

func init() {
	register(kindSpec{
		kind: KindProbe, domain: protocol.DomainProbe, payloadType: protocol.PayloadProbe,
		maxAge: protocol.MaxProbeAge,
		decode: func(payload []byte, st *Statement) (string, error) {
			p, err := protocol.DecodeProbeResult(payload)
			if err != nil {
				return "", err
			}
			if err := VerifyReceipts(p); err != nil {
				return "", err
			}
			st.Probe, st.Seq, st.Time = p, p.Seq, time.UnixMilli(p.Time)
			return p.Observer, nil
		},
	})
}

// SignProbe signs a probe result. p.Observer must be key's peer ID, p must
// pass [protocol.ProbeResult.Validate], and its receipts must pass
// [VerifyReceipts]: an observer never signs a pass it cannot prove.
func SignProbe(key crypto.PrivKey, p protocol.ProbeResult) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPayload, err)
	}
	if err := VerifyReceipts(&p); err != nil {
		return nil, err
	}
	return signValidated(key, KindProbe, p.Observer, &p)
}

// SignProbeReceipt makes the target's receipt (text form) for serving block
// cid to observer for the challenge with nonce, at t. key is the target's.
func SignProbeReceipt(key crypto.PrivKey, observer string, nonce [16]byte, cid string, t time.Time) (string, error) {
	if key.Type() != crypto.Ed25519 {
		return "", ErrKeyType
	}
	sig, err := key.Sign(protocol.ReceiptSigningBytes(nonce, cid, observer, t.UnixMilli()))
	if err != nil {
		return "", fmt.Errorf("attest: sign receipt: %w", err)
	}
	return protocol.ProbeReceipt{CID: cid, Time: t.UnixMilli(), Sig: sig}.String(), nil
}

// VerifyProbeReceipt checks one receipt against the challenge it should answer:
// signed by target's key (taken from its peer ID), for observer and nonce,
// at a time in [from, to]. It returns the parsed receipt. It is pure.
func VerifyProbeReceipt(s, target, observer string, nonce [16]byte, from, to time.Time) (protocol.ProbeReceipt, error) {
	r, err := protocol.ParseReceipt(s)
	if err != nil {
		return r, fmt.Errorf("%w: %w", ErrReceipt, err)
	}
	id, err := peer.Decode(target)
	if err != nil {
		return r, fmt.Errorf("%w: target %q: %v", ErrReceipt, target, err)
	}
	pub, err := id.ExtractPublicKey()
	if err != nil || pub.Type() != crypto.Ed25519 {
		return r, fmt.Errorf("%w: target %s carries no Ed25519 key", ErrReceipt, target)
	}
	ok, err := pub.Verify(protocol.ReceiptSigningBytes(nonce, r.CID, observer, r.Time), r.Sig)
	if err != nil || !ok {
		return r, fmt.Errorf("%w: not the target's signature for this observer, nonce, block and time", ErrReceipt)
	}
	if at := time.UnixMilli(r.Time); at.Before(from) || at.After(to) {
		return r, fmt.Errorf("%w: made at %s, outside the challenge's [%s, %s]", ErrReceipt,
			at.UTC().Format(time.RFC3339Nano), from.UTC().Format(time.RFC3339Nano), to.UTC().Format(time.RFC3339Nano))
	}
	return r, nil
}

// VerifyReceipts checks that a probe result is bound to what happened:
// every receipt it carries is the target's signature, made for this observer and
// this challenge's nonce during the challenge (from Time minus the clock
// disparity to Time plus LatencyMS plus the disparity); a pass of a descent
// challenge carries one for the bundle root (the first). It is pure: the
// only keys it needs are inside the receipts.
func VerifyReceipts(p *protocol.ProbeResult) error {
	nonce, canary, err := protocol.ChallengeNonce(p.Challenge)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPayload, err)
	}
	if p.Outcome == protocol.OutcomePass && !canary && len(p.Receipts) == 0 {
		return fmt.Errorf("%w: a pass without a receipt", ErrReceipt)
	}
	start := time.UnixMilli(p.Time)
	from := start.Add(-protocol.MaxClockDisparity)
	to := start.Add(time.Duration(p.LatencyMS)*time.Millisecond + protocol.MaxClockDisparity)
	for i, s := range p.Receipts {
		r, err := VerifyProbeReceipt(s, p.Target, p.Observer, nonce, from, to)
		if err != nil {
			return fmt.Errorf("receipt %d: %w", i, err)
		}
		if i == 0 && !canary && r.CID != p.Bundle {
			return fmt.Errorf("%w: the first receipt is for %s, not the bundle root %s", ErrReceipt, r.CID, p.Bundle)
		}
	}
	return nil
}
