// Package relsyncp2p runs release anti-entropy (package relsync) over
// libp2p: the client and the server of protocol.ReleaseSyncProtocolID, and
// the loop that pulls from one random connected mirror every interval.
//
// One exchange, on one stream:
//
//  1. the requester writes a ReleaseDigest (the root of its summary);
//  2. the responder answers an empty frame when its root is the same (the
//     usual case: about a hundred bytes in all), and otherwise its
//     ReleaseSummary;
//  3. the requester writes a ReleaseWant (apps whose records differ, see
//     relsync.Plan) and closes its side;
//  4. the responder writes the records (relsync.State.Answer) and an empty
//     frame.
//
// The requester verifies and applies each record itself (Store.Apply), as
// if it had come over gossip. What the service needs from the node (the
// records kept, how to apply one) comes through the small [Store]
// interface; the node only wires it.
//
// Cost bounds: only peers Serve admits (mirrors) are answered, each at most
// Rate per second (burst Burst), at most MaxServing at once; every frame read is bounded by
// a protocol limit, and a requester reads at most
// protocol.MaxReleaseSyncRecords records and protocol.MaxReleaseSyncBytes
// bytes per exchange.
package relsyncp2p

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/internal/relsync"
	"github.com/mirrornet/mirrornet/internal/swim"
	"github.com/mirrornet/mirrornet/protocol"
)

// Errors.
var (
	// ErrConfig: a configuration field is missing or out of range.
	ErrConfig = errors.New("relsyncp2p: invalid config")
	// ErrBadAnswer: a responder's summary or records broke the protocol.
	ErrBadAnswer = errors.New("relsyncp2p: malformed release sync answer")
	// ErrNoPeer: there is no connected mirror to pull from.
	ErrNoPeer = errors.New("relsyncp2p: no peer to pull from")
)

// Outcomes of a pull, passed to Config.OnPull.
const (
	// OutcomeSame: the peer's digest equals ours; nothing else was sent.
	OutcomeSame = "same"
	// OutcomeLearned: at least one record was new to us and kept.
	OutcomeLearned = "learned"
	// OutcomeNothingNew: the summaries differed, but nothing we asked for
	// (if anything) was kept: records our book refuses, or ones only we
	// hold newer versions of.
	OutcomeNothingNew = "nothing_new"
	// OutcomeFailed: the exchange failed (stream, deadline, bad answer).
	OutcomeFailed = "failed"
)

// Reasons passed to Config.OnBadInput.
const (
	// ReasonFlood: a peer sent requests over the rate limit.
	ReasonFlood = "flood"
	// ReasonBusy: MaxServing answers were already running.
	ReasonBusy = "busy"
	// ReasonMalformed: a request or an answer did not decode, or broke a
	// bound.
	ReasonMalformed = "malformed"
	// ReasonStranger: a request from a peer Config.Serve refuses.
	ReasonStranger = "stranger"
)

// Store is what the service reads from, and hands to, the node's release
// records. Its methods must not block on the network.
type Store interface {
	// Generation changes whenever the records kept (or the apps followed)
	// change; the service rebuilds its summary only then.
	Generation() uint64
	// Snapshot returns every app's records, each with its own generation
	// (relsync.AppRecords.Gen) so that only changed apps are hashed again.
	// The slices are shared: the service does not modify them.
	Snapshot() []relsync.AppRecords
	// Apply verifies raw (a signed release or a build attestation
	// envelope) exactly as gossip would and keeps it; it reports whether
	// raw was new and kept.
	Apply(raw []byte) bool
}

