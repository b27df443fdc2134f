package node

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/health"
	"github.com/mirrornet/mirrornet/internal/swim"
	"github.com/mirrornet/mirrornet/protocol"
)

// This file wires the failure detector (internal/swim) to the host: the
// ping protocol's client and server, suspicion statements, and the
// refutation of suspicions about this mirror.

// livenessWiring is the detector's state in the node.
type livenessWiring struct {
	det *swim.Detector

	mu       sync.Mutex
	limiter  swim.Limiter
	loggedAt map[peer.ID]time.Time // last flood log line per peer

	badInput *prometheus.CounterVec
	probes   *prometheus.CounterVec
	// sent and recv count ping protocol payload bytes (frames with their
	// length prefixes; stream set-up not included).
	sent, recv atomic.Int64
}

// Reasons counted by mirrornet_liveness_bad_input_total.
const (
	badPingFlood     = "ping_flood"
	badPingMalformed = "ping_malformed"
)

func (n *Node) startLiveness() error {
	cfg := swim.ForPeriod(n.prof.Heartbeat)
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	w := &n.live
	// An honest peer sends us about one direct probe per round and a
	// few indirect ones per failed probe anywhere: two per period with
	// a burst of ten is far above that.
	w.limiter = swim.Limiter{Rate: 2 / n.prof.Heartbeat.Seconds(), Burst: 10}
	w.loggedAt = map[peer.ID]time.Time{}
	w.badInput = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mirrornet_liveness_bad_input_total",
		Help: "Failure-detector input refused, by reason: ping_flood (a peer over the probe rate limit), ping_malformed.",
	}, []string{"reason"})
	w.probes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mirrornet_liveness_probes_total",
		Help: "Failure-detector probes sent by this mirror, by outcome: ack, indirect_ack, suspect.",
	}, []string{"outcome"})
	pingBytes := func(dir string, c *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "mirrornet_liveness_ping_" + dir + "_bytes_total", Help: "Ping protocol payload bytes " + dir + " (frames; stream set-up not included).",
		}, func() float64 { return float64(c.Load()) })
	}
	n.registry.MustRegister(w.badInput, w.probes, pingBytes("sent", &w.sent), pingBytes("received", &w.recv))
	for _, r := range []string{badPingFlood, badPingMalformed} {
		w.badInput.WithLabelValues(r)
	}
	n.host.SetStreamHandler(protocol.PingProtocolID, n.handlePing)
	w.det = swim.New(cfg, pingTransport{n}, swim.Members{Live: n.probeTargets, Dead: n.deadMirrors}, n.suspect,
		swim.WithObserver(func(_ peer.ID, o swim.Outcome) { w.probes.WithLabelValues(string(o)).Inc() }))
	return nil
}

// probeTargets are the alive and suspect mirrors other than this one.
func (n *Node) probeTargets() []peer.ID { return n.mirrorsIn(health.StateAlive, health.StateSuspect) }

// deadMirrors are the dead mirrors not yet forgotten.
func (n *Node) deadMirrors() []peer.ID { return n.mirrorsIn(health.StateDead) }

