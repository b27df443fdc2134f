package attest

import (
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/mirrornet/mirrornet/protocol"
)

// KindHoldings is a mirror's signed list of the bundles it holds
// (protocol.Holdings). It has no age limit: it stays current for as long
// as the mirror's fresh liveness statements name its digest.
const KindHoldings Kind = "holdings"

// ErrHoldings: a holdings statement is genuine but is not the one asked
// for: another subject, or a list whose digest is not the one a liveness
// statement named. Reject-class: whoever sent it in answer to a request
// for that digest sent the wrong thing.
var ErrHoldings = errors.New("attest: holdings statement does not match")

func init() {
	register(kindSpec{
		kind: KindHoldings, domain: protocol.DomainHoldings, payloadType: protocol.PayloadHoldings,
		maxSize: protocol.MaxHoldingsSize,
		decode: func(payload []byte, st *Statement) (string, error) {
			h, err := protocol.DecodeHoldings(payload)
			if err != nil {
				return "", err
			}
			st.Holdings, st.Seq, st.Time = h, h.Seq, time.UnixMilli(h.Time)
			return h.Peer, nil
		},
	})
}

// SignHoldings signs a holdings statement. h.Peer must be key's peer ID;
// h.Bundles must be sorted and unique (see protocol.SortUnique).
func SignHoldings(key crypto.PrivKey, h protocol.Holdings) ([]byte, error) {
	return signValidated(key, KindHoldings, h.Peer, &h)
}

// VerifyHoldings is [Verify] for a holdings statement fetched for one
// reference: it must be a holdings statement signed by ref.Peer whose
// list has digest ref.Digest. Pure, like Verify.
func VerifyHoldings(raw []byte, ref protocol.HoldingsRef, now time.Time) (*Statement, error) {
	st, err := Verify(raw, now)
	if err != nil {
		return nil, err
	}
	switch {
	case st.Kind != KindHoldings:
		return nil, fmt.Errorf("%w: a %s statement, not holdings", ErrKind, st.Kind)
	case st.Signer.String() != ref.Peer:
		return nil, fmt.Errorf("%w: signed by %s, wanted %s", ErrHoldings, st.Signer, ref.Peer)
	case st.Holdings.Digest() != ref.Digest:
		return nil, fmt.Errorf("%w: digest %s, wanted %s", ErrHoldings, st.Holdings.Digest(), ref.Digest)
	}
	return st, nil
}