// Config configures a [Service].
type Config struct {
	Host  host.Host
	Store Store
	// Interval is the mean time between two pulls (each is spread
	// uniformly over 0.75 to 1.25 of it, so mirrors started together do
	// not pull together).
	Interval time.Duration
	// Peers lists the mirrors to pull from (connected ones); each pull
	// picks one at random.
	Peers func() []peer.ID
	// Rate and Burst limit the requests each peer may send (per second,
	// sustained; at once). An honest mirror sends about one per Interval
	// to a random peer, so a few per Interval is generous.
	Rate, Burst float64
	// Serve, if set, reports whether a peer's requests may be answered
	// (the node: mirrors its view holds alive or suspect). An answer can
	// be far larger than its request (a summary of every app), so
	// strangers, which cost nothing to make, get none.
	Serve func(peer.ID) bool
	// MaxServing bounds the answers running at once (0: 4).
	MaxServing int
	// Timeout bounds one exchange, either side (0: 10 s).
	Timeout time.Duration
	// Log receives debug lines about pulls and refused input (nil: discarded).
	Log *slog.Logger
	// OnPull, if set, is called after every pull with its outcome and the
	// records kept.
	OnPull func(outcome string, kept int)
	// OnBadInput, if set, is called once per refused request or answer
	// with its reason (ReasonFlood, ReasonBusy, ReasonMalformed).
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
	case c.Store == nil:
		return fmt.Errorf("%w: Store is nil", ErrConfig)
	case c.Peers == nil:
		return fmt.Errorf("%w: Peers is nil", ErrConfig)
	case c.Interval <= 0:
		return fmt.Errorf("%w: Interval must be positive (got %s)", ErrConfig, c.Interval)
	case c.Rate <= 0 || c.Burst < 1:
		return fmt.Errorf("%w: Rate must be positive and Burst at least 1 (got %v, %v)", ErrConfig, c.Rate, c.Burst)
	case c.MaxServing < 0 || c.Timeout < 0:
		return fmt.Errorf("%w: MaxServing and Timeout must not be negative (got %d, %s)", ErrConfig, c.MaxServing, c.Timeout)
	}
	return nil
}

// Service is the release sync protocol's client, server and pull loop on
// one host.
type Service struct {
	cfg     Config
	log     *slog.Logger
	serving chan struct{}

	mu      sync.Mutex
	limiter swim.Limiter
	// floodLog: a peer over the rate limit is logged once a minute.
	floodLog swim.FloodLog
	state    *relsync.State
	gen      uint64
	futile   relsync.Futile
	pulls    int
	rng      *rand.Rand

	cancel context.CancelFunc
	wg     sync.WaitGroup

	sent, recv atomic.Int64
}

// New returns a service; Start serves the protocol and starts pulling.
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
	cfg.Timeout = cmp.Or(cfg.Timeout, 10*time.Second)
	return &Service{
		cfg: cfg, log: log, serving: make(chan struct{}, cmp.Or(cfg.MaxServing, 4)),
		limiter: swim.Limiter{Rate: cfg.Rate, Burst: cfg.Burst},
		rng:     rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
	}, nil
}

// Start answers requests and pulls every Interval until ctx ends or Close
// is called.
func (s *Service) Start(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	s.mu.Lock()
	s.cancel = cancel
	s.mu.Unlock()
	s.cfg.Host.SetStreamHandler(protocol.ReleaseSyncProtocolID, s.handle)
	s.wg.Go(func() { s.loop(ctx) })
}

// Close stops answering and pulling, and waits for the pull loop. It is
// safe to call twice.
func (s *Service) Close() {
	s.cfg.Host.RemoveStreamHandler(protocol.ReleaseSyncProtocolID)
	s.mu.Lock()
	cancel := s.cancel
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	s.wg.Wait()
}

// BytesSent and BytesReceived count the protocol's payload bytes (frames
// with their length prefixes; stream set-up not included), both sides.
func (s *Service) BytesSent() int64     { return s.sent.Load() }
func (s *Service) BytesReceived() int64 { return s.recv.Load() }

func (s *Service) loop(ctx context.Context) {
	for {
		s.mu.Lock()
		d := time.Duration(float64(s.cfg.Interval) * (0.75 + 0.5*s.rng.Float64()))
		s.mu.Unlock()
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		_, _ = s.PullRandom(ctx)
	}
}

// PullRandom pulls from one of Config.Peers at random.
func (s *Service) PullRandom(ctx context.Context) (int, error) {
	var candidates []peer.ID
	for _, p := range s.cfg.Peers() {
		if s.cfg.Blocked == nil || !s.cfg.Blocked(p) {
			candidates = append(candidates, p)
		}
	}
	if len(candidates) == 0 {
		return 0, ErrNoPeer
	}
	s.mu.Lock()
	p := candidates[s.rng.IntN(len(candidates))]
	s.pulls++
	if s.pulls%16 == 0 {
		// What the book refused may fit now (an app followed since, space
		// freed): forget, at the cost of one futile pull per app.
		s.futile = relsync.Futile{}
	}
	s.mu.Unlock()
	return s.Pull(ctx, p)
}

