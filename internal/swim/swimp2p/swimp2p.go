// Package swimp2p carries the failure detector's probes (package swim) over
// libp2p: the client and the server of the ping protocol
// (protocol.PingProtocolID: request frames, each answered by one frame, in
// order). The client is a [swim.Transport]; the server answers direct
// probes, runs indirect probes for the sender, rate-limits each sender and
// asks for a refutation when a prober says it suspects this mirror.
//
// A mirror probes the same few mirrors over and over (its neighbourhood),
// so the client keeps one stream open per target for its direct probes: a
// probe is then one small frame each way, where opening a stream per probe
// (yamux's stream set-up and close, the protocol negotiation) cost about
// three times the bytes and four times the packets. A kept stream whose
// probe failed or timed out is reset and forgotten, so a late answer is
// never read as the next probe's; indirect probes and a probe that finds
// the kept stream busy use a stream of their own.
//
// What the protocol needs from the rest of the node (the view of the
// mirrors, this mirror's sequence number, how to refute) comes through the
// small [View] interface; the node only wires it.
package swimp2p

import (
	"bufio"
	"context"
	"encoding/binary"
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
	floodLog swim.FloodLog   // a flooding peer is logged once a minute
	ctx      context.Context // bounds indirect probes run for others
	// kept holds the client's open stream per probed peer.
	kept map[peer.ID]*keptStream

	sent, recv atomic.Int64
}

// frameBuf is the read buffer of a kept or served stream: requests and
// answers are a few dozen bytes, and a mirror keeps about 16 such streams.
const frameBuf = 256

// keptStream is a client stream kept open for the direct probes of one
// peer; busy while a probe uses it.
type keptStream struct {
	st   network.Stream
	r    *bufio.Reader
	busy bool
	used time.Time
}

// keptIdle is how long the client keeps a stream nobody probes through:
// a prober probes each of its Monitors neighbours once every Monitors
// periods (swim.Scheduled), and twice that plus two periods leaves room
// for a neighbourhood that shifts as mirrors come and go; the server waits
// twice that (serverIdle) before it closes a silent stream.
func (c Config) keptIdle() time.Duration {
	return time.Duration(2*max(c.Probe.Monitors, 1)+2) * c.Probe.Period
}

func (c Config) serverIdle() time.Duration { return 2 * c.keptIdle() }

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
		ctx: context.Background(), kept: map[peer.ID]*keptStream{},
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

// Stop stops answering probes and closes the kept streams.
func (s *Service) Stop() {
	s.cfg.Host.RemoveStreamHandler(protocol.PingProtocolID)
	s.mu.Lock()
	kept := s.kept
	s.kept = map[peer.ID]*keptStream{}
	s.mu.Unlock()
	for _, k := range kept {
		k.st.Reset()
	}
}

// BytesSent and BytesReceived count the protocol's payload bytes (frames
// with their length prefixes; stream set-up not included), both sides.
func (s *Service) BytesSent() int64     { return s.sent.Load() }
func (s *Service) BytesReceived() int64 { return s.recv.Load() }

// Ping probes target directly (swim.Transport); a suspected target is told
// so, with the sequence number the view holds for it.
func (s *Service) Ping(ctx context.Context, target peer.ID) error {
	req := protocol.Ping{}
	if t, ok := s.cfg.View.Lookup(target); ok && t.Suspect {
		// Only a suspected target reads the sequence number (to refute):
		// the probe of a mirror in good standing is an empty frame.
		req.Seq, req.Suspect = t.Seq, true
	}
	if s.cfg.Blocked != nil && s.cfg.Blocked(target) {
		<-ctx.Done()
		return ctx.Err()
	}
	k, err := s.takeKept(ctx, target)
	if err != nil {
		return err
	}
	if k == nil { // the kept stream is busy: one of its own
		_, err := s.exchange(ctx, target, req)
		return err
	}
	_, err = s.exchangeKept(ctx, target, k, req)
	return err
}

// takeKept returns the kept stream to p, opening it if there is none,
// marked busy; nil (and no error) if it is busy already.
func (s *Service) takeKept(ctx context.Context, p peer.ID) (*keptStream, error) {
	now := s.cfg.Now()
	s.mu.Lock()
	var stale []*keptStream
	for id, k := range s.kept {
		if !k.busy && now.Sub(k.used) > s.cfg.keptIdle() {
			stale = append(stale, k)
			delete(s.kept, id)
		}
	}
	k := s.kept[p]
	if k != nil {
		if k.busy {
			k = nil
		} else {
			k.busy = true
		}
	}
	s.mu.Unlock()
	for _, old := range stale {
		old.st.Close()
	}
	if k != nil || s.keptBusy(p) {
		return k, nil
	}
	s.learnAddrs(p)
	st, err := s.cfg.Host.NewStream(ctx, p, protocol.PingProtocolID)
	if err != nil {
		return nil, err
	}
	k = &keptStream{st: st, r: bufio.NewReaderSize(st, frameBuf), busy: true, used: now}
	s.mu.Lock()
	if _, dup := s.kept[p]; dup {
		// Opened by a concurrent probe meanwhile: keep that one, and use
		// this one for this probe only.
		s.mu.Unlock()
		return &keptStream{st: st, r: k.r, busy: true}, nil
	}
	s.kept[p] = k
	s.mu.Unlock()
	return k, nil
}

