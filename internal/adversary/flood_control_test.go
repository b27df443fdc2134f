package adversary_test

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"io"
	"sync"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/network"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	"google.golang.org/protobuf/proto"

	"github.com/mirrornet/mirrornet/protocol"
)

// After a burst of spam, an honest peer's gossip carries many message IDs:
// one IHAVE per topic per heartbeat, split into several frames by the
// frame size limit, a few topics: dozens of IHAVE messages in one
// heartbeat. gossipsub's default (10 per heartbeat) would ignore the rest,
// and with them the honest messages they announce. The victim answers
// every one of sixteen IHAVEs sent within one heartbeat with an IWANT
// (sixteen: more than the default lets through, fewer than the victim's
// outbound queue to us holds, so no IWANT is dropped on a slow machine).
func TestFloodHonestIHaveBurstIsNotCutOff(t *testing.T) {
	const ihaves = 16
	mn := mocknet.New()
	t.Cleanup(func() { mn.Close() })
	v := newVictim(t, mn, nil, "", nil)
	h, _ := newHost(t, mn)

	var (
		mu     sync.Mutex
		cond   = sync.NewCond(&mu)
		wanted = map[string]bool{}
		hello  = make(chan struct{})
		helloO sync.Once
	)
	// Read what the victim sends us: its IWANTs.
	h.SetStreamHandler(pubsub.GossipSubID_v11, func(s network.Stream) {
		// The victim opens this stream once it has taken us on as a peer
		// (before that, gossipsub has nowhere to send an IWANT and drops
		// it): the burst waits for it.
		helloO.Do(func() { close(hello) })
		r := bufio.NewReader(s)
		for {
			n, err := binary.ReadUvarint(r)
			if err != nil || n > 1<<20 {
				s.Reset()
				return
			}
			b := make([]byte, n)
			if _, err := io.ReadFull(r, b); err != nil {
				return
			}
			var rpc pb.RPC
			if proto.Unmarshal(b, &rpc) != nil {
				continue
			}
			mu.Lock()
			for _, iw := range rpc.GetControl().GetIwant() {
				for _, id := range iw.GetMessageIDs() {
					wanted[id] = true
				}
			}
			cond.Broadcast()
			mu.Unlock()
		}
	})
	if _, err := mn.ConnectPeers(h.ID(), v.ID()); err != nil {
		t.Fatal(err)
	}
	w := newGossipWriterOnly(t, h, v.ID())
	select {
	case <-hello:
	case <-time.After(time.Minute): // a failure guard only
		t.Fatal("the victim never opened its gossip stream to the attacker")
	}

	topic := protocol.TopicLiveness
	for range ihaves {
		id := make([]byte, 32)
		rand.Read(id)
		w.write(t, &pb.RPC{Control: &pb.ControlMessage{Ihave: []*pb.ControlIHave{{TopicID: &topic, MessageIDs: []string{string(id)}}}}})
	}
	deadline := time.Now().Add(time.Minute)
	stop := time.AfterFunc(time.Minute, func() { mu.Lock(); cond.Broadcast(); mu.Unlock() })
	defer stop.Stop()
	mu.Lock()
	defer mu.Unlock()
	for len(wanted) < ihaves {
		if time.Now().After(deadline) {
			t.Fatalf("the victim asked for %d of the %d message IDs announced in one burst of IHAVEs", len(wanted), ihaves)
		}
		cond.Wait()
	}
}
