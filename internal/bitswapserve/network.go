// Package bitswapserve guards and explains the serving side of a mirror's
// bitswap (boxo's bitswap server): it wraps the bitswap network so that
//
//   - every answer the server sends goes out through a stream this package
//     writes itself (up to answerStreams per peer, kept open between
//     answers, see send),
//     in chunks, so a peer that stops reading is noticed
//     (no progress for Config.StallTimeout) and cut off: its connection is
//     closed, which frees every server worker blocked on it, and if it
//     stalls again within Config.Cooldown it is refused blocks for
//     Config.Cooldown;
//   - the mirror keeps its own view of each peer's wantlist as the peer
//     sees it (a want is open until the peer cancels it), and re-sends a
//     delivered block for a want-block the peer keeps open (see
//     wants.Tracker.Due for the client behaviour this works around);
//   - per-peer state (wants open, bytes outstanding, oldest open want) is
//     available for /metrics and the status JSON (Peers).
//
// Use: wrap bsnet.NewFromIpfsHost(h) with New, pass the result to
// bitswap.New together with ServerOptions, call Start(ctx) once bitswap
// is up, Close after bitswap is closed.
package bitswapserve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/ipfs/boxo/bitswap"
	bsmsg "github.com/ipfs/boxo/bitswap/message"
	pb "github.com/ipfs/boxo/bitswap/message/pb"
	iface "github.com/ipfs/boxo/bitswap/network"
	"github.com/ipfs/boxo/bitswap/network/bsnet"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/mirrornet/mirrornet/internal/bitswapserve/wants"
)

// PeerStats is the serving state of one peer (see wants.PeerStats).
type PeerStats = wants.PeerStats

// ErrStalled means a peer took nothing of a message for StallTimeout.
var ErrStalled = errors.New("bitswapserve: peer stopped reading")

// Config tunes serving. DefaultConfig's values suit the Internet; tests
// shorten the times.
type Config struct {
	// StallTimeout is how long a send to a peer may make no progress (not
	// one chunk taken) before the peer is cut off. 10 s is far beyond any
	// live link's hiccup and bounds how long a non-reading peer holds the
	// server's workers.
	StallTimeout time.Duration
	// Cooldown: a peer cut off twice within it is refused blocks (it gets
	// DONT_HAVEs) for as long, so that reconnecting does not let it grab
	// the workers again and again.
	Cooldown time.Duration
	// ResendAfter is how long a delivered block's want may stay open
	// before the block is sent again; each later re-send waits twice as
	// long, up to MaxResendInterval. 2 s: a client cancels within
	// milliseconds of receiving a block it wanted.
	ResendAfter       time.Duration
	MaxResendInterval time.Duration
	// MaxResends bounds re-sends per want per active spell of the peer.
	MaxResends int
	// ActiveWindow: blocks are re-sent only to peers that sent a message
	// within it; a peer back after a longer silence starts over.
	ActiveWindow time.Duration
	// MaxWantsPerPeer bounds the wants tracked per peer (boxo's server
	// keeps at most 1024 per peer itself).
	MaxWantsPerPeer int
	// MaxResendsPerTick bounds the blocks re-sent at once.
	MaxResendsPerTick int
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		StallTimeout:      10 * time.Second,
		Cooldown:          time.Minute,
		ResendAfter:       2 * time.Second,
		MaxResendInterval: time.Minute,
		MaxResends:        8,
		ActiveWindow:      30 * time.Second,
		MaxWantsPerPeer:   4096,
		MaxResendsPerTick: 16,
	}
}

// Validate reports a configuration error naming the field.
func (c Config) Validate() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"StallTimeout", c.StallTimeout}, {"Cooldown", c.Cooldown}, {"ResendAfter", c.ResendAfter},
		{"MaxResendInterval", c.MaxResendInterval}, {"ActiveWindow", c.ActiveWindow}} {
		if d.v <= 0 {
			return fmt.Errorf("bitswapserve: Config.%s must be > 0, got %s", d.name, d.v)
		}
	}
	if c.MaxResends < 0 || c.MaxWantsPerPeer < 1 || c.MaxResendsPerTick < 1 {
		return fmt.Errorf("bitswapserve: Config.MaxResends must be >= 0, MaxWantsPerPeer and MaxResendsPerTick >= 1 (got %d, %d, %d)",
			c.MaxResends, c.MaxWantsPerPeer, c.MaxResendsPerTick)
	}
	return nil
}

