package snapcache

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// source is a value whose build takes a chosen (virtual) time and can be
// held up.
type source struct {
	version atomic.Uint64
	builds  atomic.Int64
	took    atomic.Int64 // nanoseconds per build
	hold    chan struct{}
}

func (s *source) build(ctx context.Context) (uint64, error) {
	s.builds.Add(1)
	if s.hold != nil {
		select {
		case <-s.hold:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	time.Sleep(time.Duration(s.took.Load())) // virtual time: the build's cost
	return s.version.Load(), nil
}

func start(t *testing.T, cfg Config, s *source) (*Cache[uint64], context.CancelFunc) {
	t.Helper()
	cfg.Version = func() uint64 { return s.version.Load() }
	c, err := New(cfg, s.build)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return c, cancel
}

// A reader never waits for a slow build once a snapshot exists: it gets
// the latest at once, and a rebuild follows.
func TestSlowBuildNeverBlocksReaders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &source{}
		s.took.Store(int64(time.Second))
		c, _ := start(t, DefaultConfig(), s)
		first, err := c.Get(t.Context())
		if err != nil || first == nil {
			t.Fatalf("first Get: %v %v", first, err)
		}
		synctest.Wait()
		s.version.Store(7)
		s.hold = make(chan struct{}) // the next build hangs
		t0 := time.Now()
		for range 50 {
			got, err := c.Get(t.Context())
			if err != nil || got != first {
				t.Fatalf("Get during a hung build = %v, %v; want the latest snapshot", got, err)
			}
		}
		if d := time.Since(t0); d != 0 {
			t.Fatalf("readers waited %s of virtual time for a slow build", d)
		}
		close(s.hold)
		time.Sleep(10 * time.Second)
		if got, _ := c.Get(t.Context()); got.Value != 7 {
			t.Fatalf("after the build: value %d, want 7", got.Value)
		}
	})
}

// Fast builds: a reader sees the source as it was when it arrived.
func TestFastBuildIsFresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &source{}
		s.took.Store(int64(time.Millisecond))
		c, _ := start(t, DefaultConfig(), s)
		for v := range uint64(20) {
			s.version.Store(v)
			got, err := c.Get(t.Context())
			if err != nil || got.Value != v {
				t.Fatalf("Get after change %d: %v, %v", v, got, err)
			}
		}
	})
}

// Many readers at once cost one build, and builds rest between them.
func TestRebuildsCoalesce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &source{}
		s.took.Store(int64(10 * time.Millisecond))
		c, _ := start(t, DefaultConfig(), s)
		if _, err := c.Get(t.Context()); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		before := s.builds.Load()
		var wg sync.WaitGroup
		for range 200 {
			wg.Go(func() {
				if _, err := c.Get(t.Context()); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if n := s.builds.Load() - before; n < 1 || n > 2 {
			t.Fatalf("200 concurrent readers caused %d builds, want 1 or 2", n)
		}
		// Readers that never stop cost at most one build per build and
		// gap (10 ms + 4 * 10 ms).
		before = s.builds.Load()
		t0 := time.Now()
		for time.Since(t0) < time.Second {
			c.Get(t.Context())
			time.Sleep(time.Millisecond)
		}
		if n := s.builds.Load() - before; n > 21 {
			t.Fatalf("%d builds in one second of constant reading, want at most 21", n)
		}
	})
}

// A change of version is built without any reader, within a poll and a
// gap; so is a snapshot older than MaxAge.
func TestVersionAndAgeRebuild(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &source{}
		cfg := DefaultConfig()
		c, _ := start(t, cfg, s)
		synctest.Wait()
		if c.Latest() == nil {
			t.Fatal("no first snapshot")
		}
		s.version.Store(3)
		time.Sleep(cfg.Poll)
		synctest.Wait()
		if got := c.Latest().Value; got != 3 {
			t.Fatalf("a poll after a change: value %d, want 3", got)
		}
		n := s.builds.Load()
		time.Sleep(cfg.MaxAge - time.Millisecond)
		synctest.Wait()
		if s.builds.Load() != n {
			t.Fatal("rebuilt with no change before MaxAge")
		}
		time.Sleep(cfg.Poll)
		synctest.Wait()
		if s.builds.Load() != n+1 {
			t.Fatalf("%d builds after MaxAge, want %d", s.builds.Load(), n+1)
		}
	})
}

// Before the first build a reader waits for it; if Run stops first, the
// reader is told.
func TestGetBeforeFirstBuild(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &source{hold: make(chan struct{})}
		c, cancel := start(t, DefaultConfig(), s)
		got := make(chan error, 1)
		go func() {
			_, err := c.Get(t.Context())
			got <- err
		}()
		synctest.Wait()
		select {
		case err := <-got:
			t.Fatalf("Get returned before the first build: %v", err)
		default:
		}
		cancel()
		if err := <-got; !errors.Is(err, ErrStopped) {
			t.Fatalf("Get after Run stopped: %v, want ErrStopped", err)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	for _, mod := range []func(*Config){
		func(c *Config) { c.GapFactor = -1 },
		func(c *Config) { c.Wait = -1 },
		func(c *Config) { c.Poll = 0 },
		func(c *Config) { c.MaxAge = 0 },
	} {
		cfg := DefaultConfig()
		mod(&cfg)
		if _, err := New(cfg, func(context.Context) (int, error) { return 0, nil }); !errors.Is(err, ErrConfig) {
			t.Errorf("config %+v: %v, want ErrConfig", cfg, err)
		}
	}
	if _, err := New[int](DefaultConfig(), nil); !errors.Is(err, ErrConfig) {
		t.Errorf("nil build: %v", err)
	}
}

// While the source changes during every build (a flood), readers get the
// latest snapshot at once instead of waiting for one that is stale before
// it is served; once the source is calm again they see it as it is.
func TestChurningSourceDoesNotMakeReadersWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &source{}
		s.took.Store(int64(5 * time.Millisecond))
		c, _ := start(t, DefaultConfig(), s)
		if _, err := c.Get(t.Context()); err != nil {
			t.Fatal(err)
		}
		// A flood: the version moves every millisecond.
		ctx, stop := context.WithCancel(t.Context())
		flooded := make(chan struct{})
		go func() {
			defer close(flooded)
			for ctx.Err() == nil {
				s.version.Add(1)
				time.Sleep(time.Millisecond)
			}
		}()
		for c.churn.Load() < ChurnBuilds {
			c.Get(t.Context()) // each read asks for a build
		}
		t0 := time.Now()
		for range 20 {
			if _, err := c.Get(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		if d := time.Since(t0); d != 0 {
			t.Fatalf("readers waited %s of virtual time while the source churned", d)
		}
		stop()
		<-flooded
		// Calm again: one build that sees no change, then reads are fresh.
		time.Sleep(time.Second)
		synctest.Wait()
		for v := uint64(1_000_000); v < 1_000_005; v++ {
			s.version.Store(v)
			got, err := c.Get(t.Context())
			if err != nil || got.Value != v {
				t.Fatalf("Get after the flood, change %d: %v, %v", v, got, err)
			}
		}
	})
}
