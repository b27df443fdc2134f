package attest

import (
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/mirrornet/mirrornet/protocol"
)

// Kinds of the payout statements.
const (
	KindPayout     Kind = "payout"
	KindReceipt    Kind = "receipt"
	KindLedgerRoot Kind = "ledger-root"
	KindWitness    Kind = "witness"
	KindFund       Kind = "fund"     // a SignedRecord, not an envelope
	KindApproval   Kind = "approval" // a SignedRecord, not an envelope
)

// ErrNotSigner is returned when a key that may not sign a record tries to.
var ErrNotSigner = errors.New("attest: key may not sign this record")

func init() {
	register(kindSpec{
		kind: KindPayout, domain: protocol.DomainPayout, payloadType: protocol.PayloadPayout,
		decode: func(payload []byte, st *Statement) (string, error) {
			p, err := protocol.DecodePayoutAddress(payload)
			if err != nil {
				return "", err
			}
			st.Payout, st.Seq, st.Time = p, p.Seq, time.UnixMilli(p.Time)
			return p.Peer, nil
		},
	})
	register(kindSpec{
		kind: KindReceipt, domain: protocol.DomainReceipt, payloadType: protocol.PayloadReceipt,
		decode: func(payload []byte, st *Statement) (string, error) {
			r, err := protocol.DecodeReceipt(payload)
			if err != nil {
				return "", err
			}
			st.Receipt, st.Seq, st.Time = r, r.Seq, time.UnixMilli(r.Time)
			return r.Client, nil
		},
	})
	register(kindSpec{
		kind: KindWitness, domain: protocol.DomainWitness, payloadType: protocol.PayloadWitness,
		decode: func(payload []byte, st *Statement) (string, error) {
			w, err := protocol.DecodeReceiptWitness(payload)
			if err != nil {
				return "", err
			}
			st.Witness, st.Seq, st.Time = w, w.Seq, time.UnixMilli(w.Time)
			return w.Witness, nil
		},
	})
	register(kindSpec{
		kind: KindLedgerRoot, domain: protocol.DomainLedgerRoot, payloadType: protocol.PayloadLedgerRoot,
		decode: func(payload []byte, st *Statement) (string, error) {
			l, err := protocol.DecodeLedgerRoot(payload)
			if err != nil {
				return "", err
			}
			st.LedgerRoot, st.Seq, st.Time = l, l.Seq, time.UnixMilli(l.Time)
			return l.Peer, nil
		},
	})
}

// SignPayout signs a payout address statement; p.Peer must be key's peer ID.
func SignPayout(key crypto.PrivKey, p protocol.PayoutAddress) ([]byte, error) {
	return signValidated(key, KindPayout, p.Peer, &p)
}

// SignReceipt signs a delivery receipt; r.Client must be key's peer ID.
func SignReceipt(key crypto.PrivKey, r protocol.Receipt) ([]byte, error) {
	return signValidated(key, KindReceipt, r.Client, &r)
}

// SignWitness signs a receipt witness; w.Witness must be key's peer ID.
func SignWitness(key crypto.PrivKey, w protocol.ReceiptWitness) ([]byte, error) {
	return signValidated(key, KindWitness, w.Witness, &w)
}

// SignLedgerRoot signs a ledger root; l.Peer must be key's peer ID.
func SignLedgerRoot(key crypto.PrivKey, l protocol.LedgerRoot) ([]byte, error) {
	return signValidated(key, KindLedgerRoot, l.Peer, &l)
}

// Fund is a fund record whose signatures have been checked.
type Fund struct {
	Record  protocol.Fund
	Signers []string // distinct verified signers, sorted
	Raw     []byte
}

// Approval is an approval record whose signatures have been checked.
type Approval struct {
	Record  protocol.Approval
	Signers []string
	Raw     []byte
}

// SignFund signs a fund record with keys, each of which must be in signers
// (the record's Funders, or the app's maintainers for a maintainers' fund).
func SignFund(f protocol.Fund, signers protocol.MaintainerSet, keys ...crypto.PrivKey) ([]byte, error) {
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPayload, err)
	}
	if f.Funders != nil && !f.Funders.Equal(signers) {
		return nil, fmt.Errorf("%w: a bounty is signed by its own funders", ErrNotSigner)
	}
	payload, err := protocol.Encode(&f)
	if err != nil {
		return nil, err
	}
	return cosign(&protocol.SignedRecord{Record: payload}, protocol.DomainFund, protocol.PayloadFund, signers, keys)
}