// current returns the summary of what the store keeps now.
func (s *Service) current() *relsync.State {
	gen := s.cfg.Store.Generation()
	s.mu.Lock()
	if s.state != nil && s.gen == gen {
		st := s.state
		s.mu.Unlock()
		return st
	}
	prev := s.state
	s.mu.Unlock()
	st := relsync.Summarise(s.cfg.Store.Snapshot(), prev)
	s.mu.Lock()
	s.state, s.gen = st, gen
	s.mu.Unlock()
	return st
}

// Pull runs one exchange with p and applies what it learns; it returns how
// many records were new and kept.
func (s *Service) Pull(ctx context.Context, p peer.ID) (int, error) {
	kept, outcome, err := s.pull(ctx, p)
	if err != nil {
		outcome = OutcomeFailed
		s.log.Debug("release sync failed", "peer", p, "err", err)
	} else if kept > 0 {
		s.log.Debug("release sync learnt records", "peer", p, "kept", kept)
	}
	if s.cfg.OnPull != nil {
		s.cfg.OnPull(outcome, kept)
	}
	return kept, err
}

func (s *Service) pull(ctx context.Context, p peer.ID) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	st, err := s.cfg.Host.NewStream(ctx, p, protocol.ReleaseSyncProtocolID)
	if err != nil {
		return 0, "", err
	}
	defer st.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = st.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { st.Reset() })
	defer stop()
	local := s.current()
	if err := s.writeJSON(st, protocol.ReleaseDigest{Root: local.Root, Apps: len(local.Summary)}); err != nil {
		st.Reset()
		return 0, "", err
	}
	r := bufio.NewReader(st)
	raw, err := s.read(r, protocol.MaxReleaseSummarySize)
	if err != nil {
		st.Reset()
		return 0, "", err
	}
	if len(raw) == 0 {
		return 0, OutcomeSame, nil
	}
	var sum protocol.ReleaseSummary
	if err := json.Unmarshal(raw, &sum); err != nil {
		s.bad(ReasonMalformed)
		st.Reset()
		return 0, "", fmt.Errorf("%w: summary from %s: %w", ErrBadAnswer, p, err)
	}
	if err := sum.Validate(); err != nil {
		s.bad(ReasonMalformed)
		st.Reset()
		return 0, "", fmt.Errorf("%w: summary from %s: %w", ErrBadAnswer, p, err)
	}
	s.mu.Lock()
	wants := relsync.Plan(local, sum.Apps, s.futile.Has, protocol.MaxReleaseWantApps)
	s.mu.Unlock()
	if err := s.writeJSON(st, protocol.ReleaseWant{Apps: wants}); err != nil {
		st.Reset()
		return 0, "", err
	}
	if err := st.CloseWrite(); err != nil {
		st.Reset()
		return 0, "", err
	}
	kept, size := 0, 0
	for i := 0; ; i++ {
		raw, err := s.read(r, protocol.MaxStatementSize)
		if err != nil {
			st.Reset()
			return kept, "", err
		}
		if len(raw) == 0 {
			break
		}
		size += len(raw)
		if i >= protocol.MaxReleaseSyncRecords || size > protocol.MaxReleaseSyncBytes {
			s.bad(ReasonMalformed)
			st.Reset()
			return kept, "", fmt.Errorf("%w: %s sent more than %d records or %d bytes", ErrBadAnswer, p, protocol.MaxReleaseSyncRecords, protocol.MaxReleaseSyncBytes)
		}
		if s.cfg.Store.Apply(raw) {
			kept++
		}
	}
	// An app we asked for whose records did not change here is futile at
	// that peer's hash until they change.
	after := s.current()
	remote := make(map[string]string, len(wants))
	for _, e := range sum.Apps {
		remote[e.App] = e.Hash
	}
	s.mu.Lock()
	for _, w := range wants {
		before, _ := local.Entry(w.App)
		now, _ := after.Entry(w.App)
		if before == now {
			s.futile.Add(w.App, remote[w.App])
		}
	}
	s.mu.Unlock()
	if kept > 0 {
		return kept, OutcomeLearned, nil
	}
	return 0, OutcomeNothingNew, nil
}

