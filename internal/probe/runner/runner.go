// Package runner performs the retrieval probes this mirror is assigned:
// every round it computes, from the public assignment (package probe), the
// targets it must probe, challenges each with a random DAG descent over the
// target's trustless gateway, verifies every block against its CID, signs
// the result (attest.SignProbe) and publishes it.
//
// It is the impure shell around package probe: it does HTTP and runs a
// loop. Its dependencies are small interfaces declared here: a [ViewReader]
// (who is alive and what they hold), a [Fetcher] (one raw block from a
// gateway; [HTTPFetcher] is the real one) and a [Publisher] (gossip).
//
//	r, err := runner.NewRunner(cfg, self, key, view, &runner.HTTPFetcher{}, pub, time.Now)
//	go r.Run(ctx)
//	defer r.Close()
package runner

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/probe"
	"github.com/mirrornet/mirrornet/protocol"
)

// Errors.
var (
	ErrConfig   = errors.New("runner: invalid config")
	ErrClosed   = errors.New("runner: closed")
	ErrMismatch = errors.New("runner: block does not match its CID")
	ErrDecode   = errors.New("runner: block does not decode")
	ErrDepth    = errors.New("runner: DAG deeper than the descent limit")
	ErrCodec    = errors.New("runner: unsupported codec in bundle")
	// ErrNoReceipt: the target served the block without a valid receipt
	// for this challenge; a pass it cannot prove is a failure.
	ErrNoReceipt = errors.New("runner: block served without a valid receipt")
	// ErrCanaryServed: a target served bytes for a canary block, which
	// nobody can hold.
	ErrCanaryServed = errors.New("runner: target answered a canary")
)

// Mirror is what the runner needs to know of one alive mirror.
type Mirror struct {
	ID peer.ID
	// HTTP is the base URL of its trustless gateway ("" when none).
	HTTP string
	// Bundles are the root CIDs it attested holding in its own latest
	// liveness statement.
	Bundles []string
}

// ViewReader lists the mirrors alive at now (the health view). It must not
// block on the network; the runner does not modify the returned slice.
type ViewReader interface {
	Mirrors(now time.Time) []Mirror
}

// Challenge is what an observer tells the target with each request: who
// asks and for which challenge (nonce), so that the target's receipt binds
// its answer to both.
type Challenge struct {
	Observer peer.ID
	Nonce    [16]byte
}

// Block is a target's answer to one request: the bytes (unverified), the
// receipt it attached (protocol.EncodeReceipt form, "" when none) and the
// address the answer came from (invalid when unknown).
type Block struct {
	Data    []byte
	Receipt string
	Addr    netip.Addr
}

// Fetcher fetches one raw block from the gateway at base for a challenge.
// It must honour ctx's deadline and bound what it reads. The runner
// verifies the bytes and the receipt.
type Fetcher interface {
	FetchBlock(ctx context.Context, base string, c cid.Cid, ch Challenge) (Block, error)
}

// Publisher publishes one signed statement on the probe topic. It may
// block until ctx is done.
type Publisher interface {
	Publish(ctx context.Context, raw []byte) error
}

// PublisherFunc adapts a function (e.g. a closure over pubsub's
// Topic.Publish, whose variadic options keep it from being a Publisher) to
// Publisher.
type PublisherFunc func(ctx context.Context, raw []byte) error

// Publish calls f.
func (f PublisherFunc) Publish(ctx context.Context, raw []byte) error { return f(ctx, raw) }

// Config is the probe config plus the runner's own knobs.
type Config struct {
	probe.Config
	// Parallel bounds concurrent challenges in one round: a round's
	// challenges must fit in the interval even when targets stall.
	Parallel int
	// MaxDepth bounds the descent (a 1 MiB-chunk file of 1 TiB is 3
	// levels deep; HAMT directories add a few).
	MaxDepth int
	// Descents is how many random root-to-leaf paths one challenge walks
	// (inner blocks are fetched once). Two catch a mirror serving half of
	// its leaves with probability 3/4 per challenge instead of 1/2, for
	// one more small request.
	Descents int
}

// DefaultConfig is the lan profile with 4 challenges in flight.
func DefaultConfig() Config {
	return Config{Config: probe.DefaultConfig(), Parallel: 4, MaxDepth: 32, Descents: 2}
}

