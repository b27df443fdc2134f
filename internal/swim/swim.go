// Package swim is mirrornet's failure detector, after SWIM (Das, Gupta and
// Motivala, 2002) and memberlist: every period a mirror probes one other
// mirror directly; if no answer comes within Timeout it asks IndirectProbes
// others to probe that mirror for it (ping-req), and if none of them gets an
// answer either, it reports the mirror as suspect. The report, its
// dissemination and the refutation (the subject's own newer signed
// liveness statement) are the caller's: this package only decides whom to
// probe and when to suspect.
//
// Cost per mirror is constant in the number of mirrors: one direct probe per
// period sent, about one received, and IndirectProbes more only when a probe
// fails.
//
// Whom to probe when is a schedule, not a draw. Time is cut into slots of
// one period, counted from the Unix epoch, so every mirror whose clock is
// about right agrees which slot it is; in slot s a mirror probes the
// (s mod k)-th of its k neighbours in ring order ([Neighbourhood],
// [Scheduled]). A mirror is the j-th neighbour of exactly one of its k
// probers (its predecessor at distance j+1), so its probers take turns and
// it is probed exactly once in every slot. A crash is then probed within
// one period, where a random order (memberlist's round-robin over a list
// it reshuffles every round) leaves it unprobed for several periods now
// and then: the minimum of k probers' random phases has a long tail, and
// the time until every mirror knows a crash follows it.
//
// The pure parts ([Slot], [Scheduled], [Neighbourhood], [Limiter]) never
// read the clock; [Detector] runs the probe loop with the standard
// library's timers, so tests drive it in a testing/synctest bubble with a
// fake [Transport].
package swim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// ErrConfig: a configuration field is out of range.
var ErrConfig = errors.New("swim: invalid config")

// Config is the detector's timing.
type Config struct {
	// Period is the time between two probes of this mirror (memberlist's
	// ProbeInterval). The profile's heartbeat.
	Period time.Duration
	// Timeout is how long a direct probe waits for the answer before
	// asking others (memberlist's ProbeTimeout; a round trip or two).
	Timeout time.Duration
	// IndirectTimeout is how long the indirect probes wait; Timeout plus
	// IndirectTimeout should fit in Period.
	IndirectTimeout time.Duration
	// IndirectProbes is how many other mirrors are asked to probe a target
	// that did not answer (memberlist's IndirectChecks: 3).
	IndirectProbes int
	// Monitors is how many mirrors each mirror probes, and so how many
	// probe each one (see [Neighbourhood]); 0 probes every mirror.
	Monitors int
	// ReviveEvery: every ReviveEvery periods, one mirror believed dead is
	// pinged too (no suspicion follows if it stays silent), so a mirror
	// cut off by a partition learns, once it heals, that it must refute.
	// 0 never.
	ReviveEvery int
}

// ForPeriod is the default timing for a probe period: a direct timeout of
// two fifths of it, half of it for the indirect probes, three helpers,
// eight monitors per mirror, and a revival ping every five periods.
func ForPeriod(period time.Duration) Config {
	return Config{Period: period, Timeout: period * 2 / 5, IndirectTimeout: period / 2, IndirectProbes: 3, Monitors: 8, ReviveEvery: 5}
}

// Validate reports the first field out of range.
func (c Config) Validate() error {
	switch {
	case c.Period <= 0:
		return fmt.Errorf("%w: Period must be positive (got %s)", ErrConfig, c.Period)
	case c.Timeout <= 0 || c.Timeout > c.Period:
		return fmt.Errorf("%w: Timeout must be in (0, Period] (got %s, Period %s)", ErrConfig, c.Timeout, c.Period)
	case c.IndirectTimeout <= 0:
		return fmt.Errorf("%w: IndirectTimeout must be positive (got %s)", ErrConfig, c.IndirectTimeout)
	case c.IndirectProbes < 0:
		return fmt.Errorf("%w: IndirectProbes must not be negative (got %d)", ErrConfig, c.IndirectProbes)
	case c.Monitors < 0:
		return fmt.Errorf("%w: Monitors must not be negative (got %d)", ErrConfig, c.Monitors)
	case c.ReviveEvery < 0:
		return fmt.Errorf("%w: ReviveEvery must not be negative (got %d)", ErrConfig, c.ReviveEvery)
	}
	return nil
}