// Blocks is what re-sending reads: the blocks this mirror serves.
type Blocks interface {
	Get(ctx context.Context, c cid.Cid) (blocks.Block, error)
}

type options struct {
	log   *slog.Logger
	clock func() time.Time
	sent  func(bsmsg.BitSwapMessage)
}

// Option sets an optional dependency.
type Option func(*options)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithSent sets a function called with every message SendMessage took,
// once it is done with it (written or failed): from then on nothing in
// this package, nor (boxo v0.43.0, server.sendBlocks) bitswap's server,
// reads the bytes of the message's blocks, so fn may reuse them.
func WithSent(fn func(bsmsg.BitSwapMessage)) Option { return func(o *options) { o.sent = fn } }

// WithClock sets the clock (default: time.Now).
func WithClock(now func() time.Time) Option { return func(o *options) { o.clock = now } }

// protocols are the bitswap protocol IDs this mirror answers on, newest
// first (the bitswap spec's; boxo's bsnet uses the same).
var protocols = []protocol.ID{bsnet.ProtocolBitswap, bsnet.ProtocolBitswapOneOne, bsnet.ProtocolBitswapOneZero, bsnet.ProtocolBitswapNoVers}

// chunk is the write size: progress is noticed at least every chunk. It
// is the most that one yamux frame carries inside one Noise message: Noise
// encrypts at most 65,519 bytes per message (go-libp2p's
// noise.MaxPlaintextLength) and a yamux frame adds a 12-byte header, so a
// write of exactly 64 KiB became a full 65,536-byte frame (two Noise
// messages, the second of 17 bytes) plus a 12-byte frame (a third): three
// encryptions and three socket writes where one does. Over QUIC the size
// only sets how often progress is seen.
const chunk = 65519 - 12

// Network is a bitswap network whose serving side is guarded and
// observed. It is safe for concurrent use.
type Network struct {
	iface.BitSwapNetwork
	cfg  Config
	blks Blocks
	held func(cid.Cid) bool
	log  *slog.Logger
	now  func() time.Time
	sent func(bsmsg.BitSwapMessage)

	mu       sync.Mutex
	t        *wants.Tracker
	inflight map[peer.ID]int64 // bytes handed to SendMessage and not yet written
	refused  map[peer.ID]time.Time
	cuts     map[peer.ID][]time.Time // recent cut-offs, within Cooldown
	cutOff   map[string]int          // cut-offs by reason
	resent   int
	streams  map[streamKey]*peerStream // answer streams kept open
	turn     int                       // which busy answer stream to wait for next

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// New wraps inner (bsnet.NewFromIpfsHost of the mirror's host) and starts
// re-sending (Close stops it). blks are the blocks the mirror serves and
// held tells, cheaply, whether it serves a block.
func New(inner iface.BitSwapNetwork, blks Blocks, held func(cid.Cid) bool, cfg Config, opts ...Option) (*Network, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := options{log: slog.New(slog.NewTextHandler(io.Discard, nil)), clock: time.Now}
	for _, f := range opts {
		f(&o)
	}
	if inner == nil || blks == nil || held == nil {
		return nil, errors.New("bitswapserve: New needs a network, blocks and a held function")
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Network{
		BitSwapNetwork: inner, cfg: cfg, blks: blks, held: held, log: o.log.With("component", "bitswapserve"), now: o.clock, sent: o.sent,
		t: wants.New(wants.Config{ResendAfter: cfg.ResendAfter, MaxResendInterval: cfg.MaxResendInterval,
			MaxResends: cfg.MaxResends, ActiveWindow: cfg.ActiveWindow, MaxWantsPerPeer: cfg.MaxWantsPerPeer}),
		inflight: map[peer.ID]int64{}, refused: map[peer.ID]time.Time{}, cuts: map[peer.ID][]time.Time{}, cutOff: map[string]int{},
		streams: map[streamKey]*peerStream{},
		ctx:     ctx, cancel: cancel,
	}
	n.run()
	return n, nil
}

// ServerOptions are the bitswap options this package needs: serve no
// blocks to a peer while it is refused after a cut-off.
func (n *Network) ServerOptions() []bitswap.Option {
	return []bitswap.Option{bitswap.WithPeerBlockRequestFilter(func(p peer.ID, _ cid.Cid) bool { return !n.Refused(p) })}
}

// Refused reports whether p is cooling down after a cut-off.
func (n *Network) Refused(p peer.ID) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	until, ok := n.refused[p]
	if ok && !n.now().Before(until) {
		delete(n.refused, p)
		return false
	}
	return ok
}

// Start wraps bitswap's receiver so this package sees every message.
func (n *Network) Start(rs ...iface.Receiver) {
	wrapped := make([]iface.Receiver, len(rs))
	for i, r := range rs {
		wrapped[i] = &tap{n: n, next: r, first: i == 0}
	}
	n.BitSwapNetwork.Start(wrapped...)
}

// run re-sends blocks for wants left open, every tick, until Close.
func (n *Network) run() {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		tick := time.NewTicker(max(n.cfg.ResendAfter/4, 10*time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-n.ctx.Done():
				return
			case <-tick.C:
				n.resendDue()
				n.closeIdle(time.Now().Add(-streamIdle))
			}
		}
	}()
}

