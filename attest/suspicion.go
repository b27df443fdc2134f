package attest

import (
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/mirrornet/mirrornet/protocol"
)

// KindSuspicion is a failure detector's report (protocol.Suspicion).
const KindSuspicion Kind = "suspicion"

// Suspicions age like liveness statements: an old one says nothing about
// the subject now. Their Seq is the subject's incarnation they are about.
func init() {
	register(kindSpec{
		kind: KindSuspicion, domain: protocol.DomainSuspicion, payloadType: protocol.PayloadSuspicion,
		maxAge: protocol.MaxLivenessAge,
		decode: func(payload []byte, st *Statement) (string, error) {
			s, err := protocol.DecodeSuspicion(payload)
			if err != nil {
				return "", err
			}
			st.Suspicion, st.Seq, st.Time = s, s.Incarnation, time.UnixMilli(s.Time)
			return s.Observer, nil
		},
	})
}

// SignSuspicion signs a suspicion. s.Observer must be key's peer ID.
func SignSuspicion(key crypto.PrivKey, s protocol.Suspicion) ([]byte, error) {
	return signValidated(key, KindSuspicion, s.Observer, &s)
}