// Transport carries probes. Both methods block until the answer or ctx's
// end.
type Transport interface {
	// Ping probes target directly; nil when it answered.
	Ping(ctx context.Context, target peer.ID) error
	// PingVia asks via to probe target; nil when via reports that target
	// answered it.
	PingVia(ctx context.Context, via, target peer.ID) error
}

// Members says whom to probe. Both funcs are called once per period and may
// return slices the detector does not keep.
type Members struct {
	// Live returns the mirrors to probe (alive and suspect, not this one),
	// in ring order: [Neighbourhood]'s answer, so that the probers of a
	// mirror take turns (see [Scheduled]).
	Live func() []peer.ID
	// Dead returns mirrors believed dead but not forgotten (may be nil),
	// sorted by peer ID when Rank is set.
	Dead func() []peer.ID
	// Rank returns this mirror's place among the alive and suspect
	// mirrors (itself included) in peer ID order, and their number. With
	// it the revival pings take turns over the dead mirrors (see
	// [ReviveTarget]); nil: each picks one at random.
	Rank func() (rank, of int)
}

// Outcome is the result of one probe.
type Outcome string

const (
	// Acked: the target answered the direct probe.
	Acked Outcome = "ack"
	// AckedIndirect: the target answered only an indirect probe.
	AckedIndirect Outcome = "indirect_ack"
	// Suspected: neither direct nor indirect probes got an answer.
	Suspected Outcome = "suspect"
)

// Detector runs the probe loop.
type Detector struct {
	cfg     Config
	tr      Transport
	members Members
	suspect func(peer.ID)
	observe func(peer.ID, Outcome)
	lag     func() time.Duration

	mu  sync.Mutex
	rng *rand.Rand
}

// Option configures a Detector.
type Option func(*Detector)

// WithSeed fixes the random source (tests).
func WithSeed(seed uint64) Option {
	return func(d *Detector) { d.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }
}

// WithObserver calls f after every probe with its outcome (metrics).
func WithObserver(f func(peer.ID, Outcome)) Option { return func(d *Detector) { d.observe = f } }

// WithLocalLag stretches every probe's timeouts by lag(), the lateness
// this mirror's own timers show (CPU starvation, a paused process), capped
// at two periods: a starved prober reads answers late and must not take
// that for the target's silence (Lifeguard's local health awareness, as
// memberlist's awareness multiplier).
func WithLocalLag(lag func() time.Duration) Option { return func(d *Detector) { d.lag = lag } }

// stretch is the extra time every timeout gets now.
func (d *Detector) stretch() time.Duration {
	if d.lag == nil {
		return 0
	}
	return min(max(d.lag(), 0), 2*d.cfg.Period)
}

