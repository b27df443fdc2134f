package node

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/protocol"
)

// The streamed status is byte for byte what encoding Status() gives.
func TestWriteStatusMatchesEncode(t *testing.T) {
	c := newCluster(t, 1)
	n := c.nodes[0]
	for range 2 {
		want := &bytes.Buffer{}
		enc := json.NewEncoder(want)
		enc.SetIndent("", "  ")
		if err := enc.Encode(n.Status()); err != nil {
			t.Fatal(err)
		}
		got := &bytes.Buffer{}
		if err := n.writeStatus(got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("streamed status differs:\n%s\nwant:\n%s", got, want)
		}
		// Second round with two more mirrors in the view.
		for range 2 {
			sk, _, _ := crypto.GenerateEd25519Key(nil)
			id, _ := peer.IDFromPrivateKey(sk)
			now := n.clock()
			raw, err := attest.SignLiveness(sk, protocol.Liveness{Peer: id.String(), State: protocol.StateUp, Seq: 1, Time: now.UnixMilli(), Addrs: []string{}, Bundles: []string{}})
			if err != nil {
				t.Fatal(err)
			}
			st, err := attest.Verify(raw, now.Add(time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			if err := n.accept(st); err != nil {
				t.Fatal(err)
			}
		}
	}
}