// Close stops re-sending and cancels sends in progress; it is
// idempotent. Close bitswap first.
func (n *Network) Close() error {
	n.once.Do(func() {
		n.cancel()
		n.wg.Wait()
		n.closeIdle(time.Now().Add(time.Hour))
	})
	return nil
}

func (n *Network) resendDue() {
	n.mu.Lock()
	due := n.t.Due(n.now(), n.cfg.MaxResendsPerTick)
	n.mu.Unlock()
	for _, r := range due {
		blk, err := n.blks.Get(n.ctx, r.Cid)
		if err != nil {
			continue // no longer served
		}
		msg := bsmsg.New(false)
		msg.AddBlock(blk)
		n.mu.Lock()
		n.resent++
		n.mu.Unlock()
		n.log.Debug("re-sending a block the peer still wants", "peer", r.Peer, "cid", r.Cid)
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			_ = n.SendMessage(n.ctx, r.Peer, msg)
		}()
	}
}

// SendMessage sends an answer of the bitswap server. It writes the
// message itself, in chunks, so that a peer that takes nothing for
// StallTimeout is noticed: the peer is then cut off.
func (n *Network) SendMessage(ctx context.Context, p peer.ID, msg bsmsg.BitSwapMessage) error {
	if n.sent != nil {
		defer n.sent(msg)
	}
	size := int64(msg.Size())
	n.mu.Lock()
	n.inflight[p] += size
	n.mu.Unlock()
	written := int64(0)
	defer func() {
		n.mu.Lock()
		if n.inflight[p] -= size - written; n.inflight[p] <= 0 {
			delete(n.inflight, p)
		}
		n.mu.Unlock()
	}()
	err := n.send(ctx, p, msg, func(k int) {
		// the encoding adds a little to msg.Size(): count at most size
		d := min(int64(k), size-written)
		if d <= 0 {
			return
		}
		n.mu.Lock()
		n.inflight[p] -= d
		n.mu.Unlock()
		written += d
	})
	if errors.Is(err, ErrStalled) && ctx.Err() == nil {
		n.cut(p, "slow_reader")
		return err
	}
	if err != nil {
		return err
	}
	var blks, pres []cid.Cid
	for _, b := range msg.Blocks() {
		blks = append(blks, b.Cid())
	}
	for _, bp := range msg.BlockPresences() {
		pres = append(pres, bp.Cid)
	}
	n.mu.Lock()
	n.t.Sent(p, blks, pres, n.now())
	n.mu.Unlock()
	return nil
}

// peerStream is the stream a peer's answers go out on, one message at a
// time.
type peerStream struct {
	mu   sync.Mutex
	s    network.Stream // nil: none open
	last time.Time      // end of the last message written
}

// streamIdle is how long an answer stream stays open without a message.
const streamIdle = 10 * time.Second

// send writes msg to p on one of the peer's answer streams, opened on
// first use and kept open: boxo's bsnet opens a stream per message, and a
// new stream starts with yamux's 256 KiB window, so every 1 MiB block
// waited for window updates (a few round trips on a fresh stream) while a
// kept stream's window grows once. A bitswap receiver reads messages from
// a stream until it ends (bsnet's handleNewStream), so any bitswap client
// takes them. Each answer stream carries one message at a time; the
// answers of the server's workers to one peer go out on the first free
// one (see answerStreams), or wait for one; a stream
// that failed is dropped and, if the failure was on a stream kept from
// before and nothing was written, the message is sent once more on a new
// one (the peer may have reconnected).
func (n *Network) send(ctx context.Context, p peer.ID, msg bsmsg.BitSwapMessage, progress func(int)) error {
	ps := n.lockStream(p)
	defer ps.mu.Unlock()
	for attempt := 0; ; attempt++ {
		kept := ps.s != nil
		if !kept {
			s, err := n.open(ctx, p)
			if err != nil {
				return err
			}
			ps.s = s
		}
		written := 0
		err := n.write(ctx, ps.s, msg, func(k int) { written += k; progress(k) })
		if err == nil {
			ps.last = time.Now()
			return nil
		}
		_ = ps.s.Reset()
		ps.s = nil
		if !kept || written > 0 || attempt > 0 || ctx.Err() != nil || errors.Is(err, ErrStalled) {
			return err
		}
	}
}

