// Package snapcache serves a value that is costly to compute (a status page
// over a view of ten thousand mirrors) from an immutable snapshot, rebuilt
// in the background, so that a reader never waits on the work or on the
// locks it takes.
//
// A [Cache] holds the latest [Snapshot] behind an atomic pointer. One
// goroutine, [Cache.Run], rebuilds it: when a reader asks for a fresher one
// ([Cache.Get]), when the source's version changes ([Config.Version],
// checked every [Config.Poll]), and at least every [Config.MaxAge] while
// the version says nothing (time alone changes some values: a mirror turns
// suspect when it goes quiet). Rebuilds are coalesced: at most one is in
// flight, and a build that starts after a reader arrived answers every
// reader that arrived before it. Between two builds the cache rests for
// [Config.GapFactor] times the last build's duration, so rebuilding takes
// at most 1/(1+GapFactor) of a core however many readers and changes
// arrive.
//
// Readers: [Cache.Get] returns the latest snapshot at once when builds are
// slow (the last one took more than [Config.FastBuild]): it is at most a
// build and a gap old while readers keep asking. It does the same while the
// source churns (its version moved during each of the last [ChurnBuilds]
// builds: a flood of changes, where "as it is now" is gone before it could
// be served). Otherwise, when builds are fast, Get waits up to
// [Config.Wait] for a snapshot started after it was called, so a small,
// calm view is served exactly as it is. Before the first build Get waits
// for it.
//
//	c, _ := snapcache.New(snapcache.DefaultConfig(), build)
//	go c.Run(ctx)
//	snap, err := c.Get(r.Context())
package snapcache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Errors.
var (
	// ErrConfig reports an invalid Config.
	ErrConfig = errors.New("snapcache: invalid config")
	// ErrStopped: Run has returned and no snapshot was ever built.
	ErrStopped = errors.New("snapcache: stopped before a first snapshot")
)

// Config tunes a Cache.
type Config struct {
	// GapFactor: after a build that took d, the next starts no sooner
	// than GapFactor*d later. 4: rebuilding uses at most a fifth of a
	// core.
	GapFactor int
	// FastBuild: when the last build took at most this long, Get waits
	// for a fresh one (up to Wait) instead of answering with the latest.
	// 25 ms: a view of a few hundred mirrors is always served fresh.
	FastBuild time.Duration
	// Wait bounds how long Get waits for a fresh snapshot once one
	// exists. 100 ms: half the status page's latency budget.
	Wait time.Duration
	// Poll is how often Run compares Version with the snapshot's. 250 ms.
	Poll time.Duration
	// MaxAge: a snapshot older than this is rebuilt even when Version has
	// not moved and nobody asked. 5 s.
	MaxAge time.Duration
	// Version, if set, reports the source's version: a change means the
	// snapshot is stale. It is called by Run only, never by Get.
	Version func() uint64
	// Now is the clock (default time.Now). Ages and gaps are measured
	// with it; it should be monotonic.
	Now func() time.Time
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{GapFactor: 4, FastBuild: 25 * time.Millisecond, Wait: 100 * time.Millisecond,
		Poll: 250 * time.Millisecond, MaxAge: 5 * time.Second}
}

// Validate names the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.GapFactor < 0:
		return fmt.Errorf("%w: GapFactor must not be negative", ErrConfig)
	case c.FastBuild < 0 || c.Wait < 0:
		return fmt.Errorf("%w: FastBuild and Wait must not be negative", ErrConfig)
	case c.Poll <= 0:
		return fmt.Errorf("%w: Poll must be positive", ErrConfig)
	case c.MaxAge <= 0:
		return fmt.Errorf("%w: MaxAge must be positive", ErrConfig)
	}
	return nil
}

// Snapshot is one immutable build: readers must not modify Value.
type Snapshot[T any] struct {
	Value T
	// Started is when the build started: the snapshot shows the source
	// as it was then or later.
	Started time.Time
	// Took is how long the build ran.
	Took time.Duration
	// Version is Config.Version's answer before the build.
	Version uint64
}

// Cache is a coalescing snapshot of a value built by one function. Its
// methods are safe for concurrent use.
type Cache[T any] struct {
	cfg   Config
	build func(ctx context.Context) (T, error)

	cur  atomic.Pointer[Snapshot[T]]
	kick chan struct{}

	mu sync.Mutex
	// built is closed, and replaced, after every build.
	built   chan struct{}
	stopped chan struct{}
	stop    sync.Once
	// builds counts completed builds (tests).
	builds uint64
	// churn counts the consecutive builds during which the source's
	// version moved (see ChurnBuilds).
	churn atomic.Int32
}