func (n *Node) mirrorsIn(states ...health.State) []peer.ID {
	now := n.clock()
	n.mu.Lock()
	ms := n.view.Mirrors(now)
	n.mu.Unlock()
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

// acceptSuspicion applies a verified suspicion (n.mu held). One about this
// mirror is answered with a fresh liveness statement (the refutation).
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

// pingTransport is swim.Transport over PingProtocolID.
type pingTransport struct{ n *Node }

func (t pingTransport) Ping(ctx context.Context, target peer.ID) error {
	req := protocol.Ping{}
	n := t.n
	now := n.clock()
	n.mu.Lock()
	if m, ok := n.view.Mirror(target, now); ok {
		req.Seq = m.Seq
		req.Suspect = m.State == health.StateSuspect || m.State == health.StateDead
	}
	n.mu.Unlock()
	_, err := t.exchange(ctx, target, req)
	return err
}

func (t pingTransport) PingVia(ctx context.Context, via, target peer.ID) error {
	ack, err := t.exchange(ctx, via, protocol.Ping{Target: target.String()})
	if err != nil {
		return err
	}
	if !ack.OK {
		return errNoAck
	}
	return nil
}

var errNoAck = errors.New("node: probed mirror did not answer")

// exchange sends one ping request to p and reads its answer.
func (t pingTransport) exchange(ctx context.Context, p peer.ID, req protocol.Ping) (protocol.Ack, error) {
	n := t.n
	if n.blackhole != nil && n.blackhole(p) {
		<-ctx.Done()
		return protocol.Ack{}, ctx.Err()
	}
	n.learnAddrs(p)
	s, err := n.host.NewStream(ctx, p, protocol.PingProtocolID)
	if err != nil {
		return protocol.Ack{}, err
	}
	defer s.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	body, _ := json.Marshal(req)
	if err := protocol.WriteFrame(s, body); err != nil {
		s.Reset()
		return protocol.Ack{}, err
	}
	n.live.sent.Add(int64(len(body) + 1))
	if err := s.CloseWrite(); err != nil {
		s.Reset()
		return protocol.Ack{}, err
	}
	raw, err := protocol.ReadFrame(bufio.NewReader(io.LimitReader(s, protocol.MaxPingSize+16)), protocol.MaxPingSize)
	if err != nil {
		s.Reset()
		return protocol.Ack{}, err
	}
	n.live.recv.Add(int64(len(raw) + 1))
	var ack protocol.Ack
	if err := json.Unmarshal(raw, &ack); err != nil {
		return protocol.Ack{}, fmt.Errorf("node: ping answer from %s: %w", p, err)
	}
	return ack, nil
}

// learnAddrs gives the host the addresses of p's latest liveness
// statement when it is not connected to p. Probes go to every mirror in the
// view, most of which this mirror has never been connected to: the
// peerstore knows only peers it has met (identify), the view knows every
// mirror's signed addresses. Without them a probe of a mirror met only
// through gossip fails at once, and so do the helpers' indirect probes,
// which suspects a healthy mirror.
func (n *Node) learnAddrs(p peer.ID) {
	if n.host.Network().Connectedness(p) == network.Connected {
		return
	}
	now := n.clock()
	n.mu.Lock()
	m, ok := n.view.Mirror(p, now)
	n.mu.Unlock()
	if !ok || m.Liveness == nil {
		return
	}
	addrs := make([]ma.Multiaddr, 0, len(m.Liveness.Addrs))
	for _, s := range m.Liveness.Addrs {
		if a, err := ma.NewMultiaddr(s); err == nil {
			addrs = append(addrs, a)
		}
	}
	n.host.Peerstore().AddAddrs(p, addrs, peerstore.TempAddrTTL)
}

// handlePing answers a direct probe, or runs an indirect one for the
// sender. Cost bound: per sender, the limiter's rate; an indirect probe
// lasts at most the detector's Timeout.
func (n *Node) handlePing(s network.Stream) {
	defer s.Close()
	from := s.Conn().RemotePeer()
	if n.blackhole != nil && n.blackhole(from) {
		s.Reset()
		return
	}
	now := n.clock()
	w := &n.live
	w.mu.Lock()
	ok := w.limiter.Allow(from, now)
	logIt := false
	if !ok {
		if last, seen := w.loggedAt[from]; !seen || now.Sub(last) >= time.Minute {
			if len(w.loggedAt) > 1024 {
				clear(w.loggedAt)
			}
			w.loggedAt[from] = now
			logIt = true
		}
	}
	w.mu.Unlock()
	if !ok {
		w.badInput.WithLabelValues(badPingFlood).Inc()
		if logIt {
			n.log.Warn("peer is flooding the ping protocol: dropping its probes (logged once a minute)", "peer", from, "limit_per_s", w.limiter.Rate)
		}
		s.Reset()
		return
	}
	timeout := n.prof.Heartbeat
	_ = s.SetDeadline(time.Now().Add(timeout))
	raw, err := protocol.ReadFrame(bufio.NewReader(io.LimitReader(s, protocol.MaxPingSize+16)), protocol.MaxPingSize)
	var req protocol.Ping
	if err == nil {
		w.recv.Add(int64(len(raw) + 1))
		err = json.Unmarshal(raw, &req)
	}
	var target peer.ID
	if err == nil && req.Target != "" {
		target, err = peer.Decode(req.Target)
	}
	if err != nil {
		w.badInput.WithLabelValues(badPingMalformed).Inc()
		n.log.Debug("malformed ping", "peer", from, "err", err)
		s.Reset()
		return
	}
	n.mu.Lock()
	mySeq := n.seq
	n.mu.Unlock()
	ack := protocol.Ack{OK: true, Seq: mySeq}
	switch {
	case target == "" || target == n.id:
		if req.Suspect && req.Seq >= mySeq {
			n.log.Info("a peer suspects this mirror: refuting", "peer", from, "seq", req.Seq)
			n.announce()
		}
	default:
		ctx, cancel := context.WithTimeout(n.ctx, swim.ForPeriod(n.prof.Heartbeat).Timeout)
		ack.OK = pingTransport{n}.Ping(ctx, target) == nil
		cancel()
		ack.Seq = 0
	}
	body, _ := json.Marshal(ack)
	if err := protocol.WriteFrame(s, body); err != nil {
		s.Reset()
		return
	}
	w.sent.Add(int64(len(body) + 1))
}