// answerStreams is how many answer streams a peer's answers may go out
// on at once. A yamux stream's receive window grows only while its reader
// keeps emptying it within a few round trips, and on a long path it stays
// well below the bandwidth-delay product (one holder behind a 300 Mbit/s,
// 40 ms round trip relay: 28 - 30 MB/s of 37.5); two answers written side
// by side on two streams have two windows. A second stream is used only
// while the first is busy (the server's workers answer a peer with many
// wants outstanding in parallel). Each stream's window is reserved
// through the resource manager as it grows.
const answerStreams = 2

// streamKey names one of a peer's answer streams.
type streamKey struct {
	p    peer.ID
	slot int
}

// lockStream returns one of p's answer stream records, locked: the first
// that is free, or else waits for one.
func (n *Network) lockStream(p peer.ID) *peerStream {
	for {
		var pss [answerStreams]*peerStream
		n.mu.Lock()
		for i := range pss {
			k := streamKey{p, i}
			ps, ok := n.streams[k]
			if !ok {
				ps = &peerStream{}
				n.streams[k] = ps
			}
			pss[i] = ps
		}
		n.turn++
		turn := n.turn
		n.mu.Unlock()
		slot := -1
		for i, ps := range pss {
			if ps.mu.TryLock() {
				slot = i
				break
			}
		}
		if slot < 0 {
			slot = turn % answerStreams
			pss[slot].mu.Lock()
		}
		ps := pss[slot]
		n.mu.Lock()
		current := n.streams[streamKey{p, slot}] == ps
		n.mu.Unlock()
		if current {
			return ps
		}
		ps.mu.Unlock() // closeIdle dropped it meanwhile
	}
}

// open opens a bitswap stream to p.
func (n *Network) open(ctx context.Context, p peer.ID) (network.Stream, error) {
	sctx, cancel := context.WithTimeout(ctx, n.cfg.StallTimeout)
	s, err := n.Host().NewStream(sctx, p, protocols...)
	cancel()
	if err != nil {
		if sctx.Err() != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("%w: opening a stream: %v", ErrStalled, err)
		}
		return nil, err
	}
	return s, nil
}

// write writes msg to s in the format of the protocol negotiated, as
// boxo's bsnet does, but chunk by chunk with a write deadline of
// StallTimeout each.
func (n *Network) write(ctx context.Context, s network.Stream, msg bsmsg.BitSwapMessage, progress func(int)) error {
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	w := &chunkWriter{s: s, stall: n.cfg.StallTimeout, progress: progress}
	var err error
	switch s.Protocol() {
	case bsnet.ProtocolBitswap, bsnet.ProtocolBitswapOneOne:
		err = msg.ToNetV1(w)
	case bsnet.ProtocolBitswapOneZero, bsnet.ProtocolBitswapNoVers:
		err = msg.ToNetV0(w)
	default:
		err = fmt.Errorf("bitswapserve: unknown protocol %q", s.Protocol())
	}
	if err != nil && w.stalled {
		return fmt.Errorf("%w: %v", ErrStalled, err)
	}
	return err
}

// closeIdle closes the answer streams whose last message ended before
// idleSince (and forgets peers without one), leaving those in use alone.
func (n *Network) closeIdle(idleSince time.Time) {
	n.mu.Lock()
	var idle []network.Stream
	for k, ps := range n.streams {
		if !ps.mu.TryLock() {
			continue // a message is being written
		}
		if ps.s == nil || ps.last.Before(idleSince) {
			if ps.s != nil {
				idle = append(idle, ps.s)
			}
			delete(n.streams, k)
		}
		ps.mu.Unlock()
	}
	n.mu.Unlock()
	for _, s := range idle {
		// Close in the background: closing waits for the peer's side of
		// the protocol negotiation, which a silent peer never sends.
		go func() {
			_ = s.SetReadDeadline(time.Now().Add(n.cfg.StallTimeout))
			_ = s.Close()
		}()
	}
}

