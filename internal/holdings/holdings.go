// Package holdings carries mirrors' signed holdings statements between
// peers over libp2p (protocol.HoldingsProtocolID; see package protocol,
// section Holdings): a liveness statement names what its mirror holds by
// digest only, and a peer that accepts one whose holdings statement it
// lacks pulls it here, from the peer that forwarded the liveness
// statement, then from the subject.
//
// A [Service] is both sides: it answers pull requests from what its
// [Store] holds (rate-limited per peer, bounded per answer), and it pulls
// what it is asked to ([Service.Want]) or what the store still lacks
// ([Store.Pending]), verifying every statement (signature, subject,
// digest) before the store keeps it. Statements that do not match what
// was asked for are counted by reason ([Config.OnBadInput]), logged once
// a minute per peer, and change nothing.
//
// The node only wires it: the store is its health view, the sources come
// from its gossip validator.
package holdings

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/swim"
	"github.com/mirrornet/mirrornet/protocol"
)

// Errors.
var (
	// ErrConfig: a configuration field is missing or out of range.
	ErrConfig = errors.New("holdings: invalid config")
	// ErrAnswer: a pull answer broke the protocol (more frames than asked
	// for, a frame over the limit).
	ErrAnswer = errors.New("holdings: malformed pull answer")
)

// Reasons passed to Config.OnBadInput.
const (
	// ReasonMismatch: a verified holdings statement that is not the one
	// asked for: signed by another key than the subject's, or a list
	// whose digest is not the one the subject's liveness statement named.
	ReasonMismatch = "holdings_mismatch"
	// ReasonInvalid: an answer frame that does not verify as a holdings
	// statement (bad signature, malformed, another kind).
	ReasonInvalid = "holdings_invalid"
	// ReasonMalformed: a request or answer that breaks the protocol.
	ReasonMalformed = "holdings_malformed"
	// ReasonFlood: a peer sent pull requests over the rate limit.
	ReasonFlood = "holdings_flood"
	// ReasonSyncOversize: a sync response carried more holdings bytes
	// than protocol.MaxSyncHoldingsBytes (the node resets that stream).
	ReasonSyncOversize = "holdings_sync_oversize"
	// ReasonStranger: a request from a peer Config.Serve refuses.
	ReasonStranger = "holdings_stranger"
	// ReasonBusy: MaxServing answers were already running.
	ReasonBusy = "holdings_busy"
)

// Defaults.
const (
	// DefaultRate and DefaultBurst limit the pull requests served per
	// peer: an honest peer asks once per holdings change it hears of,
	// batching up to protocol.MaxHoldingsWant references.
	DefaultRate  = 2
	DefaultBurst = 8
	// DefaultTimeout bounds one pull exchange.
	DefaultTimeout = 5 * time.Second
	// MaxAnswerBytes bounds the statements written in answer to one
	// request (the rest are left out; the asker asks again), so a request
	// cannot make a responder send more than this.
	MaxAnswerBytes = 2 << 20
	// DefaultMaxServing bounds the answers running at once.
	DefaultMaxServing = 4
	// parallel bounds the pulls in flight at once.
	parallel = 4
	// paceRate and paceBurst pace the requests this side sends to one
	// peer, well inside what a responder answers (DefaultRate,
	// DefaultBurst), so an honest puller is never taken for a flood.
	paceRate, paceBurst = 1, 4
)

// Store is what the service reads from, and gives to, the rest of the
// node (the health view). Its methods must not block on the network.
type Store interface {
	// Holdings returns the signed holdings statement of id with digest
	// digest, if held.
	Holdings(id peer.ID, digest string) ([]byte, bool)
	// Wants reports whether the store would keep the statement ref names.
	Wants(ref protocol.HoldingsRef) bool
	// AddHoldings keeps a verified holdings statement; an error says why
	// not (not bad input: the store may have moved on).
	AddHoldings(st *attest.Statement) (bool, error)
	// Pending lists the holdings the store lacks at now.
	Pending(now time.Time) []protocol.HoldingsRef
	// Addrs are the multiaddrs id signed (to dial it), or nil.
	Addrs(id peer.ID) []string
}

