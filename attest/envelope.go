package attest

import (
	"crypto/ed25519"
	"encoding/binary"
	"sync"

	"github.com/mirrornet/mirrornet/protocol"
)

// The fast path of Verify. A statement is a libp2p signed envelope
// (core/record), and Verify accepts only its canonical encoding with an
// Ed25519 key, which is one fixed layout:
//
//	0x0a 0x24                  public_key, 36 bytes:
//	  0x08 0x01 0x12 0x20 <32> KeyType Ed25519, then the key's 32 bytes
//	0x12 <uvarint n> <n>       payload_type (non-empty)
//	0x1a <uvarint n> <n>       payload (non-empty)
//	0x2a <uvarint n> <n>       signature (non-empty)
//
// with minimal varints and nothing else. parseEnvelope reads that layout
// in place (the fields are slices of raw, nothing is copied) and
// checkSignature verifies it with crypto/ed25519 over the same bytes
// go-libp2p signs. Anything else goes to the general path (record's
// decoder, re-encoding, key types), which refuses it with the reason:
// the two paths accept exactly the same statements
// (FuzzVerifyPathsAgree), but a flood of valid statements no longer
// costs five copies of each in garbage.

// envelopeFields are the fields of a canonical Ed25519 envelope, slices
// of the statement's bytes.
type envelopeFields struct {
	key         []byte // the marshalled public key (36 bytes)
	pub         []byte // the Ed25519 key itself (32 bytes)
	payloadType []byte
	payload     []byte
	signature   []byte
}

// parseEnvelope reads raw when it has the canonical Ed25519 layout.
func parseEnvelope(raw []byte) (envelopeFields, bool) {
	const keyLen = 36
	if len(raw) < 2+keyLen || raw[0] != 0x0a || raw[1] != keyLen {
		return envelopeFields{}, false
	}
	key := raw[2 : 2+keyLen]
	if key[0] != 0x08 || key[1] != 0x01 || key[2] != 0x12 || key[3] != 0x20 {
		return envelopeFields{}, false
	}
	f := envelopeFields{key: key, pub: key[4:]}
	rest := raw[2+keyLen:]
	var ok bool
	if f.payloadType, rest, ok = bytesField(rest, 0x12); !ok {
		return envelopeFields{}, false
	}
	if f.payload, rest, ok = bytesField(rest, 0x1a); !ok {
		return envelopeFields{}, false
	}
	if f.signature, rest, ok = bytesField(rest, 0x2a); !ok || len(rest) != 0 {
		return envelopeFields{}, false
	}
	return f, true
}

// bytesField reads one non-empty length-delimited field with tag.
func bytesField(b []byte, tag byte) (val, rest []byte, ok bool) {
	if len(b) == 0 || b[0] != tag {
		return nil, nil, false
	}
	n, m := binary.Uvarint(b[1:])
	if m <= 0 || m != varintLen(n) || n == 0 || n > uint64(len(b)-1-m) {
		return nil, nil, false
	}
	end := 1 + m + int(n)
	return b[1+m : end], b[end:], true
}

func varintLen(n uint64) int {
	var buf [binary.MaxVarintLen64]byte
	return binary.PutUvarint(buf[:], n)
}

// signBufs hold the bytes an envelope's signature covers, at most a
// statement's size plus the domain (larger ones are not kept).
var signBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// checkSignature verifies f's signature as go-libp2p's record package
// does: over uvarint-prefixed domain, payload type and payload.
func checkSignature(f envelopeFields, domain string) bool {
	bp := signBufs.Get().(*[]byte)
	b := (*bp)[:0]
	b = binary.AppendUvarint(b, uint64(len(domain)))
	b = append(b, domain...)
	b = binary.AppendUvarint(b, uint64(len(f.payloadType)))
	b = append(b, f.payloadType...)
	b = binary.AppendUvarint(b, uint64(len(f.payload)))
	b = append(b, f.payload...)
	ok := ed25519.Verify(ed25519.PublicKey(f.pub), b, f.signature)
	if cap(b) <= 2*protocol.MaxStatementSize {
		*bp = b[:0]
		signBufs.Put(bp)
	}
	return ok
}