// chunkWriter writes in chunks, each within its own deadline.
type chunkWriter struct {
	s        network.Stream
	stall    time.Duration
	progress func(int)
	stalled  bool
}

func (w *chunkWriter) Write(b []byte) (int, error) {
	total := 0
	for len(b) > 0 {
		k := min(len(b), chunk)
		start := time.Now()
		_ = w.s.SetWriteDeadline(start.Add(w.stall))
		m, err := w.s.Write(b[:k])
		total += m
		if m > 0 {
			w.progress(m)
		}
		if err != nil {
			var te interface{ Timeout() bool }
			if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &te) && te.Timeout()) ||
				time.Since(start) >= w.stall*9/10 {
				w.stalled = true
			}
			return total, err
		}
		b = b[k:]
	}
	return total, nil
}

// cut closes the connection to p. A peer cut off a second time within
// Cooldown is also refused blocks for Cooldown: one cut can be a reader
// starved of CPU for a moment, which may come back and carry on; a peer
// that stalls again after reconnecting is not reading. Sends that stall
// together (within StallTimeout of each other) are one cut-off.
func (n *Network) cut(p peer.ID, reason string) {
	n.mu.Lock()
	now := n.now()
	recent := n.cuts[p][:0]
	for _, at := range n.cuts[p] {
		if now.Sub(at) < n.cfg.Cooldown {
			recent = append(recent, at)
		}
	}
	same := len(recent) > 0 && now.Sub(recent[len(recent)-1]) < n.cfg.StallTimeout
	refuse := false
	if !same {
		n.cutOff[reason]++
		refuse = len(recent) > 0
		if refuse {
			n.refused[p] = now.Add(n.cfg.Cooldown)
		}
		recent = append(recent, now)
	}
	if len(recent) == 0 {
		delete(n.cuts, p)
	} else {
		n.cuts[p] = recent
	}
	n.mu.Unlock()
	if !same {
		n.log.Info("peer cut off", "peer", p, "reason", reason, "refused", refuse)
	}
	_ = n.Host().Network().ClosePeer(p)
}

// Peers returns per-peer serving state, oldest open want first.
func (n *Network) Peers() []PeerStats {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.t.Stats(n.now())
	for i := range st {
		st[i].BytesOutstanding = n.inflight[st[i].Peer]
	}
	return st
}

// Totals are process-wide counters.
type Totals struct {
	BlocksResent int            `json:"blocks_resent"`
	CutOff       map[string]int `json:"peers_cut_off"`
}

// Totals returns the counters.
func (n *Network) Totals() Totals {
	n.mu.Lock()
	defer n.mu.Unlock()
	t := Totals{BlocksResent: n.resent, CutOff: map[string]int{}}
	for k, v := range n.cutOff {
		t.CutOff[k] = v
	}
	return t
}

// tap observes messages before bitswap handles them.
type tap struct {
	n     *Network
	next  iface.Receiver
	first bool // only the first receiver records, if bitswap ever passes several
}

func (t *tap) ReceiveMessage(ctx context.Context, p peer.ID, m bsmsg.BitSwapMessage) {
	if t.first {
		t.n.received(ctx, p, m)
	}
	t.next.ReceiveMessage(ctx, p, m)
}

func (t *tap) ReceiveError(err error)  { t.next.ReceiveError(err) }
func (t *tap) PeerConnected(p peer.ID) { t.next.PeerConnected(p) }
func (t *tap) PeerDisconnected(p peer.ID) {
	if t.first {
		t.n.mu.Lock()
		t.n.t.Disconnected(p)
		t.n.mu.Unlock()
	}
	t.next.PeerDisconnected(p)
}

func (n *Network) received(_ context.Context, p peer.ID, m bsmsg.BitSwapMessage) {
	wl := m.Wantlist()
	if len(wl) == 0 && !m.Full() {
		n.mu.Lock()
		n.t.Received(p, false, nil, n.now())
		n.mu.Unlock()
		return
	}
	es := make([]wants.Entry, 0, len(wl))
	for _, e := range wl {
		en := wants.Entry{Cid: e.Cid, Cancel: e.Cancel, WantBlock: e.WantType == pb.Message_Wantlist_Block}
		if !e.Cancel {
			en.Held = n.held(e.Cid)
		}
		es = append(es, en)
	}
	n.mu.Lock()
	n.t.Received(p, m.Full(), es, n.now())
	n.mu.Unlock()
}