func (s *Service) writeJSON(w io.Writer, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := protocol.WriteFrame(w, body); err != nil {
		return err
	}
	s.sent.Add(int64(frameLen(len(body))))
	return nil
}

func (s *Service) read(r *bufio.Reader, max int) ([]byte, error) {
	raw, err := protocol.ReadFrame(r, max)
	if err != nil {
		if errors.Is(err, protocol.ErrTooLarge) || errors.Is(err, protocol.ErrMalformed) {
			s.bad(ReasonMalformed)
		}
		return nil, err
	}
	s.recv.Add(int64(frameLen(len(raw))))
	return raw, nil
}

func frameLen(n int) int {
	k := 1
	for v := n; v >= 0x80; v >>= 7 {
		k++
	}
	return n + k
}

func (s *Service) bad(reason string) {
	if s.cfg.OnBadInput != nil {
		s.cfg.OnBadInput(reason)
	}
}

// handle answers one request. Cost bound: per sender, the limiter's rate;
// MaxServing at once; each lasts at most Timeout.
func (s *Service) handle(st network.Stream) {
	defer st.Close()
	from := st.Conn().RemotePeer()
	if s.cfg.Blocked != nil && s.cfg.Blocked(from) {
		st.Reset()
		return
	}
	if s.cfg.Serve != nil && !s.cfg.Serve(from) {
		s.bad(ReasonStranger)
		st.Reset()
		return
	}
	s.mu.Lock()
	now := s.cfg.Now()
	ok := s.limiter.Allow(from, now)
	logIt := !ok && s.floodLog.Log(from, now)
	s.mu.Unlock()
	if !ok {
		s.bad(ReasonFlood)
		if logIt {
			s.log.Warn("peer is flooding the release sync protocol: dropping its requests (logged once a minute)", "peer", from, "limit_per_s", s.cfg.Rate)
		}
		st.Reset()
		return
	}
	select {
	case s.serving <- struct{}{}:
		defer func() { <-s.serving }()
	default:
		s.bad(ReasonBusy)
		st.Reset()
		return
	}
	_ = st.SetDeadline(time.Now().Add(s.cfg.Timeout))
	if err := s.answer(st); err != nil {
		s.log.Debug("release sync request refused", "peer", from, "err", err)
		st.Reset()
	}
}

func (s *Service) answer(st network.Stream) error {
	r := bufio.NewReader(io.LimitReader(st, 2*protocol.MaxReleaseDigestSize+32))
	raw, err := s.read(r, protocol.MaxReleaseDigestSize)
	if err != nil {
		return err
	}
	var d protocol.ReleaseDigest
	if err := json.Unmarshal(raw, &d); err != nil {
		s.bad(ReasonMalformed)
		return fmt.Errorf("%w: %w", protocol.ErrMalformed, err)
	}
	if err := d.Validate(); err != nil {
		s.bad(ReasonMalformed)
		return err
	}
	local := s.current()
	w := bufio.NewWriter(st)
	if d.Root == local.Root {
		if err := protocol.WriteFrame(w, nil); err != nil {
			return err
		}
		s.sent.Add(1)
		return w.Flush()
	}
	if err := s.writeJSON(w, local.Listed()); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	raw, err = s.read(r, protocol.MaxReleaseDigestSize)
	if err != nil {
		return err
	}
	var want protocol.ReleaseWant
	if err := json.Unmarshal(raw, &want); err != nil {
		s.bad(ReasonMalformed)
		return fmt.Errorf("%w: %w", protocol.ErrMalformed, err)
	}
	if err := want.Validate(); err != nil {
		s.bad(ReasonMalformed)
		return err
	}
	for _, rec := range local.Answer(want.Apps, protocol.MaxReleaseSyncRecords, protocol.MaxReleaseSyncBytes) {
		if err := protocol.WriteFrame(w, rec); err != nil {
			return err
		}
		s.sent.Add(int64(frameLen(len(rec))))
	}
	if err := protocol.WriteFrame(w, nil); err != nil {
		return err
	}
	s.sent.Add(1)
	return w.Flush()
}
