// Package swimp2p carries the failure detector's probes (package swim) over
// libp2p: the client and the server of the ping protocol
// (protocol.PingProtocolID: one request frame, one answer frame per
// stream). The client is a [swim.Transport]; the server answers direct
// probes, runs indirect probes for the sender, rate-limits each sender and
// asks for a refutation when a prober says it suspects this mirror.
//
// What the protocol needs from the rest of the node (the view of the
// mirrors, this mirror's sequence number, how to refute) comes through the
// small [View] interface; the node only wires it.
package swimp2p

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/mirrornet/mirrornet/internal/swim"
	"github.com/mirrornet/mirrornet/protocol"
)

// Errors.
var (
	// ErrConfig: a configuration field is missing or out of range.
	ErrConfig = errors.New("swimp2p: invalid config")
	// ErrNoAck: a helper reported that the target of an indirect probe
	// did not answer it.
	ErrNoAck = errors.New("swimp2p: probed mirror did not answer")
	// ErrBadAnswer: a ping answer did not decode.
	ErrBadAnswer = errors.New("swimp2p: malformed ping answer")
)

// Reasons passed to Config.OnBadInput.
const (
	// ReasonFlood: a peer sent probes over the rate limit.
	ReasonFlood = "ping_flood"
	// ReasonMalformed: a request did not decode.
	ReasonMalformed = "ping_malformed"
)

// Target is what the view holds about a probed mirror.
type Target struct {
	// Seq is the sequence number of its latest liveness statement.
	Seq uint64
	// Suspect: the view holds it suspect or dead (the probe tells it so,
	// and it refutes).
	Suspect bool
	// Addrs are the addresses it signed in that statement.
	Addrs []string
}

// View is what the protocol reads from, and asks of, the rest of the node.
// Its methods must not block on the network.
type View interface {
	// Lookup returns what the view holds about p; false if p is unknown.
	Lookup(p peer.ID) (Target, bool)
	// Seq is this mirror's latest liveness sequence number.
	Seq() uint64
	// Refute is called when prober from says it suspects this mirror at a
	// sequence number not below Seq(): the node signs a newer statement.
	Refute(from peer.ID, seq uint64)
}

// Config configures a [Service].
type Config struct {
	Host host.Host
	View View
	// Probe is the detector's timing: an indirect probe run for a peer
	// lasts at most Probe.Timeout, and a request must arrive within
	// Probe.Period.
	Probe swim.Config
	// Rate and Burst limit the probes each peer may send (per second,
	// sustained; at once).
	Rate, Burst float64
	// Log receives the flood and refutation lines (nil: discarded).
	Log *slog.Logger
	// OnBadInput, if set, is called once per refused request with its
	// reason (ReasonFlood, ReasonMalformed), for metrics.
	OnBadInput func(reason string)
	// Blocked, if set, simulates a cut link (tests): nothing is sent to
	// or answered for a peer it reports.
	Blocked func(peer.ID) bool
	// Now is the clock of the rate limit (nil: time.Now).
	Now func() time.Time
}

// Validate reports the first field missing or out of range.
func (c Config) Validate() error {
	switch {
	case c.Host == nil:
		return fmt.Errorf("%w: Host is nil", ErrConfig)
	case c.View == nil:
		return fmt.Errorf("%w: View is nil", ErrConfig)
	case c.Rate <= 0 || c.Burst < 1:
		return fmt.Errorf("%w: Rate must be positive and Burst at least 1 (got %v, %v)", ErrConfig, c.Rate, c.Burst)
	}
	if err := c.Probe.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}

// Service is the ping protocol's client and server on one host.
type Service struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	limiter  swim.Limiter
	loggedAt map[peer.ID]time.Time // last flood log line per peer
	ctx      context.Context       // bounds indirect probes run for others

	sent, recv atomic.Int64
}

// New returns a service; Start serves the protocol.
func New(cfg Config) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{
		cfg: cfg, log: log, limiter: swim.Limiter{Rate: cfg.Rate, Burst: cfg.Burst},
		loggedAt: map[peer.ID]time.Time{}, ctx: context.Background(),
	}, nil
}

// Start answers probes until ctx ends or Stop is called. Indirect probes
// run for other mirrors end with ctx.
func (s *Service) Start(ctx context.Context) {
	s.mu.Lock()
	s.ctx = ctx
	s.mu.Unlock()
	s.cfg.Host.SetStreamHandler(protocol.PingProtocolID, s.handle)
}

// Stop stops answering probes.
func (s *Service) Stop() { s.cfg.Host.RemoveStreamHandler(protocol.PingProtocolID) }

// BytesSent and BytesReceived count the protocol's payload bytes (frames
// with their length prefixes; stream set-up not included), both sides.
func (s *Service) BytesSent() int64     { return s.sent.Load() }
func (s *Service) BytesReceived() int64 { return s.recv.Load() }

// Ping probes target directly (swim.Transport), telling it the sequence
// number the view holds for it and whether it is suspected.
func (s *Service) Ping(ctx context.Context, target peer.ID) error {
	req := protocol.Ping{}
	if t, ok := s.cfg.View.Lookup(target); ok {
		req.Seq, req.Suspect = t.Seq, t.Suspect
	}
	_, err := s.exchange(ctx, target, req)
	return err
}