// Validate names the first invalid field.
func (c Config) Validate() error {
	if err := c.Config.Validate(); err != nil {
		return err
	}
	if c.Parallel < 1 {
		return fmt.Errorf("%w: Parallel must be at least 1", ErrConfig)
	}
	if c.MaxDepth < 1 || c.MaxDepth > 32 {
		return fmt.Errorf("%w: MaxDepth must be in [1, 32]", ErrConfig)
	}
	if c.Descents < 1 || c.Descents > protocol.MaxChallengeDescents {
		return fmt.Errorf("%w: Descents must be in [1, %d]", ErrConfig, protocol.MaxChallengeDescents)
	}
	return nil
}

// Option sets an optional dependency.
type Option func(*Runner)

// WithDomains makes the runner also probe the targets where this mirror
// holds a committee seat (probe.Committee), placing peers in failure
// domains with d (this mirror's own view of them).
func WithDomains(d probe.Domains) Option { return func(rn *Runner) { rn.domains = d } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(rn *Runner) { rn.log = l } }

// Runner probes this mirror's assigned targets each round.
type Runner struct {
	cfg     Config
	self    peer.ID
	key     crypto.PrivKey
	view    ViewReader
	fetch   Fetcher
	pub     Publisher
	clock   func() time.Time
	domains probe.Domains
	log     *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	lastSeq uint64
}

// NewRunner returns a runner; nothing runs until Run or ProbeOnce.
func NewRunner(cfg Config, self peer.ID, key crypto.PrivKey, view ViewReader, fetch Fetcher, pub Publisher, clock func() time.Time, opts ...Option) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if key == nil || view == nil || fetch == nil || pub == nil || clock == nil {
		return nil, fmt.Errorf("%w: key, view, fetcher, publisher and clock are required", ErrConfig)
	}
	if id, err := peer.IDFromPrivateKey(key); err != nil || id != self {
		return nil, fmt.Errorf("%w: key is not the key of %s", ErrConfig, self)
	}
	r := &Runner{cfg: cfg, self: self, key: key, view: view, fetch: fetch, pub: pub, clock: clock,
		log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(r)
	}
	r.log = r.log.With("component", "probe")
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r, nil
}