// Config configures a [Service].
type Config struct {
	Host  host.Host
	Store Store
	// Rate and Burst limit the pull requests each peer may send (per
	// second, sustained; at once). 0: DefaultRate, DefaultBurst.
	Rate, Burst float64
	// Timeout bounds one pull exchange (0: DefaultTimeout).
	Timeout time.Duration
	// Serve, if set, reports whether a peer's requests may be answered
	// (the node admits mirrors its view holds alive or suspect): peer
	// IDs cost nothing to make, so strangers get no answers.
	Serve func(peer.ID) bool
	// MaxServing bounds the answers running at once (0:
	// DefaultMaxServing); a request over it is refused.
	MaxServing int
	// Retry is how often the store's Pending holdings are asked of their
	// subjects again (the node passes its heartbeat). A reference that
	// no source answered waits four Retry periods before it is tried
	// again.
	Retry time.Duration
	// Log receives the bad-input lines (nil: discarded).
	Log *slog.Logger
	// OnBadInput, if set, is called once per refused request or answer
	// frame with its reason (Reason*), for metrics.
	OnBadInput func(reason string)
	// OnAdded, if set, is called after the store kept a pulled statement.
	OnAdded func(st *attest.Statement)
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Validate reports the first field missing or out of range.
func (c Config) Validate() error {
	switch {
	case c.Host == nil:
		return fmt.Errorf("%w: Host is nil", ErrConfig)
	case c.Store == nil:
		return fmt.Errorf("%w: Store is nil", ErrConfig)
	case c.Rate < 0 || c.Burst < 0 || (c.Rate > 0) != (c.Burst > 0) || (c.Burst > 0 && c.Burst < 1):
		return fmt.Errorf("%w: Rate and Burst must both be 0 (defaults) or positive, Burst at least 1 (got %v, %v)", ErrConfig, c.Rate, c.Burst)
	case c.Timeout < 0:
		return fmt.Errorf("%w: Timeout is negative", ErrConfig)
	case c.MaxServing < 0:
		return fmt.Errorf("%w: MaxServing is negative", ErrConfig)
	case c.Retry <= 0:
		return fmt.Errorf("%w: Retry must be positive", ErrConfig)
	}
	return nil
}

// wanted is a reference being pulled: its sources, in order of
// preference, and how many of them were tried.
type wanted struct {
	sources []peer.ID
	tried   int
}

// Service is the pull protocol's client and server on one host.
type Service struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	limiter swim.Limiter
	badLog  swim.FloodLog // a peer's refused input is logged once a minute
	pending map[protocol.HoldingsRef]*wanted
	backoff map[protocol.HoldingsRef]time.Time // exhausted: not before
	pace    swim.Limiter                       // requests sent, per peer
	kick    chan struct{}
	serving chan struct{} // one token per answer running

	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool

	sent, recv atomic.Int64
}

