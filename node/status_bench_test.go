package node

import (
	"crypto/ed25519"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/protocol"
)

// fillView accepts n liveness statements from fresh keys, each listing
// bundles bundles, and returns how many the view took.
func fillView(b *testing.B, n *Node, count, bundles int) int {
	var list []string
	for i := range bundles {
		list = append(list, fmt.Sprintf("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa%06d", i))
	}
	list = protocol.SortUnique(list)
	now := n.clock()
	seed := make([]byte, ed25519.SeedSize)
	took := 0
	for i := range count {
		seed[0], seed[1], seed[2] = byte(i), byte(i>>8), 0x5a
		key, _ := crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(seed))
		id, _ := peer.IDFromPrivateKey(key)
		raw, err := attest.SignLiveness(key, protocol.Liveness{Peer: id.String(), State: protocol.StateUp, Seq: 1,
			Time: now.UnixMilli(), Addrs: []string{"/ip4/192.0.2.1/tcp/4001"}, HTTP: "http://192.0.2.1:8080", Bundles: list, Version: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		st, err := attest.Verify(raw, now.Add(time.Millisecond))
		if err != nil {
			b.Fatal(err)
		}
		if n.accept(st) == nil {
			took++
		}
	}
	return took
}

// BenchmarkStatus is the cost of one /api/v1/status response (written
// mirror by mirror) against the size of the view: the baseline is a view
// of this node alone; "strangers" is a flood of 10,000 small statements
// (kept: within --max-mirrors and the byte budget); "fat" is 10,000
// near-limit statements, of which the byte budget keeps about 200.
func BenchmarkStatus(b *testing.B) {
	for _, tc := range []struct {
		name           string
		count, bundles int
	}{{"self-only", 0, 0}, {"strangers-10000-small", 10_000, 1}, {"fat-10000", 10_000, protocol.MaxBundles}} {
		b.Run(tc.name, func(b *testing.B) {
			c := newCluster(b, 1)
			n := c.nodes[0]
			took := fillView(b, n, tc.count, tc.bundles)
			b.ReportMetric(float64(took+1), "mirrors")
			b.ResetTimer()
			for b.Loop() {
				if err := n.writeStatus(io.Discard); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
