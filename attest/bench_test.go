package attest

import (
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/protocol"
)

// BenchmarkVerifyLiveness measures the full verification of one liveness
// statement (envelope decode, canonical checks, signature, payload) against
// the bare Ed25519 signature check it contains: every mirror pays this once
// per mirror per heartbeat.
func BenchmarkVerifyLiveness(b *testing.B) {
	sk, _, _ := crypto.GenerateEd25519Key(nil)
	id, _ := peer.IDFromPrivateKey(sk)
	now := time.Now()
	raw, err := SignLiveness(sk, protocol.Liveness{
		Peer: id.String(), State: protocol.StateUp, Seq: 1, Time: now.UnixMilli(),
		Addrs:   []string{"/ip4/10.0.0.1/tcp/4001", "/ip4/10.0.0.1/udp/4001/quic-v1"},
		HTTP:    "http://10.0.0.1:8080",
		Bundles: []string{"bafybeiaukdfvhncb7e6isjm5noupejobvg4yyh6a6vi42yfjh4umed3xqu"},
		Version: "v0.1.0",
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Verify", func(b *testing.B) {
		for range b.N {
			if _, err := Verify(raw, now); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ed25519-baseline", func(b *testing.B) {
		pub, priv, _ := ed25519.GenerateKey(nil)
		msg := make([]byte, 300)
		sig := ed25519.Sign(priv, msg)
		for range b.N {
			if !ed25519.Verify(pub, msg, sig) {
				b.Fatal("bad")
			}
		}
	})
}