// SignApproval signs an approval record with keys in signers.
func SignApproval(a protocol.Approval, signers protocol.MaintainerSet, keys ...crypto.PrivKey) ([]byte, error) {
	if err := a.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPayload, err)
	}
	payload, err := protocol.Encode(&a)
	if err != nil {
		return nil, err
	}
	return cosign(&protocol.SignedRecord{Record: payload}, protocol.DomainApproval, protocol.PayloadApproval, signers, keys)
}

// CosignRecord adds keys' signatures to a signed fund or approval record
// (kind KindFund or KindApproval).
func CosignRecord(raw []byte, kind Kind, signers protocol.MaintainerSet, keys ...crypto.PrivKey) ([]byte, error) {
	s, err := protocol.DecodeSignedRecord(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	d, t, err := recordDomain(kind)
	if err != nil {
		return nil, err
	}
	return cosign(s, d, t, signers, keys)
}

func recordDomain(kind Kind) (string, string, error) {
	switch kind {
	case KindFund:
		return protocol.DomainFund, protocol.PayloadFund, nil
	case KindApproval:
		return protocol.DomainApproval, protocol.PayloadApproval, nil
	}
	return "", "", fmt.Errorf("%w: %s is not a multi-signed record", ErrKind, kind)
}

func cosign(s *protocol.SignedRecord, domain, ptype string, signers protocol.MaintainerSet, keys []crypto.PrivKey) ([]byte, error) {
	sigs, err := appendSignatures(s.Signatures, signingBytes(domain, ptype, s.Record), signers.Has, ErrNotSigner, keys)
	if err != nil {
		return nil, err
	}
	s.Signatures = sigs
	return encodeSigned(s)
}

// verifyRecord checks every signature of a signed record against the
// domain and that the distinct signers in set reach its threshold. A
// signature by a key outside set, or one that does not verify, rejects it.
func verifyRecord(s *protocol.SignedRecord, domain, ptype string, set protocol.MaintainerSet) ([]string, error) {
	msg := signingBytes(domain, ptype, s.Record)
	var signers []string
	for _, sig := range s.Signatures {
		if !set.Has(sig.Key) {
			return nil, fmt.Errorf("%w: %s", ErrUnknownSigner, sig.Key)
		}
		pub, err := ParseKey(sig.Key)
		if err != nil {
			return nil, err
		}
		if ok, err := pub.Verify(msg, sig.Sig); err != nil || !ok {
			return nil, fmt.Errorf("%w: signature by %s", ErrSignature, sig.Key)
		}
		signers = append(signers, sig.Key)
	}
	signers = protocol.SortUnique(signers)
	if len(signers) < set.Threshold {
		return nil, fmt.Errorf("%w: %d of %d required signers", ErrThreshold, len(signers), set.Threshold)
	}
	return signers, nil
}

// VerifyFund checks a signed fund record. maintainers is the app's current
// maintainer set; it is used when the record names no Funders. It is pure.
func VerifyFund(raw []byte, maintainers protocol.MaintainerSet, now time.Time) (*Fund, error) {
	s, err := protocol.DecodeSignedRecord(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	f, err := protocol.DecodeFund(s.Record)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPayload, err)
	}
	set := maintainers
	if f.Funders != nil {
		set = *f.Funders
	}
	signers, err := verifyRecord(s, protocol.DomainFund, protocol.PayloadFund, set)
	if err != nil {
		return nil, err
	}
	if t := time.UnixMilli(f.Time); t.After(now.Add(protocol.MaxClockDisparity)) {
		return nil, fmt.Errorf("%w: %s ahead", ErrFuture, t.Sub(now).Round(time.Millisecond))
	}
	return &Fund{Record: *f, Signers: signers, Raw: raw}, nil
}

// FundApp reads the app a signed fund names without checking signatures,
// so that a receiver can look up the maintainer set to verify it with.
func FundApp(raw []byte) (string, error) {
	s, err := protocol.DecodeSignedRecord(raw)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	f, err := protocol.DecodeFund(s.Record)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrPayload, err)
	}
	return f.App, nil
}

// VerifyApproval checks a signed approval against the fund's signer set.
func VerifyApproval(raw []byte, signers protocol.MaintainerSet) (*Approval, error) {
	s, err := protocol.DecodeSignedRecord(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	a, err := protocol.DecodeApproval(s.Record)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPayload, err)
	}
	got, err := verifyRecord(s, protocol.DomainApproval, protocol.PayloadApproval, signers)
	if err != nil {
		return nil, err
	}
	return &Approval{Record: *a, Signers: got, Raw: raw}, nil
}

// ApprovalRecord decodes the record of a signed approval without checking
// its signatures.
func ApprovalRecord(raw []byte) (*protocol.Approval, error) {
	s, err := protocol.DecodeSignedRecord(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	a, err := protocol.DecodeApproval(s.Record)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPayload, err)
	}
	return a, nil
}
