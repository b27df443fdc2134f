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
}

var _ pubsub.RawTracer = (*gossipMeter)(nil)

func (g *gossipMeter) RecvRPC(rpc *pubsub.RPC)                              { g.recv.Add(int64(proto.Size(&rpc.RPC))) }
func (g *gossipMeter) SendRPC(rpc *pubsub.RPC, _ peer.ID)                   { g.sent.Add(int64(proto.Size(&rpc.RPC))) }
func (g *gossipMeter) OnNewOutboundStream(peer.ID, protocol.ID)             {}
func (g *gossipMeter) OnClosedOutboundStream(peer.ID)                       {}
func (g *gossipMeter) Join(string)                                          {}
func (g *gossipMeter) Leave(string)                                         {}
func (g *gossipMeter) Graft(peer.ID, string)                                {}
func (g *gossipMeter) Prune(peer.ID, string)                                {}
func (g *gossipMeter) ValidateMessage(*pubsub.Message)                      {}
func (g *gossipMeter) DeliverMessage(*pubsub.Message)                       {}
func (g *gossipMeter) RejectMessage(*pubsub.Message, string)                {}
func (g *gossipMeter) DuplicateMessage(*pubsub.Message)                     {}
func (g *gossipMeter) ThrottlePeer(peer.ID)                                 {}
func (g *gossipMeter) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
func (g *gossipMeter) DropRPC(*pubsub.RPC, peer.ID)                         {}
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
}
