package replicate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	mdag "github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/go-cid"

	"github.com/mirrornet/mirrornet/internal/store"
)

// ErrBundleTooLarge means a followed bundle declares more bytes than the
// storage limit (FollowConfig.MaxStorage, the node's --max-storage)
// allows in all: it is refused, not fetched.
var ErrBundleTooLarge = errors.New("replicate: bundle larger than --max-storage")

// Why a follow is refused (Refused.Reason).
const (
	// RefusedTooLarge: the bundle alone declares more than the limit.
	// Nothing but a larger limit helps: a restart with one fetches afresh;
	// following it again only repeats the refusal.
	RefusedTooLarge = "too_large"
	// RefusedStorageFull: the bundle would fit the limit, but not beside
	// the other bundles kept. Retried when storage is freed
	// (Follower.StorageFreed).
	RefusedStorageFull = "storage_full"
)

// FollowConfig tunes a Follower.
type FollowConfig struct {
	// Retry is the wait after a failed fetch before the next; it doubles
	// after every failure up to MaxRetry, and starts over when a holder
	// announces the bundle (Kick). Twice the liveness heartbeat: a holder
	// that just appeared is known by then.
	Retry    time.Duration
	MaxRetry time.Duration
	// MaxStorage, if > 0, is the most bytes the store may keep: a bundle
	// whose root declares more is refused as too large, after one block.
	MaxStorage int64
}

// Validate reports a configuration error naming the field.
func (c FollowConfig) Validate() error {
	if c.Retry <= 0 || c.MaxRetry < c.Retry || c.MaxStorage < 0 {
		return fmt.Errorf("replicate: FollowConfig.Retry must be > 0, MaxRetry >= Retry and MaxStorage >= 0, got %s, %s, %d",
			c.Retry, c.MaxRetry, c.MaxStorage)
	}
	return nil
}

// FollowHooks are what a Follower tells its owner. Both are called from
// the Follower's goroutines, never with its lock held; nil hooks are
// skipped.
type FollowHooks struct {
	// Held: the bundle is complete and verified.
	Held func(c cid.Cid)
	// Refused: a follow was refused for reason (one call per refusal).
	Refused func(c cid.Cid, reason string)
}

// Follower keeps the bundles a mirror follows fetched: one fetch per
// bundle in the background, retried (with backoff, or at once when a
// holder announces it) until the bundle is held, Stop is called or the
// Follower closes. A bundle that cannot fit the storage limit is refused
// instead of retried: too large alone (until a restart with a larger
// limit) or too large beside the others (until StorageFreed).
type Follower struct {
	r     *Replicator
	st    *store.Store
	cfg   FollowConfig
	hooks FollowHooks
	log   *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	mu      sync.Mutex
	fetches map[cid.Cid]*following
}

// following tracks one bundle being fetched.
type following struct {
	cancel   context.CancelFunc
	progress Progress
	lastErr  string
	// kick wakes a fetch waiting to retry: a holder has just announced
	// the bundle.
	kick chan struct{}
	// refused is the reason the bundle was refused ("" while it is being
	// fetched or retried). A refused fetch waits for retry, never for a
	// timer or a kick: re-fetching cannot change the verdict until
	// storage is freed or the bundle is followed again.
	refused string
	retry   chan struct{}
}

// NewFollower makes a Follower fetching through r into st. Close it
// before r.
func NewFollower(r *Replicator, st *store.Store, cfg FollowConfig, hooks FollowHooks, log *slog.Logger) (*Follower, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Follower{r: r, st: st, cfg: cfg, hooks: hooks, log: log.With("component", "follow"),
		ctx: ctx, cancel: cancel, fetches: map[cid.Cid]*following{}}, nil
}

// Close stops every fetch and waits for them. It is idempotent.
func (fl *Follower) Close() error {
	fl.once.Do(func() {
		fl.cancel()
		fl.wg.Wait()
	})
	return nil
}

