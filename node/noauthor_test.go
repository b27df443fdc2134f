package node

import (
	"context"
	"crypto/sha256"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"

	"github.com/mirrornet/mirrornet/protocol"
)

// A peer written from the spec runs gossipsub with StrictNoSign and no
// author, as js-libp2p and rust-libp2p peers do; such a peer drops any
// message that carries from or seqno. It must receive a mirror's liveness
// statements, and they must carry neither field.
func TestGossipMessagesCarryNoAuthorOrSeqno(t *testing.T) {
	c := newCluster(t, 1)
	mirror := c.nodes[0]
	h, err := c.mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ps, err := pubsub.NewGossipSub(ctx, h,
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
		pubsub.WithNoAuthor(),
		pubsub.WithMessageIdFn(func(m *pb.Message) string {
			s := sha256.Sum256(m.Data)
			return string(s[:])
		}))
	if err != nil {
		t.Fatal(err)
	}
	topic, err := ps.Join(protocol.TopicLiveness)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := topic.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Cancel()
	if _, err := c.mn.ConnectPeers(h.ID(), mirror.ID()); err != nil {
		t.Fatal(err)
	}
	// A failure guard only: the mirror heartbeats every second or so.
	wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
	defer wcancel()
	for {
		m, err := sub.Next(wctx)
		if err != nil {
			t.Fatalf("no liveness statement reached a StrictNoSign, no-author peer: %v", err)
		}
		if m.From != nil || m.Seqno != nil || m.Signature != nil || m.Key != nil {
			t.Fatalf("gossip message carries author fields: from=%x seqno=%x", m.From, m.Seqno)
		}
		if m.ReceivedFrom == mirror.ID() {
			return
		}
	}
}