// ChurnBuilds is how many consecutive builds must each see the source's
// version move while they ran before readers stop waiting for a fresh
// snapshot. Three: one change landing during a build (a calm source,
// someone just acted) never stops a reader from seeing it; a flood of
// changes does.
const ChurnBuilds = 3

// New returns a cache of what build computes. build runs on Run's
// goroutine only; an error keeps the previous snapshot.
func New[T any](cfg Config, build func(ctx context.Context) (T, error)) (*Cache[T], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if build == nil {
		return nil, fmt.Errorf("%w: build is required", ErrConfig)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Cache[T]{cfg: cfg, build: build, kick: make(chan struct{}, 1), built: make(chan struct{}), stopped: make(chan struct{})}, nil
}

// Latest returns the latest snapshot without asking for a new one, or nil
// before the first build.
func (c *Cache[T]) Latest() *Snapshot[T] { return c.cur.Load() }

// Builds is how many builds completed.
func (c *Cache[T]) Builds() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.builds
}

// Invalidate asks for a rebuild soon (within a gap) without waiting.
func (c *Cache[T]) Invalidate() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Get returns a snapshot for a reader arriving now: see the package doc
// for how fresh. It waits only before the first build (until ctx is done
// or Run stops) or, when builds are fast, at most Config.Wait.
func (c *Cache[T]) Get(ctx context.Context) (*Snapshot[T], error) {
	arrival := c.cfg.Now()
	c.mu.Lock()
	built, stopped := c.built, c.stopped
	c.mu.Unlock()
	cur := c.cur.Load()
	c.Invalidate()
	if cur != nil && (cur.Took > c.cfg.FastBuild || !cur.Started.Before(arrival) || c.churn.Load() >= ChurnBuilds) {
		return cur, nil
	}
	var deadline <-chan time.Time
	if cur != nil {
		t := time.NewTimer(c.cfg.Wait)
		defer t.Stop()
		deadline = t.C
	}
	for {
		select {
		case <-built:
			cur = c.cur.Load()
			if cur != nil && !cur.Started.Before(arrival) {
				return cur, nil
			}
			c.mu.Lock()
			built = c.built
			c.mu.Unlock()
		case <-deadline:
			return cur, nil
		case <-stopped:
			if cur = c.cur.Load(); cur != nil {
				return cur, nil
			}
			return nil, ErrStopped
		case <-ctx.Done():
			if cur = c.cur.Load(); cur != nil {
				return cur, nil
			}
			return nil, ctx.Err()
		}
	}
}

// Run builds the first snapshot, then rebuilds as the package doc says,
// until ctx is done. It blocks; call it once.
func (c *Cache[T]) Run(ctx context.Context) {
	defer c.stop.Do(func() { close(c.stopped) })
	poll := time.NewTicker(c.cfg.Poll)
	defer poll.Stop()
	var wait *time.Timer
	defer func() {
		if wait != nil {
			wait.Stop()
		}
	}()
	var last time.Duration
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-c.kick:
			case <-poll.C:
				if !c.stale() {
					continue
				}
			}
			// Rest between builds.
			if gap := time.Duration(c.cfg.GapFactor) * last; gap > 0 {
				if wait == nil {
					wait = time.NewTimer(gap)
				} else {
					wait.Reset(gap)
				}
				select {
				case <-ctx.Done():
					return
				case <-wait.C:
				}
			}
			// Kicks that arrived meanwhile are answered by this build.
			select {
			case <-c.kick:
			default:
			}
		}
		last = c.rebuild(ctx)
	}
}

// stale reports whether the snapshot is older than MaxAge or behind the
// source's version.
func (c *Cache[T]) stale() bool {
	cur := c.cur.Load()
	if cur == nil || c.cfg.Now().Sub(cur.Started) >= c.cfg.MaxAge {
		return true
	}
	return c.cfg.Version != nil && c.cfg.Version() != cur.Version
}

// rebuild builds one snapshot, publishes it and wakes the readers
// waiting for it; it returns how long the build took.
func (c *Cache[T]) rebuild(ctx context.Context) time.Duration {
	var ver uint64
	if c.cfg.Version != nil {
		ver = c.cfg.Version()
	}
	start := c.cfg.Now()
	v, err := c.build(ctx)
	took := c.cfg.Now().Sub(start)
	if err == nil {
		c.cur.Store(&Snapshot[T]{Value: v, Started: start, Took: took, Version: ver})
	}
	if c.cfg.Version != nil && c.cfg.Version() != ver {
		c.churn.Add(1)
	} else {
		c.churn.Store(0)
	}
	c.mu.Lock()
	c.builds++
	close(c.built)
	c.built = make(chan struct{})
	c.mu.Unlock()
	return took
}
