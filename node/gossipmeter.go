package node

import (
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
)

// gossipMeter counts gossipsub RPC bytes sent and received (control
// messages included), for the mirrornet_gossip_bytes_total metric and the
// gossip-bandwidth benchmark.
type gossipMeter struct {
	sent, recv atomic.Int64
	// dropped counts RPCs gossipsub dropped before sending (a peer's
	// outbound queue was full); queueFull and throttled count messages
	// dropped before validation because the validation queue was full or
	// too many validations were in flight. Each is a message this node
	// did not pass on or did not see (until gossip repairs it).
	dropped, queueFull, throttled atomic.Int64
	// catchups counts the catch-up syncs queued when this mirror was
	// first grafted into a liveness mesh (see internal/catchup).
	catchups atomic.Int64
}

var _ pubsub.RawTracer = (*gossipMeter)(nil)

func (g *gossipMeter) RecvRPC(rpc *pubsub.RPC)                  { g.recv.Add(int64(proto.Size(&rpc.RPC))) }
func (g *gossipMeter) SendRPC(rpc *pubsub.RPC, _ peer.ID)       { g.sent.Add(int64(proto.Size(&rpc.RPC))) }
func (g *gossipMeter) OnNewOutboundStream(peer.ID, protocol.ID) {}
func (g *gossipMeter) OnClosedOutboundStream(peer.ID)           {}
func (g *gossipMeter) Join(string)                              {}
func (g *gossipMeter) Leave(string)                             {}
func (g *gossipMeter) Graft(peer.ID, string)                    {}
func (g *gossipMeter) Prune(peer.ID, string)                    {}
func (g *gossipMeter) ValidateMessage(*pubsub.Message)          {}
func (g *gossipMeter) DeliverMessage(*pubsub.Message)           {}
func (g *gossipMeter) RejectMessage(_ *pubsub.Message, reason string) {
	switch reason {
	case pubsub.RejectValidationQueueFull:
		g.queueFull.Add(1)
	case pubsub.RejectValidationThrottled:
		g.throttled.Add(1)
	}
}
func (g *gossipMeter) DuplicateMessage(*pubsub.Message)                     {}
func (g *gossipMeter) ThrottlePeer(peer.ID)                                 {}
func (g *gossipMeter) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
func (g *gossipMeter) DropRPC(*pubsub.RPC, peer.ID)                         { g.dropped.Add(1) }
func (g *gossipMeter) UndeliverableMessage(*pubsub.Message)                 {}
func (g *gossipMeter) AddPeer(peer.ID, protocol.ID)                         {}
func (g *gossipMeter) RemovePeer(peer.ID)                                   {}

// register exposes the counters on r.
func (g *gossipMeter) register(r *prometheus.Registry) {
	r.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "mirrornet_gossip_sent_bytes_total",
		Help: "Gossipsub RPC bytes sent (messages and control).",
	}, func() float64 { return float64(g.sent.Load()) }))
	r.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "mirrornet_gossip_received_bytes_total",
		Help: "Gossipsub RPC bytes received (messages and control).",
	}, func() float64 { return float64(g.recv.Load()) }))
	r.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "mirrornet_catchup_syncs_total",
		Help: "Catch-up syncs queued when this mirror was first grafted into a liveness mesh (at most one per refresh interval): what was published while it was outside every mesh.",
	}, func() float64 { return float64(g.catchups.Load()) }))
	for reason, c := range map[string]*atomic.Int64{
		"outbound_queue_full":   &g.dropped,
		"validation_queue_full": &g.queueFull,
		"validation_throttled":  &g.throttled,
	} {
		r.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "mirrornet_gossip_dropped_total",
			Help:        "Gossipsub RPCs dropped before sending (outbound_queue_full) and messages dropped before validation (validation_queue_full, validation_throttled).",
			ConstLabels: prometheus.Labels{"reason": reason},
		}, func() float64 { return float64(c.Load()) }))
	}
}
