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

// BenchmarkVerifyProbe measures the verification of one passing probe
// result with its two receipts (root and leaf) against a liveness
// statement, the baseline every mirror already pays per heartbeat: the
// receipts are what binding a pass to a real fetch costs each receiver.
func BenchmarkVerifyProbe(b *testing.B) {
	okey, _, _ := crypto.GenerateEd25519Key(nil)
	obs, _ := peer.IDFromPrivateKey(okey)
	tkey, _, _ := crypto.GenerateEd25519Key(nil)
	target, _ := peer.IDFromPrivateKey(tkey)
	now := time.Now()
	var round uint64
	for protocol.IsCanary(protocol.ProbeNonce(1, round, target.String(), obs.String())) {
		round++
	}
	nonce := protocol.ProbeNonce(1, round, target.String(), obs.String())
	root := "bafybeiaukdfvhncb7e6isjm5noupejobvg4yyh6a6vi42yfjh4umed3xqu"
	var receipts []string
	for _, c := range []string{root, "bafkreifdeyg3zpegeuv35qtd7auexsn6v6frhys2fh2ijql4tnwogw3eie"} {
		r, err := SignProbeReceipt(tkey, obs.String(), nonce, c, now)
		if err != nil {
			b.Fatal(err)
		}
		receipts = append(receipts, r)
	}
	raw, err := SignProbe(okey, protocol.ProbeResult{
		Observer: obs.String(), Target: target.String(), Epoch: 1, Round: round, Seq: 1, Time: now.UnixMilli(),
		Bundle: root, Challenge: "descent:" + hexNonce(nonce) + ":3.1,0.7", Outcome: protocol.OutcomePass,
		LatencyMS: 12, Addr: "203.0.113.7", Receipts: receipts,
	})
	if err != nil {
		b.Fatal(err)
	}
	live, err := SignLiveness(okey, protocol.Liveness{Peer: obs.String(), State: protocol.StateUp, Seq: 1, Time: now.UnixMilli(),
		Addrs: []string{"/ip4/10.0.0.1/tcp/4001"}, HTTP: "http://10.0.0.1:8080", Bundles: []string{root}, Version: "v0.1.0"})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("probe-with-receipts", func(b *testing.B) {
		for range b.N {
			if _, err := Verify(raw, now); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("liveness-baseline", func(b *testing.B) {
		for range b.N {
			if _, err := Verify(live, now); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func hexNonce(n [16]byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 32)
	for i, b := range n {
		out[2*i], out[2*i+1] = digits[b>>4], digits[b&15]
	}
	return string(out)
}