// New returns a detector; suspect is called (from the probe loop, one call
// at a time) for every target that answered no probe. It panics on an
// invalid cfg: validate configuration from users first.
func New(cfg Config, tr Transport, members Members, suspect func(peer.ID), opts ...Option) *Detector {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	d := &Detector{cfg: cfg, tr: tr, members: members, suspect: suspect}
	for _, o := range opts {
		o(d)
	}
	if d.rng == nil {
		d.rng = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return d
}

// Slot is the probe slot that holds t: whole periods since the Unix epoch.
func Slot(t time.Time, period time.Duration) int64 {
	return t.UnixNano() / int64(period)
}

// slotStart is when slot begins.
func slotStart(slot int64, period time.Duration) time.Time {
	return time.Unix(0, slot*int64(period))
}

// Scheduled returns the member to probe in slot: the (slot mod
// len(members))-th, or false if members is empty. When every mirror's
// members are its neighbourhood in ring order ([Neighbourhood]) and views
// agree, each mirror is the one scheduled by exactly one of its probers in
// every slot.
func Scheduled(members []peer.ID, slot int64) (peer.ID, bool) {
	if len(members) == 0 {
		return "", false
	}
	i := slot % int64(len(members))
	if i < 0 {
		i += int64(len(members))
	}
	return members[i], true
}

// ReviveTarget returns the dead mirror to ping in revival round of the
// mirror at rank among of live ones (dead must not be empty): its share of dead (sorted by peer ID,
// as every live mirror sorts it) starts at rank's proportional place, and
// each round moves one on. When the live mirrors agree on who is dead (one
// side of a healed partition), a round pings every dead mirror about once
// (len(dead) ≤ of), and the next round each again from another mirror;
// a mirror left with a few dead in its view (refutations it missed) pings
// every one of them within as many rounds. Picked at random, a third of
// the dead go unpinged in each round, and a missed refutation waits a
// geometric number of rounds (at the lan profile's pace, one every 5 s).
func ReviveTarget(dead []peer.ID, rank, of int, round int64) peer.ID {
	n := int64(len(dead))
	var start int64
	if of > 0 {
		start = int64(rank) * n / int64(of)
	}
	i := (start + round) % n
	if i < 0 {
		i += n
	}
	return dead[i]
}

// Run probes the scheduled mirror at the start of every slot until ctx
// ends. The caller runs it on a goroutine it owns and cancels ctx to stop
// it; Run returns when the probes in flight have ended. A probe that
// overruns its slot (a stretched timeout) skips the slots it overran.
func (d *Detector) Run(ctx context.Context) {
	var revivals sync.WaitGroup
	defer revivals.Wait()
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for {
		slot := Slot(time.Now(), d.cfg.Period) + 1
		timer.Reset(time.Until(slotStart(slot, d.cfg.Period)))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if d.cfg.ReviveEvery > 0 && slot%int64(d.cfg.ReviveEvery) == 0 && d.members.Dead != nil {
			if dead := d.members.Dead(); len(dead) > 0 {
				var target peer.ID
				if d.members.Rank != nil {
					rank, of := d.members.Rank()
					target = ReviveTarget(dead, rank, of, slot/int64(d.cfg.ReviveEvery))
				} else {
					d.mu.Lock()
					target = dead[d.rng.IntN(len(dead))]
					d.mu.Unlock()
				}
				// Beside the scheduled probe, not before it: a silent
				// dead mirror must not delay the probe of a live one.
				revivals.Go(func() { _ = d.ping(ctx, target) })
			}
		}
		live := d.members.Live()
		target, ok := Scheduled(live, slot)
		if !ok {
			continue
		}
		d.Probe(ctx, target, live)
	}
}

func (d *Detector) ping(ctx context.Context, target peer.ID) error {
	pctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout+d.stretch())
	defer cancel()
	return d.tr.Ping(pctx, target)
}

// Probe probes target once, directly and then through up to
// IndirectProbes helpers chosen at random from others, calls suspect if
// nothing answered, and returns the outcome. It blocks for at most Timeout
// plus IndirectTimeout.
func (d *Detector) Probe(ctx context.Context, target peer.ID, others []peer.ID) Outcome {
	out := d.probe(ctx, target, others)
	if out == Suspected && ctx.Err() == nil {
		d.suspect(target)
	}
	if d.observe != nil && ctx.Err() == nil {
		d.observe(target, out)
	}
	return out
}

func (d *Detector) probe(ctx context.Context, target peer.ID, others []peer.ID) Outcome {
	if d.ping(ctx, target) == nil {
		return Acked
	}
	if ctx.Err() != nil {
		return Acked // shutting down: no verdict
	}
	helpers := d.pickHelpers(target, others)
	ictx, cancel := context.WithTimeout(ctx, d.cfg.IndirectTimeout+d.stretch())
	defer cancel()
	// One more direct attempt runs alongside the indirect ones (as
	// memberlist's TCP fallback): a lost packet is not a dead peer.
	acks := make(chan bool, len(helpers)+1)
	var wg sync.WaitGroup
	wg.Go(func() { acks <- d.tr.Ping(ictx, target) == nil })
	for _, h := range helpers {
		wg.Go(func() { acks <- d.tr.PingVia(ictx, h, target) == nil })
	}
	go func() { wg.Wait(); close(acks) }()
	for ok := range acks {
		if ok {
			cancel()
			for range acks { // let the others end
			}
			return AckedIndirect
		}
	}
	if ctx.Err() != nil {
		return Acked
	}
	return Suspected
}

// pickHelpers chooses up to IndirectProbes members other than target.
func (d *Detector) pickHelpers(target peer.ID, others []peer.ID) []peer.ID {
	d.mu.Lock()
	defer d.mu.Unlock()
	var pool []peer.ID
	for _, p := range others {
		if p != target {
			pool = append(pool, p)
		}
	}
	d.rng.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	return pool[:min(len(pool), d.cfg.IndirectProbes)]
}
