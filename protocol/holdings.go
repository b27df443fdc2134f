package protocol

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// Holdings (see the package doc, section Holdings).
const (
	// HoldingsProtocolID is the pull protocol: one request frame
	// ([HoldingsRequest]), then one frame per signed [Holdings] statement
	// the responder holds of those asked for, and an empty frame.
	HoldingsProtocolID = "/mirrornet/holdings/1.0.0"
	// DomainHoldings and PayloadHoldings frame a holdings envelope.
	DomainHoldings  = "mirrornet-holdings"
	PayloadHoldings = "/mirrornet/holdings/1"
	// HTTPHoldingsPath serves the mirror's own current signed holdings
	// statement (one envelope, content type [HoldingsContentType]).
	HTTPHoldingsPath = "/mirrornet/v1/holdings"
	// HoldingsContentType is the media type of one signed statement.
	HoldingsContentType = "application/vnd.mirrornet.statement"

	// MaxHoldings bounds the bundles listed in one holdings statement.
	MaxHoldings = 4096
	// MaxHoldingsSize bounds one signed holdings statement in bytes (a
	// thousand CIDv1s are about 62 KB; 4096 of them fit).
	MaxHoldingsSize = 320 << 10
	// MaxHoldingsWant bounds the statements one pull request asks for.
	MaxHoldingsWant = 64
	// MaxHoldingsRequestSize bounds the request frame of the pull protocol.
	MaxHoldingsRequestSize = 16 << 10
	// MaxSyncHoldingsBytes bounds the holdings statements one sync
	// response carries in all (the rest are pulled).
	MaxSyncHoldingsBytes = 4 << 20

	// multihash prefix of a sha2-256 digest: code 0x12, length 32.
	holdingsHashCode, holdingsHashLen = 0x12, 32
)

// Holdings is a mirror's signed list of the bundles it holds: "peer Peer,
// at Time (sequence Seq), holds Bundles complete and verified". It travels
// as a signed envelope (domain [DomainHoldings], payload type
// [PayloadHoldings]) over [HoldingsProtocolID] and [HTTPHoldingsPath],
// never on gossip. A liveness statement names it by [HoldingsDigest] of
// its Bundles.
type Holdings struct {
	// Peer is the subject; it must be the signer.
	Peer string `json:"peer"`
	// Seq rises with every holdings statement the mirror signs.
	Seq uint64 `json:"seq"`
	// Time is the signing time in Unix milliseconds.
	Time int64 `json:"time"`
	// Bundles are the root CIDs held, sorted, without duplicates.
	Bundles []string `json:"bundles"`
}

func (h *Holdings) normalize() {
	if h.Bundles == nil {
		h.Bundles = []string{}
	}
}

// Validate checks the fields' shape (not signatures or time).
func (h *Holdings) Validate() error {
	switch {
	case h.Peer == "":
		return fmt.Errorf("%w: peer is empty", ErrInvalid)
	case h.Seq == 0:
		return fmt.Errorf("%w: seq is zero", ErrInvalid)
	case h.Time <= 0:
		return fmt.Errorf("%w: time is not positive", ErrInvalid)
	}
	if err := checkString("peer", h.Peer); err != nil {
		return err
	}
	if err := checkStrings("bundles", h.Bundles, MaxHoldings); err != nil {
		return err
	}
	if !sortedUnique(h.Bundles) {
		return fmt.Errorf("%w: bundles not sorted and unique", ErrInvalid)
	}
	return nil
}

// Digest is the holdings digest of h.Bundles (see [HoldingsDigest]).
func (h *Holdings) Digest() string { return HoldingsDigest(h.Bundles) }

// DecodeHoldings decodes and validates a canonical holdings payload.
func DecodeHoldings(data []byte) (*Holdings, error) {
	var h Holdings
	if err := DecodeCanonical(data, &h); err != nil {
		return nil, err
	}
	if h.Bundles == nil {
		return nil, fmt.Errorf("%w: null list", ErrNonCanonical)
	}
	if err := h.Validate(); err != nil {
		return nil, err
	}
	return &h, nil
}

// HoldingsDigest is the digest a liveness statement carries for a set of
// bundles (sorted, without duplicates): the multihash (sha2-256: 0x12 0x20
// then 32 bytes) of
//
//	uvarint(len(cid)) || cid   for each CID string, in sorted order
//
// written in lowercase hex (68 characters, starting "1220"). The empty set
// has a digest too (of no bytes).
func HoldingsDigest(sorted []string) string {
	h := sha256.New()
	var hdr [binary.MaxVarintLen64]byte
	for _, c := range sorted {
		n := binary.PutUvarint(hdr[:], uint64(len(c)))
		h.Write(hdr[:n])
		h.Write([]byte(c))
	}
	out := make([]byte, 2, 2+holdingsHashLen)
	out[0], out[1] = holdingsHashCode, holdingsHashLen
	return hex.EncodeToString(h.Sum(out))
}

// validDigest reports whether d has the form of a holdings digest.
func validDigest(d string) bool {
	if len(d) != 2*(2+holdingsHashLen) || d[:4] != "1220" {
		return false
	}
	for i := 0; i < len(d); i++ {
		if c := d[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// HoldingsRef names one holdings statement: the subject's peer ID and the
// digest its liveness statement carries.
type HoldingsRef struct {
	Peer   string `json:"peer"`
	Digest string `json:"digest"`
}

// HoldingsRequest is the request of [HoldingsProtocolID]: the holdings
// statements wanted (at most [MaxHoldingsWant]).
type HoldingsRequest struct {
	Want []HoldingsRef `json:"want"`
}

// Validate checks the request's shape.
func (r *HoldingsRequest) Validate() error {
	if len(r.Want) == 0 || len(r.Want) > MaxHoldingsWant {
		return fmt.Errorf("%w: want has %d entries (1 to %d)", ErrInvalid, len(r.Want), MaxHoldingsWant)
	}
	for _, w := range r.Want {
		if w.Peer == "" || checkString("peer", w.Peer) != nil {
			return fmt.Errorf("%w: want names no peer", ErrInvalid)
		}
		if !validDigest(w.Digest) {
			return fmt.Errorf("%w: digest %.80q is not a sha2-256 multihash in hex", ErrInvalid, w.Digest)
		}
	}
	return nil
}

// DecodeHoldingsRequest decodes and validates a pull request.
func DecodeHoldingsRequest(data []byte) (*HoldingsRequest, error) {
	if len(data) > MaxHoldingsRequestSize {
		return nil, fmt.Errorf("%w: request of %d bytes", ErrTooLarge, len(data))
	}
	var r HoldingsRequest
	if err := DecodeCanonical(data, &r); err != nil {
		return nil, err
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}
