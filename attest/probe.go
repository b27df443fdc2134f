package attest

import (
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/mirrornet/mirrornet/protocol"
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
			st.Probe, st.Seq, st.Time = p, p.Seq, time.UnixMilli(p.Time)
			return p.Observer, nil
		},
	})
}

// SignProbe signs a probe result. p.Observer must be key's peer ID and p
// must pass [protocol.ProbeResult.Validate].
func SignProbe(key crypto.PrivKey, p protocol.ProbeResult) ([]byte, error) {
	return signValidated(key, KindProbe, p.Observer, &p)
}
