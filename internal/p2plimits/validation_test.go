package p2plimits_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/mirrornet/mirrornet/internal/p2plimits"
)

// A burst of messages is validated by at most Workers validators at a
// time: the rest wait in the queue instead of each taking a core (with
// gossipsub's defaults all sixteen would run at once).
func TestValidationConcurrencyIsBounded(t *testing.T) {
	const burst = 16
	val := p2plimits.Validation{Workers: 1, Queue: 64}
	if err := val.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	mn := mocknet.New()
	defer mn.Close()
	recvH, err := mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	sendH, err := mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	recv, err := pubsub.NewGossipSub(ctx, recvH, val.PubSubOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	// The burst goes out once the sender's stream to the receiver is open
	// (gossipsub drops what it sends to a peer before that) and it knows
	// the receiver is in the topic.
	opened := &streamTracer{peer: recvH.ID(), open: make(chan struct{})}
	send, err := pubsub.NewGossipSub(ctx, sendH, pubsub.WithRawTracer(opened))
	if err != nil {
		t.Fatal(err)
	}

	var (
		mu                sync.Mutex
		cond              = sync.NewCond(&mu)
		inflight, maxSeen int
		entered, released int
	)
	validator := func(ctx context.Context, _ peer.ID, _ *pubsub.Message) pubsub.ValidationResult {
		mu.Lock()
		defer mu.Unlock()
		inflight++
		entered++
		me := entered
		maxSeen = max(maxSeen, inflight)
		cond.Broadcast()
		for released < me && ctx.Err() == nil {
			cond.Wait()
		}
		inflight--
		return pubsub.ValidationAccept
	}
	stop := context.AfterFunc(ctx, func() { mu.Lock(); cond.Broadcast(); mu.Unlock() })
	defer stop()
	if err := recv.RegisterTopicValidator("t", validator, val.ValidatorOptions()...); err != nil {
		t.Fatal(err)
	}
	rt, err := recv.Join("t")
	if err != nil {
		t.Fatal(err)
	}
	sub, err := rt.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Cancel()
	st, err := send.Join("t")
	if err != nil {
		t.Fatal(err)
	}
	evs, err := st.EventHandler()
	if err != nil {
		t.Fatal(err)
	}
	defer evs.Cancel()
	if _, err := mn.ConnectPeers(sendH.ID(), recvH.ID()); err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := evs.NextPeerEvent(ctx)
		if err != nil {
			t.Fatalf("the receiver never joined the topic: %v", err)
		}
		if ev.Type == pubsub.PeerJoin && ev.Peer == recvH.ID() {
			break
		}
	}
	select {
	case <-opened.open:
	case <-ctx.Done():
		t.Fatal("the sender never opened a stream to the receiver")
	}
	for i := range burst {
		if err := st.Publish(ctx, fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// Let the validators through one at a time, each once it has entered.
	mu.Lock()
	for i := 1; i <= burst; i++ {
		for entered < i && maxSeen <= val.Workers {
			if ctx.Err() != nil {
				mu.Unlock()
				t.Fatalf("only %d of %d messages reached the validator", entered, burst)
			}
			cond.Wait()
		}
		if maxSeen > val.Workers {
			break
		}
		released = i
		cond.Broadcast()
	}
	released = burst
	cond.Broadcast()
	got := maxSeen
	mu.Unlock()
	if got > val.Workers {
		t.Fatalf("%d validators ran at once, want at most %d", got, val.Workers)
	}
}

// streamTracer closes open when gossipsub opens its stream to peer.
type streamTracer struct {
	peer peer.ID
	open chan struct{}
	once sync.Once
}

func (s *streamTracer) OnNewOutboundStream(p peer.ID, _ protocol.ID) {
	if p == s.peer {
		s.once.Do(func() { close(s.open) })
	}
}
func (*streamTracer) OnClosedOutboundStream(peer.ID)                       {}
func (*streamTracer) Join(string)                                          {}
func (*streamTracer) Leave(string)                                         {}
func (*streamTracer) Graft(peer.ID, string)                                {}
func (*streamTracer) Prune(peer.ID, string)                                {}
func (*streamTracer) ValidateMessage(*pubsub.Message)                      {}
func (*streamTracer) DeliverMessage(*pubsub.Message)                       {}
func (*streamTracer) RejectMessage(*pubsub.Message, string)                {}
func (*streamTracer) DuplicateMessage(*pubsub.Message)                     {}
func (*streamTracer) ThrottlePeer(peer.ID)                                 {}
func (*streamTracer) RecvRPC(*pubsub.RPC)                                  {}
func (*streamTracer) SendRPC(*pubsub.RPC, peer.ID)                         {}
func (*streamTracer) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
func (*streamTracer) DropRPC(*pubsub.RPC, peer.ID)                         {}
func (*streamTracer) UndeliverableMessage(*pubsub.Message)                 {}