// Start fetches c in the background unless a fetch of it runs already.
func (fl *Follower) Start(c cid.Cid) {
	fl.mu.Lock()
	if _, ok := fl.fetches[c]; ok || fl.ctx.Err() != nil {
		fl.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(fl.ctx)
	f := &following{cancel: cancel, kick: make(chan struct{}, 1), retry: make(chan struct{}, 1)}
	fl.fetches[c] = f
	fl.wg.Add(1)
	fl.mu.Unlock()
	go func() {
		defer fl.wg.Done()
		defer cancel()
		if fl.run(ctx, c, f) {
			fl.mu.Lock()
			delete(fl.fetches, c)
			fl.mu.Unlock()
			fl.log.Info("bundle held", "cid", c)
			if fl.hooks.Held != nil {
				fl.hooks.Held(c)
			}
		}
	}()
}

// run fetches c until it is held (true) or ctx ends (false).
func (fl *Follower) run(ctx context.Context, c cid.Cid, f *following) bool {
	retry := fl.cfg.Retry
	for {
		err := fl.fetchOnce(ctx, c, f)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		if reason := refusal(err); reason != "" {
			if !fl.refuse(ctx, c, f, reason, err) {
				return false
			}
			retry = fl.cfg.Retry
			continue
		}
		fl.mu.Lock()
		f.lastErr = err.Error()
		fl.mu.Unlock()
		fl.log.Info("fetch incomplete; will retry", "cid", c, "err", err, "in", retry)
		t := time.NewTimer(retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		case <-f.kick:
			t.Stop()
			retry = fl.cfg.Retry
		}
		retry = min(2*retry, fl.cfg.MaxRetry)
	}
}

// Stop stops fetching c (it was unfollowed).
func (fl *Follower) Stop(c cid.Cid) {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if f, ok := fl.fetches[c]; ok {
		f.cancel()
		delete(fl.fetches, c)
	}
}

// fetchOnce runs one fetch of c. Once the root block is here (before the
// fetch starts, or as the first block arrives) the size it declares is
// checked against the limit, so a bundle that can never fit is refused
// after one block, not after filling the store.
func (fl *Follower) fetchOnce(ctx context.Context, c cid.Cid, f *following) error {
	if err := fl.fits(c); err != nil {
		return err
	}
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	err := fl.r.Fetch(ctx, c, func(p Progress) {
		fl.mu.Lock()
		f.progress = p
		fl.mu.Unlock()
		if p.Blocks == 1 { // the root, always the first block of a pass
			if err := fl.fits(c); err != nil {
				stop(err)
			}
		}
	})
	if cause := context.Cause(ctx); err != nil && errors.Is(cause, ErrBundleTooLarge) {
		return cause
	}
	return err
}

// fits returns ErrBundleTooLarge when the root of c is here and declares
// more bytes than the limit. (The declared size counts a block shared by
// two files twice, so a bundle of many duplicates may be refused though
// it would just fit.)
func (fl *Follower) fits(c cid.Cid) error {
	limit := fl.cfg.MaxStorage
	if limit <= 0 {
		return nil
	}
	if size := DeclaredSize(fl.st, c); size > limit {
		return fmt.Errorf("%w: %s is %d bytes, --max-storage is %d: raise --max-storage or unfollow it", ErrBundleTooLarge, c, size, limit)
	}
	return nil
}

// DeclaredSize is what root's block declares of the bundle's size: its own
// bytes plus its links' Tsize; 0 when the block is not here yet.
func DeclaredSize(st *store.Store, root cid.Cid) int64 {
	data, err := st.Get(root)
	if err != nil {
		return 0
	}
	total := int64(len(data))
	if root.Type() == cid.DagProtobuf {
		nd, err := mdag.DecodeProtobuf(data)
		if err != nil {
			return 0
		}
		for _, l := range nd.Links() {
			total += int64(l.Size)
		}
	}
	return total
}

// refusal names why err refuses a follow, or returns "" for an error a
// retry may cure (no holder reachable, a stalled transfer).
func refusal(err error) string {
	switch {
	case errors.Is(err, ErrBundleTooLarge):
		return RefusedTooLarge
	case errors.Is(err, store.ErrStorageLimit):
		return RefusedStorageFull
	}
	return ""
}

// refuse records that c is refused for reason: one warning in the log, the
// Refused hook, the error in State and RefusedError. It then waits until
// storage is freed (for storage_full; a too_large bundle waits for a
// restart) and reports whether to try again (false: stopped or closing).
func (fl *Follower) refuse(ctx context.Context, c cid.Cid, f *following, reason string, err error) bool {
	fl.mu.Lock()
	f.refused, f.lastErr = reason, err.Error()
	fl.mu.Unlock()
	if fl.hooks.Refused != nil {
		fl.hooks.Refused(c, reason)
	}
	fl.log.Warn("follow refused", "cid", c, "reason", reason, "err", err)
	select {
	case <-ctx.Done():
		return false
	case <-f.retry:
	}
	fl.mu.Lock()
	f.refused = ""
	fl.mu.Unlock()
	fl.log.Info("retrying a refused follow", "cid", c, "reason", reason)
	return true
}

// StorageFreed wakes the fetches refused for lack of space: they try again.
func (fl *Follower) StorageFreed() {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	for _, f := range fl.fetches {
		if f.refused == RefusedStorageFull {
			wake(f.retry)
		}
	}
}

// Kick wakes the fetches, waiting to retry, of the bundles (CIDs as
// strings) a holder has just announced. It never blocks.
func (fl *Follower) Kick(bundles []string) {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if len(fl.fetches) == 0 {
		return
	}
	for _, b := range bundles {
		c, err := cid.Decode(b)
		if err != nil {
			continue
		}
		if f, ok := fl.fetches[c]; ok {
			wake(f.kick)
		}
	}
}

// wake signals ch without blocking (it has room for one signal).
func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// FollowState is a fetch in progress as State reports it.
type FollowState struct {
	Progress Progress
	// Err is the last fetch's error ("" before any failed).
	Err string
	// Refused is why the bundle is refused, "" if it is not.
	Refused string
}

// State reports the fetch of c, if one runs.
func (fl *Follower) State(c cid.Cid) (FollowState, bool) {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	f, ok := fl.fetches[c]
	if !ok {
		return FollowState{}, false
	}
	return FollowState{Progress: f.progress, Err: f.lastErr, Refused: f.refused}, true
}

// RefusedError returns why c is refused, or nil.
func (fl *Follower) RefusedError(c cid.Cid) error {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if f, ok := fl.fetches[c]; ok && f.refused != "" {
		return errors.New(f.lastErr)
	}
	return nil
}

// Refusal is a bundle refused now.
type Refusal struct {
	CID    cid.Cid
	Reason string
	Err    string
}

// Refused lists the bundles refused now, by CID.
func (fl *Follower) Refused() []Refusal {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	var out []Refusal
	for c, f := range fl.fetches {
		if f.refused != "" {
			out = append(out, Refusal{CID: c, Reason: f.refused, Err: f.lastErr})
		}
	}
	slices.SortFunc(out, func(a, b Refusal) int { return strings.Compare(a.CID.String(), b.CID.String()) })
	return out
}