func (s *Service) keptBusy(p peer.ID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.kept[p]
	return k != nil && k.busy
}

// exchangeKept sends one request on k and reads its answer. On any
// failure the stream is reset and forgotten.
func (s *Service) exchangeKept(ctx context.Context, p peer.ID, k *keptStream, req protocol.Ping) (protocol.Ack, error) {
	ack, err := s.roundTrip(ctx, k.st, k.r, req)
	s.mu.Lock()
	mine := s.kept[p] == k
	if err != nil || !mine {
		if mine {
			delete(s.kept, p)
		}
		s.mu.Unlock()
		if err != nil {
			k.st.Reset()
		} else {
			k.st.Close()
		}
		return ack, err
	}
	k.busy, k.used = false, s.cfg.Now()
	s.mu.Unlock()
	return ack, nil
}

// roundTrip writes req on st and reads the answer, within ctx; the
// stream's deadline is cleared again on success.
func (s *Service) roundTrip(ctx context.Context, st network.Stream, r *bufio.Reader, req protocol.Ping) (protocol.Ack, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = st.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { st.Reset() })
	defer stop()
	body, _ := json.Marshal(req)
	if err := writeFrame(st, body); err != nil {
		return protocol.Ack{}, err
	}
	s.sent.Add(int64(len(body) + 1))
	raw, err := protocol.ReadFrame(r, protocol.MaxPingSize)
	if err != nil {
		return protocol.Ack{}, err
	}
	s.recv.Add(int64(len(raw) + 1))
	if !stop() {
		return protocol.Ack{}, ctx.Err()
	}
	_ = st.SetDeadline(time.Time{})
	var ack protocol.Ack
	if err := json.Unmarshal(raw, &ack); err != nil {
		return protocol.Ack{}, fmt.Errorf("%w from %s: %w", ErrBadAnswer, p2pRemote(st), err)
	}
	return ack, nil
}

func p2pRemote(st network.Stream) peer.ID { return st.Conn().RemotePeer() }

// writeFrame writes a length-prefixed frame in one write: one yamux frame,
// one encrypted record.
func writeFrame(w io.Writer, body []byte) error {
	buf := binary.AppendUvarint(make([]byte, 0, len(body)+binary.MaxVarintLen64), uint64(len(body)))
	_, err := w.Write(append(buf, body...))
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
	if err := writeFrame(st, body); err != nil {
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
	logIt := !ok && s.floodLog.Log(from, now)
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

// handle answers the requests of one stream in order until the sender
// closes it or stays silent for serverIdle: direct probes, and indirect
// ones it runs for the sender. Cost bound: per sender, the limiter's rate
// (a request over it resets the stream); an indirect probe lasts at most
// the detector's Timeout; a stream costs a goroutine until it is closed,
// reset or idle.
func (s *Service) handle(st network.Stream) {
	defer st.Close()
	from := st.Conn().RemotePeer()
	r := bufio.NewReaderSize(st, frameBuf)
	for {
		if s.cfg.Blocked != nil && s.cfg.Blocked(from) {
			st.Reset()
			return
		}
		_ = st.SetReadDeadline(time.Now().Add(s.cfg.serverIdle()))
		raw, err := protocol.ReadFrame(r, protocol.MaxPingSize)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil && !errors.Is(err, protocol.ErrMalformed) && !errors.Is(err, protocol.ErrTooLarge) {
			st.Reset() // idle, reset or closed under us
			return
		}
		// Every request is admitted, not only a stream's first: a peer
		// that keeps its stream open stays under the same limit.
		if !s.admit(from, s.cfg.Now()) {
			st.Reset()
			return
		}
		if !s.answer(st, from, raw, err) {
			st.Reset()
			return
		}
	}
}

// answer answers one request (raw, or the error reading it); false if the
// stream must be reset.
func (s *Service) answer(st network.Stream, from peer.ID, raw []byte, err error) bool {
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
		return false
	}
	self := s.cfg.Host.ID()
	ack := protocol.Ack{OK: true}
	switch {
	case target == "" || target == self:
		if !req.Suspect {
			break
		}
		mySeq := s.cfg.View.Seq()
		// A suspecting prober learns the sequence this mirror is at.
		ack.Seq = mySeq
		if req.Seq >= mySeq {
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
	}
	body, _ := json.Marshal(ack)
	_ = st.SetWriteDeadline(time.Now().Add(s.cfg.Probe.Period))
	if err := writeFrame(st, body); err != nil {
		return false
	}
	s.sent.Add(int64(len(body) + 1))
	return true
}