// New returns a service; Start serves and pulls.
func New(cfg Config) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Rate == 0 {
		cfg.Rate, cfg.Burst = DefaultRate, DefaultBurst
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxServing == 0 {
		cfg.MaxServing = DefaultMaxServing
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{
		cfg: cfg, log: log, limiter: swim.Limiter{Rate: cfg.Rate, Burst: cfg.Burst},
		pending: map[protocol.HoldingsRef]*wanted{}, pace: swim.Limiter{Rate: paceRate, Burst: paceBurst},
		backoff: map[protocol.HoldingsRef]time.Time{}, kick: make(chan struct{}, 1),
		serving: make(chan struct{}, cfg.MaxServing),
	}, nil
}

// Start serves pull requests and runs the puller until Close.
func (s *Service) Start(ctx context.Context) {
	ctx, s.cancel = context.WithCancel(ctx)
	s.cfg.Host.SetStreamHandler(protocol.HoldingsProtocolID, s.handle)
	s.wg.Add(1)
	go s.run(ctx)
}

// Close stops serving and pulling, and waits for the puller. Safe to call
// twice.
func (s *Service) Close() {
	if s.closed.Swap(true) || s.cancel == nil {
		return
	}
	s.cfg.Host.RemoveStreamHandler(protocol.HoldingsProtocolID)
	s.cancel()
	s.wg.Wait()
}

// BytesSent and BytesReceived count the protocol's payload bytes (frames
// with their length prefixes), both sides.
func (s *Service) BytesSent() int64     { return s.sent.Load() }
func (s *Service) BytesReceived() int64 { return s.recv.Load() }

// Want asks for the holdings statement ref names, from sources in order
// (typically the peer that forwarded the liveness statement naming it,
// then the subject). It never blocks; a reference already wanted gains
// the sources it lacked.
func (s *Service) Want(ref protocol.HoldingsRef, sources ...peer.ID) {
	self := s.cfg.Host.ID()
	s.mu.Lock()
	w := s.pending[ref]
	if w == nil {
		w = &wanted{}
		s.pending[ref] = w
		delete(s.backoff, ref)
	}
	for _, p := range sources {
		if p != "" && p != self && !slices.Contains(w.sources, p) {
			w.sources = append(w.sources, p)
		}
	}
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// run pulls what is wanted, and every Retry what the store still lacks.
func (s *Service) run(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.Retry)
	defer t.Stop()
	var paced *time.Timer
	var pacedC <-chan time.Time
	defer func() {
		if paced != nil {
			paced.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-pacedC:
			paced, pacedC = nil, nil
		case <-t.C:
			s.retry()
		}
		for {
			left, sent := s.round(ctx)
			if ctx.Err() != nil || !left {
				break
			}
			if !sent {
				// Everything left waits for its source's pace.
				if paced == nil {
					paced = time.NewTimer(time.Second / paceRate)
					pacedC = paced.C
				}
				break
			}
		}
	}
}

// retry wants again, from their subjects, the holdings the store lacks
// and nobody is pulling, except those whose sources all failed recently.
func (s *Service) retry() {
	now := s.cfg.Now()
	s.mu.Lock()
	for ref, until := range s.backoff {
		if !now.Before(until) {
			delete(s.backoff, ref)
		}
	}
	s.mu.Unlock()
	for _, ref := range s.cfg.Store.Pending(now) {
		id, err := peer.Decode(ref.Peer)
		if err != nil {
			continue
		}
		s.mu.Lock()
		_, busy := s.pending[ref]
		_, waiting := s.backoff[ref]
		s.mu.Unlock()
		if !busy && !waiting {
			s.Want(ref, id)
		}
	}
}

// round makes one pull from the next source of every wanted reference,
// batched per source (a source asked too often lately waits its turn),
// and reports whether anything is left to try and whether it asked
// anyone.
func (s *Service) round(ctx context.Context) (left, sent bool) {
	batches := map[peer.ID][]protocol.HoldingsRef{}
	paced := map[peer.ID]bool{} // sources over their pace this round
	now := s.cfg.Now()
	s.mu.Lock()
	for ref, w := range s.pending {
		if !s.cfg.Store.Wants(ref) {
			delete(s.pending, ref)
			continue
		}
		if w.tried >= len(w.sources) {
			delete(s.pending, ref)
			s.backoff[ref] = s.cfg.Now().Add(4 * s.cfg.Retry)
			continue
		}
		src := w.sources[w.tried]
		if _, asking := batches[src]; !asking && !paced[src] {
			if !s.pace.Allow(src, now) {
				paced[src] = true
			} else {
				batches[src] = nil
			}
		}
		if paced[src] || len(batches[src]) >= protocol.MaxHoldingsWant {
			continue // a later round
		}
		w.tried++
		batches[src] = append(batches[src], ref)
	}
	waiting := len(s.pending) > 0
	s.mu.Unlock()
	if len(batches) == 0 {
		return waiting, false
	}
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for src, refs := range batches {
		slices.SortFunc(refs, func(a, b protocol.HoldingsRef) int {
			return cmp.Or(cmp.Compare(a.Peer, b.Peer), cmp.Compare(a.Digest, b.Digest))
		})
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if _, err := s.Pull(ctx, src, refs); err != nil && ctx.Err() == nil {
				s.log.Debug("holdings pull failed", "peer", src, "refs", len(refs), "err", err)
			}
		}()
	}
	wg.Wait()
	s.mu.Lock()
	left = len(s.pending) > 0
	s.mu.Unlock()
	return left, true
}

