package node

import (
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/health"
	"github.com/mirrornet/mirrornet/internal/swim"
	"github.com/mirrornet/mirrornet/internal/swim/swimp2p"
	"github.com/mirrornet/mirrornet/protocol"
)

// This file wires the failure detector (internal/swim) and its ping
// protocol (internal/swim/swimp2p) to the node: whom to probe, how a
// suspicion is signed and published, and the refutation of suspicions
// about this mirror.

// livenessWiring is the detector's state in the node.
type livenessWiring struct {
	det  *swim.Detector
	ping *swimp2p.Service

	badInput *prometheus.CounterVec
	probes   *prometheus.CounterVec
}

func (n *Node) startLiveness() error {
	cfg := swim.ForPeriod(n.prof.Heartbeat)
	w := &n.live
	w.badInput = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mirrornet_liveness_bad_input_total",
		Help: "Failure-detector input refused, by reason: ping_flood (a peer over the probe rate limit), ping_malformed.",
	}, []string{"reason"})
	w.probes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mirrornet_liveness_probes_total",
		Help: "Failure-detector probes sent by this mirror, by outcome: ack, indirect_ack, suspect.",
	}, []string{"outcome"})
	ping, err := swimp2p.New(swimp2p.Config{
		Host: n.host, View: pingView{n}, Probe: cfg,
		// An honest peer sends us about one direct probe per round and a
		// few indirect ones per failed probe anywhere: two per period with
		// a burst of ten is far above that.
		Rate: 2 / n.prof.Heartbeat.Seconds(), Burst: 10,
		Log:        n.log,
		OnBadInput: func(reason string) { w.badInput.WithLabelValues(reason).Inc() },
		Blocked:    n.blackhole,
		Now:        n.clock,
	})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	w.ping = ping
	pingBytes := func(dir string, f func() int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "mirrornet_liveness_ping_" + dir + "_bytes_total", Help: "Ping protocol payload bytes " + dir + " (frames; stream set-up not included).",
		}, func() float64 { return float64(f()) })
	}
	n.registry.MustRegister(w.badInput, w.probes, pingBytes("sent", ping.BytesSent), pingBytes("received", ping.BytesReceived))
	for _, r := range []string{swimp2p.ReasonFlood, swimp2p.ReasonMalformed} {
		w.badInput.WithLabelValues(r)
	}
	ping.Start(n.ctx)
	w.det = swim.New(cfg, ping, swim.Members{Live: n.neighbourhood(cfg), Dead: n.deadMirrors, Rank: n.liveRank}, n.suspect,
		swim.WithObserver(func(_ peer.ID, o swim.Outcome) { w.probes.WithLabelValues(string(o)).Inc() }),
		// The heartbeat loop measures how late this mirror's timers fire
		// and tells the view; probes read the same figure.
		swim.WithLocalLag(n.view.LocalLag))
	return nil
}

// pingView is swimp2p.View over the node's view.
type pingView struct{ n *Node }

func (v pingView) Lookup(p peer.ID) (swimp2p.Target, bool) {
	n := v.n
	now := n.clock()
	n.mu.Lock()
	m, ok := n.view.Mirror(p, now)
	n.mu.Unlock()
	if !ok {
		return swimp2p.Target{}, false
	}
	t := swimp2p.Target{Seq: m.Seq, Suspect: m.State == health.StateSuspect || m.State == health.StateDead}
	if m.Liveness != nil {
		t.Addrs = m.Liveness.Addrs
	}
	return t, true
}

func (v pingView) Seq() uint64 {
	v.n.mu.Lock()
	defer v.n.mu.Unlock()
	return v.n.seq
}

func (v pingView) Refute(peer.ID, uint64) { v.n.announce() }

// neighbourhood returns the detector's Live func: the mirrors this one
// probes (swim.Neighbourhood of the alive and suspect mirrors). The ring
// is recomputed only when those change (health.View.Members: a mirror
// joined, went, turned dead or came back), so a refresh anywhere in a
// network of thousands costs a mirror nothing here.
func (n *Node) neighbourhood(cfg swim.Config) func() []peer.ID {
	var (
		cached []peer.ID
		gen    uint64
	)
	return func() []peer.ID {
		m := n.view.Members(n.clock())
		if cached == nil || m.Gen != gen {
			cached, gen = swim.Neighbourhood(n.id, m.Live, cfg.Monitors), m.Gen
		}
		return cached
	}
}

// deadMirrors are the dead mirrors not yet forgotten (this one excluded;
// shared: callers must not modify it).
func (n *Node) deadMirrors() []peer.ID {
	dead := n.view.Members(n.clock()).Dead
	if !slices.Contains(dead, n.id) {
		return dead
	}
	return slices.DeleteFunc(slices.Clone(dead), func(p peer.ID) bool { return p == n.id })
}

// liveRank is this mirror's place among the alive and suspect mirrors
// (itself included) in peer ID order, and their number: the revival pings
// of the mirrors on one side of a healed partition take turns by it
// (swim.ReviveTarget).
func (n *Node) liveRank() (rank, of int) {
	live := n.view.Members(n.clock()).Live
	i, found := slices.BinarySearch(live, n.id)
	if !found {
		return i, len(live) + 1
	}
	return i, len(live)
}

// mirrorsIn lists the mirrors other than this one in any of states.
func (n *Node) mirrorsIn(states ...health.State) []peer.ID {
	now := n.clock()
	ms := n.view.Mirrors(now)
	var out []peer.ID
	for _, m := range ms {
		if m.Peer == n.id {
			continue
		}
		for _, s := range states {
			if m.State == s {
				out = append(out, m.Peer)
				break
			}
		}
	}
	return out
}

// suspect signs and publishes a suspicion about p's current statement,
// unless one stands already.
func (n *Node) suspect(p peer.ID) {
	now := n.clock()
	n.mu.Lock()
	m, ok := n.view.Mirror(p, now)
	_, standing := n.view.Suspicion(p)
	n.mu.Unlock()
	if !ok || standing || m.State == health.StateLeft || m.State == health.StateDead {
		return
	}
	raw, err := attest.SignSuspicion(n.key, protocol.Suspicion{
		Observer: n.id.String(), Subject: p.String(), Incarnation: m.Seq, Time: now.UnixMilli(),
	})
	if err != nil {
		n.log.Error("sign suspicion", "err", err)
		return
	}
	n.log.Info("mirror did not answer direct or indirect probes: suspect", "peer", p, "seq", m.Seq)
	if t := n.topics[protocol.TopicSuspicion]; t != nil {
		if err := t.Publish(n.ctx, raw); err != nil && n.ctx.Err() == nil {
			n.log.Warn("publish suspicion", "err", err)
		}
	}
}

// acceptSuspicionLocked applies a verified suspicion (n.mu held). One
// about this mirror is answered with a fresh liveness statement (the
// refutation).
func (n *Node) acceptSuspicionLocked(st *attest.Statement, now time.Time) error {
	if st.Suspicion.Subject == n.id.String() {
		if st.Seq >= n.seq {
			n.log.Info("refuting a suspicion about this mirror", "by", st.Signer, "seq", st.Seq)
			n.announce()
		}
		return nil
	}
	_, err := n.view.AddSuspicion(st, now)
	return err
}