// PingVia asks via to probe target (swim.Transport); nil when via reports
// that target answered it.
func (s *Service) PingVia(ctx context.Context, via, target peer.ID) error {
	ack, err := s.exchange(ctx, via, protocol.Ping{Target: target.String()})
	if err != nil {
		return err
	}
	if !ack.OK {
		return ErrNoAck
	}
	return nil
}

// exchange sends one request to p and reads its answer.
func (s *Service) exchange(ctx context.Context, p peer.ID, req protocol.Ping) (protocol.Ack, error) {
	if s.cfg.Blocked != nil && s.cfg.Blocked(p) {
		<-ctx.Done()
		return protocol.Ack{}, ctx.Err()
	}
	s.learnAddrs(p)
	st, err := s.cfg.Host.NewStream(ctx, p, protocol.PingProtocolID)
	if err != nil {
		return protocol.Ack{}, err
	}
	defer st.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = st.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { st.Reset() })
	defer stop()
	body, _ := json.Marshal(req)
	if err := protocol.WriteFrame(st, body); err != nil {
		st.Reset()
		return protocol.Ack{}, err
	}
	s.sent.Add(int64(len(body) + 1))
	if err := st.CloseWrite(); err != nil {
		st.Reset()
		return protocol.Ack{}, err
	}
	raw, err := protocol.ReadFrame(bufio.NewReader(io.LimitReader(st, protocol.MaxPingSize+16)), protocol.MaxPingSize)
	if err != nil {
		st.Reset()
		return protocol.Ack{}, err
	}
	s.recv.Add(int64(len(raw) + 1))
	var ack protocol.Ack
	if err := json.Unmarshal(raw, &ack); err != nil {
		return protocol.Ack{}, fmt.Errorf("%w from %s: %w", ErrBadAnswer, p, err)
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
func (s *Service) learnAddrs(p peer.ID) {
	h := s.cfg.Host
	if h.Network().Connectedness(p) == network.Connected {
		return
	}
	t, ok := s.cfg.View.Lookup(p)
	if !ok {
		return
	}
	addrs := make([]ma.Multiaddr, 0, len(t.Addrs))
	for _, a := range t.Addrs {
		if m, err := ma.NewMultiaddr(a); err == nil {
			addrs = append(addrs, m)
		}
	}
	h.Peerstore().AddAddrs(p, addrs, peerstore.TempAddrTTL)
}

// admit applies the per-peer rate limit, logging a flooding peer at most
// once a minute.
func (s *Service) admit(from peer.ID, now time.Time) bool {
	s.mu.Lock()
	ok := s.limiter.Allow(from, now)
	logIt := false
	if !ok {
		if last, seen := s.loggedAt[from]; !seen || now.Sub(last) >= time.Minute {
			if len(s.loggedAt) > 1024 {
				clear(s.loggedAt)
			}
			s.loggedAt[from] = now
			logIt = true
		}
	}
	s.mu.Unlock()
	if !ok {
		s.bad(ReasonFlood)
		if logIt {
			s.log.Warn("peer is flooding the ping protocol: dropping its probes (logged once a minute)", "peer", from, "limit_per_s", s.cfg.Rate)
		}
	}
	return ok
}

func (s *Service) bad(reason string) {
	if s.cfg.OnBadInput != nil {
		s.cfg.OnBadInput(reason)
	}
}

// handle answers a direct probe, or runs an indirect one for the sender.
// Cost bound: per sender, the limiter's rate; an indirect probe lasts at
// most the detector's Timeout.
func (s *Service) handle(st network.Stream) {
	defer st.Close()
	from := st.Conn().RemotePeer()
	if s.cfg.Blocked != nil && s.cfg.Blocked(from) {
		st.Reset()
		return
	}
	if !s.admit(from, s.cfg.Now()) {
		st.Reset()
		return
	}
	_ = st.SetDeadline(time.Now().Add(s.cfg.Probe.Period))
	raw, err := protocol.ReadFrame(bufio.NewReader(io.LimitReader(st, protocol.MaxPingSize+16)), protocol.MaxPingSize)
	var req protocol.Ping
	if err == nil {
		s.recv.Add(int64(len(raw) + 1))
		err = json.Unmarshal(raw, &req)
	}
	var target peer.ID
	if err == nil && req.Target != "" {
		target, err = peer.Decode(req.Target)
	}
	if err != nil {
		s.bad(ReasonMalformed)
		s.log.Debug("malformed ping", "peer", from, "err", err)
		st.Reset()
		return
	}
	self := s.cfg.Host.ID()
	mySeq := s.cfg.View.Seq()
	ack := protocol.Ack{OK: true, Seq: mySeq}
	switch {
	case target == "" || target == self:
		if req.Suspect && req.Seq >= mySeq {
			s.log.Info("a peer suspects this mirror: refuting", "peer", from, "seq", req.Seq)
			s.cfg.View.Refute(from, req.Seq)
		}
	default:
		s.mu.Lock()
		parent := s.ctx
		s.mu.Unlock()
		ctx, cancel := context.WithTimeout(parent, s.cfg.Probe.Timeout)
		ack.OK = s.Ping(ctx, target) == nil
		cancel()
		ack.Seq = 0
	}
	body, _ := json.Marshal(ack)
	if err := protocol.WriteFrame(st, body); err != nil {
		st.Reset()
		return
	}
	s.sent.Add(int64(len(body) + 1))
}