// Pull asks p for the holdings statements refs name (at most
// protocol.MaxHoldingsWant), verifies each answer against the reference
// it matches, and gives the matching ones to the store. It returns how
// many the store kept. Answers that match no reference are counted
// (ReasonMismatch, ReasonInvalid) and dropped.
func (s *Service) Pull(ctx context.Context, p peer.ID, refs []protocol.HoldingsRef) (int, error) {
	if len(refs) == 0 {
		return 0, nil
	}
	if len(refs) > protocol.MaxHoldingsWant {
		refs = refs[:protocol.MaxHoldingsWant]
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	s.learnAddrs(p)
	st, err := s.cfg.Host.NewStream(ctx, p, protocol.HoldingsProtocolID)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = st.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { st.Reset() })
	defer stop()
	body, err := protocol.Encode(&protocol.HoldingsRequest{Want: refs})
	if err != nil {
		return 0, err
	}
	if err := protocol.WriteFrame(st, body); err != nil {
		st.Reset()
		return 0, err
	}
	s.sent.Add(int64(len(body) + 1))
	if err := st.CloseWrite(); err != nil {
		st.Reset()
		return 0, err
	}
	r := bufio.NewReader(st)
	kept := 0
	for i := 0; ; i++ {
		raw, err := protocol.ReadFrame(r, protocol.MaxHoldingsSize)
		if err != nil {
			if errors.Is(err, protocol.ErrTooLarge) {
				s.badFrom(p, ReasonMalformed, err)
			}
			st.Reset()
			return kept, err
		}
		s.recv.Add(int64(len(raw) + 1))
		if len(raw) == 0 {
			return kept, nil
		}
		if i >= len(refs) {
			s.badFrom(p, ReasonMalformed, fmt.Errorf("%w: more statements than asked for", ErrAnswer))
			st.Reset()
			return kept, ErrAnswer
		}
		if s.accept(p, raw, refs) {
			kept++
		}
	}
}

// accept verifies one answer frame against the references asked of p and
// gives it to the store if it matches one.
func (s *Service) accept(p peer.ID, raw []byte, refs []protocol.HoldingsRef) bool {
	now := s.cfg.Now()
	st, err := attest.Verify(raw, now)
	if err == nil && st.Kind != attest.KindHoldings {
		err = fmt.Errorf("%w: a %s statement, not holdings", attest.ErrKind, st.Kind)
	}
	if err != nil {
		s.badFrom(p, ReasonInvalid, err)
		return false
	}
	ref := protocol.HoldingsRef{Peer: st.Signer.String(), Digest: st.Holdings.Digest()}
	if !slices.Contains(refs, ref) {
		// Tell apart, for the log line, a list signed by another key than
		// the subject's and a list nobody asked for.
		why := fmt.Errorf("%w: %s's list of digest %.16s… was not asked for", attest.ErrHoldings, ref.Peer, ref.Digest)
		for _, want := range refs {
			if want.Digest == ref.Digest {
				why = fmt.Errorf("%w: the list of %s is signed by %s", attest.ErrHoldings, want.Peer, ref.Peer)
				break
			}
		}
		s.badFrom(p, ReasonMismatch, why)
		return false
	}
	changed, err := s.cfg.Store.AddHoldings(st)
	if err != nil {
		s.log.Debug("pulled holdings not kept", "peer", p, "subject", ref.Peer, "err", err)
		return false
	}
	if changed && s.cfg.OnAdded != nil {
		s.cfg.OnAdded(st)
	}
	return changed
}

