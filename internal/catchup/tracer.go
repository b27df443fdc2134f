package catchup

import (
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Tracer is a gossipsub raw tracer that feeds one topic's grafts and
// prunes to a Trigger and calls Sync with the peer when a catch-up is due.
// gossipsub calls it from its event loop: Sync must not block (queue the
// sync, do not run it).
type Tracer struct {
	Topic   string
	Trigger *Trigger
	Now     func() time.Time
	Sync    func(peer.ID)
}

var _ pubsub.RawTracer = (*Tracer)(nil)

func (t *Tracer) Graft(p peer.ID, topic string) {
	if topic == t.Topic && t.Trigger.Graft(p, t.Now()) {
		t.Sync(p)
	}
}

func (t *Tracer) Prune(p peer.ID, topic string) {
	if topic == t.Topic {
		t.Trigger.Leave(p)
	}
}

func (t *Tracer) RemovePeer(p peer.ID) { t.Trigger.Leave(p) }

func (t *Tracer) Leave(topic string) {
	if topic == t.Topic {
		t.Trigger.Reset()
	}
}

func (t *Tracer) AddPeer(peer.ID, protocol.ID)                         {}
func (t *Tracer) OnNewOutboundStream(peer.ID, protocol.ID)             {}
func (t *Tracer) OnClosedOutboundStream(peer.ID)                       {}
func (t *Tracer) Join(string)                                          {}
func (t *Tracer) ValidateMessage(*pubsub.Message)                      {}
func (t *Tracer) DeliverMessage(*pubsub.Message)                       {}
func (t *Tracer) RejectMessage(*pubsub.Message, string)                {}
func (t *Tracer) DuplicateMessage(*pubsub.Message)                     {}
func (t *Tracer) ThrottlePeer(peer.ID)                                 {}
func (t *Tracer) RecvRPC(*pubsub.RPC)                                  {}
func (t *Tracer) SendRPC(*pubsub.RPC, peer.ID)                         {}
func (t *Tracer) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
func (t *Tracer) DropRPC(*pubsub.RPC, peer.ID)                         {}
func (t *Tracer) UndeliverableMessage(*pubsub.Message)                 {}
