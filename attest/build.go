package attest

import (
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/mirrornet/mirrornet/protocol"
)

// Build attestations have no maximum age: "commit Y builds to CID X" stays
// true. Replays are kept out by SeqGuard (per builder sequence numbers).
func init() {
	register(kindSpec{
		kind: KindBuild, domain: protocol.DomainBuild, payloadType: protocol.PayloadBuild,
		decode: func(payload []byte, st *Statement) (string, error) {
			b, err := protocol.DecodeBuildAttestation(payload)
			if err != nil {
				return "", err
			}
			st.Build, st.Seq, st.Time = b, b.Seq, time.UnixMilli(b.Time)
			return b.Builder, nil
		},
	})
}

// SignBuild signs a build attestation. b.Builder must be key's peer ID.
// Verify it back with [Verify] (Kind KindBuild, field Build).
func SignBuild(key crypto.PrivKey, b protocol.BuildAttestation) ([]byte, error) {
	return signValidated(key, KindBuild, b.Builder, &b)
}