// learnAddrs gives the host the signed addresses of p when it is not
// connected to p (a subject met only through gossip).
func (s *Service) learnAddrs(p peer.ID) {
	h := s.cfg.Host
	if h.Network().Connectedness(p) == network.Connected {
		return
	}
	var addrs []ma.Multiaddr
	for _, a := range s.cfg.Store.Addrs(p) {
		if m, err := ma.NewMultiaddr(a); err == nil {
			addrs = append(addrs, m)
		}
	}
	if len(addrs) > 0 {
		h.Peerstore().AddAddrs(p, addrs, peerstore.TempAddrTTL)
	}
}

// handle answers a pull request. Cost bound: only peers Config.Serve
// admits; per peer, the limiter's rate; at most MaxServing answers at
// once; per request, protocol.MaxHoldingsWant distinct references and
// MaxAnswerBytes written.
func (s *Service) handle(st network.Stream) {
	defer st.Close()
	from := st.Conn().RemotePeer()
	if s.cfg.Serve != nil && !s.cfg.Serve(from) {
		s.badFrom(from, ReasonStranger, errors.New("not a mirror this node holds alive or suspect"))
		st.Reset()
		return
	}
	s.mu.Lock()
	ok := s.limiter.Allow(from, s.cfg.Now())
	s.mu.Unlock()
	if !ok {
		s.badFrom(from, ReasonFlood, fmt.Errorf("over %v requests per second", s.cfg.Rate))
		st.Reset()
		return
	}
	select {
	case s.serving <- struct{}{}:
		defer func() { <-s.serving }()
	default:
		s.badFrom(from, ReasonBusy, fmt.Errorf("%d answers already running", cap(s.serving)))
		st.Reset()
		return
	}
	_ = st.SetDeadline(time.Now().Add(s.cfg.Timeout))
	raw, err := protocol.ReadFrame(bufio.NewReader(io.LimitReader(st, protocol.MaxHoldingsRequestSize+16)), protocol.MaxHoldingsRequestSize)
	var req *protocol.HoldingsRequest
	if err == nil {
		s.recv.Add(int64(len(raw) + 1))
		req, err = protocol.DecodeHoldingsRequest(raw)
	}
	if err != nil {
		s.badFrom(from, ReasonMalformed, err)
		st.Reset()
		return
	}
	bw := bufio.NewWriter(st)
	written := 0
	seen := map[protocol.HoldingsRef]bool{}
	for _, ref := range req.Want {
		if seen[ref] {
			continue
		}
		seen[ref] = true
		id, err := peer.Decode(ref.Peer)
		if err != nil {
			continue
		}
		b, ok := s.cfg.Store.Holdings(id, ref.Digest)
		if !ok || written+len(b) > MaxAnswerBytes {
			continue
		}
		if err := protocol.WriteFrame(bw, b); err != nil {
			st.Reset()
			return
		}
		written += len(b)
		s.sent.Add(int64(len(b) + 3))
	}
	if protocol.WriteFrame(bw, nil) != nil || bw.Flush() != nil {
		st.Reset()
	}
}

// badFrom counts bad input from p and logs it, at most once a minute per
// peer.
func (s *Service) badFrom(p peer.ID, reason string, err error) {
	if s.cfg.OnBadInput != nil {
		s.cfg.OnBadInput(reason)
	}
	now := s.cfg.Now()
	s.mu.Lock()
	logIt := s.badLog.Log(p, now)
	s.mu.Unlock()
	if logIt {
		s.log.Warn("refused holdings input (logged once a minute per peer)", "peer", p, "reason", reason, "err", err)
	}
}