// Run probes once per Interval until ctx is done or Close is called. It
// blocks; it returns nil when stopped.
func (r *Runner) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.ctx.Err() != nil {
		r.mu.Unlock()
		return ErrClosed
	}
	r.wg.Add(1)
	r.mu.Unlock()
	defer r.wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(r.ctx, cancel)
	defer stop()

	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := r.ProbeOnce(ctx, r.clock()); err != nil && ctx.Err() == nil {
			r.log.Warn("probe round", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Close stops Run and waits for it to return. It is idempotent.
func (r *Runner) Close() error {
	r.mu.Lock()
	r.cancel()
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}

// ProbeOnce runs one round at now: it challenges every target this mirror
// is assigned in now's epoch, or holds a committee seat for (at most
// Parallel at a time), signs and publishes a result for each, and returns
// the results in publishing order. Each challenge's nonce comes from the
// epoch, the round of now, the target and this mirror
// (protocol.ProbeNonce). Targets without an HTTP side or without bundles
// are skipped (nothing can be proven of them). The first publishing error
// is returned after all results are published or ctx is done.
func (r *Runner) ProbeOnce(ctx context.Context, now time.Time) ([]protocol.ProbeResult, error) {
	mirrors := r.view.Mirrors(now)
	alive := make([]peer.ID, 0, len(mirrors)+1)
	byID := make(map[peer.ID]Mirror, len(mirrors))
	for _, m := range mirrors {
		alive = append(alive, m.ID)
		byID[m.ID] = m
	}
	if _, ok := byID[r.self]; !ok {
		alive = append(alive, r.self)
	}
	epoch, round := probe.EpochOf(now, r.cfg.EpochLength), probe.RoundOf(now, r.cfg.EpochLength)
	// One Seating per round: each target then costs an expected
	// O(Observers log N) scores, not the N of a whole committee.
	var domainOf func(peer.ID) string
	if r.domains != nil {
		domainOf = r.domains.Domain
	}
	seats := probe.NewSeating(alive, domainOf)
	var todo []Mirror
	for _, m := range mirrors {
		if m.ID == r.self || m.HTTP == "" || len(m.Bundles) == 0 {
			continue
		}
		if seats.Assigned(epoch, r.self, m.ID, r.cfg.Observers) || r.domains != nil && seats.HoldsSeat(epoch, m.ID, r.self, r.cfg.Observers) {
			todo = append(todo, m)
		}
	}
	results := make([]protocol.ProbeResult, len(todo))
	sem := make(chan struct{}, r.cfg.Parallel)
	var wg sync.WaitGroup
	for i, m := range todo {
		nonce := protocol.ProbeNonce(epoch, round, m.ID.String(), r.self.String())
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return nil, ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			results[i] = r.challenge(ctx, epoch, round, now, m, nonce)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	var firstErr error
	for i := range results {
		p := &results[i]
		p.Seq = r.nextSeq(now)
		raw, err := attest.SignProbe(r.key, *p)
		if err != nil {
			return results[:i], fmt.Errorf("runner: sign result: %w", err)
		}
		if err := r.pub.Publish(ctx, raw); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("runner: publish result: %w", err)
		}
	}
	return results, firstErr
}

// nextSeq returns a sequence number above the last one and at least now in
// milliseconds, so that sequences keep rising across restarts.
func (r *Runner) nextSeq(now time.Time) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastSeq = max(r.lastSeq+1, uint64(max(now.UnixMilli(), 1)))
	return r.lastSeq
}

// Choose returns the index descent d takes among n choices at level
// (descent 0, level -1 picks the bundle): the first 8 bytes, big-endian,
// of SHA-256(nonce || "mirrornet-descent" || uint8(d) || int64be(level))
// modulo n. Anyone holding the DAG can replay a challenge from its nonce.
func Choose(nonce [16]byte, d, level, n int) int {
	b := make([]byte, 0, 16+17+1+8)
	b = append(b, nonce[:]...)
	b = append(b, "mirrornet-descent"...)
	b = append(b, byte(d))
	b = binary.BigEndian.AppendUint64(b, uint64(int64(level)))
	h := sha256.Sum256(b)
	return int(binary.BigEndian.Uint64(h[:8]) % uint64(n))
}

// challenge performs one challenge against m (a descent, or a canary when
// the nonce says so) and fills everything but Seq.
func (r *Runner) challenge(ctx context.Context, epoch, round uint64, now time.Time, m Mirror, nonce [16]byte) protocol.ProbeResult {
	bundle := m.Bundles[Choose(nonce, 0, -1, len(m.Bundles))]
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	start := r.clock()
	ch := &challengeState{Challenge: Challenge{Observer: r.self, Nonce: nonce}, target: m.ID, start: now,
		cache: map[cid.Cid][]byte{}, rcpt: map[cid.Cid]string{}, have: map[cid.Cid]bool{}}
	var err error
	challenge := protocol.ChallengeCanary + ":" + hex.EncodeToString(nonce[:])
	if protocol.IsCanary(nonce) {
		err = r.canary(ctx, m.HTTP, ch)
	} else {
		var paths []string
		for d := 0; d < r.cfg.Descents && err == nil; d++ {
			var path []int
			path, err = r.descend(ctx, m.HTTP, bundle, nonce, d, ch)
			steps := make([]string, len(path))
			for i, s := range path {
				steps[i] = strconv.Itoa(s)
			}
			paths = append(paths, strings.Join(steps, "."))
		}
		challenge = protocol.ChallengeDescent + ":" + hex.EncodeToString(nonce[:]) + ":" + strings.Join(paths, ",")
	}
	latency := r.clock().Sub(start)
	outcome := protocol.OutcomePass
	switch {
	case err == nil:
	case errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil:
		outcome = protocol.OutcomeTimeout
	default:
		outcome = protocol.OutcomeFail
	}
	if err != nil {
		r.log.Debug("challenge failed", "target", m.ID, "bundle", bundle, "err", err)
	}
	p := protocol.ProbeResult{
		Observer: r.self.String(), Target: m.ID.String(), Epoch: epoch, Round: round, Time: now.UnixMilli(),
		Bundle: bundle, Challenge: challenge, Outcome: outcome,
		LatencyMS: min(max(latency.Milliseconds(), 0), protocol.MaxProbeLatency),
	}
	if ch.addr.IsValid() {
		p.Addr = ch.addr.String()
	}
	if outcome == protocol.OutcomePass {
		p.Receipts = ch.receipts
	}
	return p
}

// challengeState is what one challenge collects: verified blocks (shared
// by its descents), the receipts of the root and of each descent's last
// block, and where the target answered from.
type challengeState struct {
	Challenge
	target   peer.ID
	start    time.Time
	cache    map[cid.Cid][]byte
	rcpt     map[cid.Cid]string
	receipts []string
	have     map[cid.Cid]bool
	addr     netip.Addr
}

// keep adds a verified block's receipt to the result: the root's first,
// then the leaf the last descent ended on (every receiver verifies every
// receipt, so a result carries two: the root binds the bundle, the leaf
// the depth).
func (c *challengeState) keep(blk cid.Cid) {
	if c.have[blk] {
		return
	}
	c.have[blk] = true
	if len(c.receipts) < 2 {
		c.receipts = append(c.receipts, c.rcpt[blk])
	} else {
		c.receipts[1] = c.rcpt[blk]
	}
}

// fetchOne fetches and verifies one block and its receipt; one retry on a
// transport error.
func (r *Runner) fetchOne(ctx context.Context, base string, c cid.Cid, ch *challengeState) ([]byte, string, error) {
	b, err := r.fetch.FetchBlock(ctx, base, c, ch.Challenge)
	if err != nil && ctx.Err() == nil {
		// One retry: a lost request is the network's fault, not the
		// target's; a target lacking the block fails again.
		b, err = r.fetch.FetchBlock(ctx, base, c, ch.Challenge)
	}
	if b.Addr.IsValid() && !ch.addr.IsValid() {
		ch.addr = b.Addr.Unmap()
	}
	if err != nil {
		return nil, "", err
	}
	sum, err := c.Prefix().Sum(b.Data)
	if err != nil || !sum.Equals(c) {
		return nil, "", fmt.Errorf("%w: %s", ErrMismatch, c)
	}
	if b.Receipt == "" {
		return nil, "", fmt.Errorf("%w: %s: none", ErrNoReceipt, c)
	}
	rc, err := attest.VerifyProbeReceipt(b.Receipt, ch.target.String(), ch.Observer.String(), ch.Nonce,
		ch.start.Add(-protocol.MaxClockDisparity), r.clock().Add(protocol.MaxClockDisparity))
	if err == nil && rc.CID != c.String() {
		err = fmt.Errorf("receipt for %s", rc.CID)
	}
	if err != nil {
		return nil, "", fmt.Errorf("%w: %s: %v", ErrNoReceipt, c, err)
	}
	return b.Data, b.Receipt, nil
}

// canary asks the target for the canary block of the nonce: nothing but a
// failure is the honest outcome (an answer cannot hash to it).
func (r *Runner) canary(ctx context.Context, base string, ch *challengeState) error {
	c, err := cid.Decode(protocol.CanaryCID(ch.Nonce))
	if err != nil {
		return fmt.Errorf("runner: canary CID: %w", err)
	}
	if _, _, err := r.fetchOne(ctx, base, c, ch); err != nil {
		return err
	}
	return fmt.Errorf("%w: %s", ErrCanaryServed, c)
}

// descend walks descent d from root to a leaf, verifying every block and
// its receipt, and returns the child indexes taken (so far, on error).
// Verified blocks are kept in ch for the challenge's other descents; the
// receipts of the root and of the leaf are kept for the result.
func (r *Runner) descend(ctx context.Context, base, root string, nonce [16]byte, d int, ch *challengeState) ([]int, error) {
	c, err := cid.Decode(root)
	if err != nil {
		return nil, fmt.Errorf("%w: bundle %q: %v", ErrDecode, root, err)
	}
	var path []int
	for level := 0; level <= r.cfg.MaxDepth; level++ {
		data, ok := ch.cache[c]
		if !ok {
			var receipt string
			data, receipt, err = r.fetchOne(ctx, base, c, ch)
			if err != nil {
				return path, err
			}
			ch.cache[c], ch.rcpt[c] = data, receipt
		}
		if level == 0 {
			ch.keep(c)
		}
		switch c.Type() {
		case cid.Raw:
			ch.keep(c)
			return path, nil
		case cid.DagProtobuf:
			n, err := merkledag.DecodeProtobuf(data)
			if err != nil {
				return path, fmt.Errorf("%w: %s: %v", ErrDecode, c, err)
			}
			links := n.Links()
			if len(links) == 0 {
				ch.keep(c)
				return path, nil
			}
			i := Choose(nonce, d, level, len(links))
			path = append(path, i)
			c = links[i].Cid
		default:
			return path, fmt.Errorf("%w: %s", ErrCodec, c)
		}
	}
	return path, ErrDepth
}
