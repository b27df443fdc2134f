package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
)

// mirror is the fetch loop's record of one mirror.
type mirror struct {
	url     string
	state   mirrorState
	revived bool
	reason  string // why it was last dropped

	samples int
	ttfb    float64 // EWMA seconds to response headers
	rate    float64 // EWMA of the mirror's total body bytes/second (all its requests), 0 until measured
	fails   int     // consecutive lost races and failures

	active   int
	requests int
	bytes    int64 // verified bytes it delivered
}

type mirrorState int

const (
	mirrorAlive mirrorState = iota
	mirrorSoftDropped
	mirrorDropped
)

const ewmaAlpha = 0.3

func ewma(old, sample float64, n int) float64 {
	if n == 0 {
		return sample
	}
	return ewmaAlpha*sample + (1-ewmaAlpha)*old
}

// expected is the mirror's expected time to deliver a block of size bytes
// while it serves share requests at once (they split its uplink), or 0 when
// it has no samples yet (so untried mirrors are tried first).
func (m *mirror) expected(size int64, share int) time.Duration {
	if m.samples == 0 {
		return 0
	}
	s := m.ttfb
	if m.rate > 0 {
		s += float64(size) * float64(max(1, share)) / m.rate
	}
	return time.Duration(s * float64(1+m.fails) * float64(time.Second))
}

// measured reports whether expected(size) rests on observations: a
// probe's round trip says nothing about the time to move a large block.
// A mirror that has lost races or failed is measured too: slow.
func (m *mirror) measured(size int64) bool {
	return m.samples > 0 && (size < 64<<10 || m.rate > 0 || m.fails > 0)
}

func (m *mirror) usable(per int) bool { return m.state == mirrorAlive && m.active < per }

// job is one wanted block.
type job struct {
	c        cid.Cid
	size     int64  // size hint (raw leaves), 0 unknown
	tsize    uint64 // the parent link's Tsize (bytes of the whole subtree), 0 unknown
	order    int
	queued   bool
	attempts []*attempt // live attempts
	prefix   []byte     // unverified leading bytes from a mirror that died midway
	single   bool       // fetch this block alone, never with its subtree
	from     *mirror    // who sent prefix
}

func (j *job) sizeHint() int64 {
	if j.size > 0 {
		return j.size
	}
	if j.tsize > 0 && j.tsize <= MaxBlockSize {
		return int64(j.tsize)
	}
	return 4 << 10
}

// attempt is one request for a job on a mirror.
type attempt struct {
	j      *job
	m      *mirror
	start  time.Time
	hedge  bool
	cancel context.CancelCauseFunc
	read   atomic.Int64 // body bytes so far, updated by the request goroutine

	share    int       // requests the mirror was serving when this one started (itself included)
	winStart time.Time // stall window
	winRead  int64
}

// fetcher is one Get. Its state is owned by the loop goroutine in run;
// request and discovery goroutines talk to it only through events.
type fetcher struct {
	root cid.Cid
	o    Options
	rng  *rand.Rand

	start       time.Time
	events      chan func()
	ctx         context.Context // cancelled when run returns
	wg          sync.WaitGroup
	discovering bool

	sink     blockSink            // where verified blocks go
	have     map[cid.Cid]struct{} // blocks verified (fetched or resumed)
	resumed  int                  // of those, blocks found in the sink at the start
	jobs     map[cid.Cid]*job
	queue    []*job
	nextJob  int
	mirrors  map[string]*mirror
	mlist    []*mirror
	notes    []string // source errors, for the failure message
	inflight int
	live     map[*attempt]struct{} // attempts in flight
	fatal    error

	bytes, received, dup, wasted int64
	total                        int64 // declared size, from the root block (Progress.Total)
	requests, failovers, hedges  int
	resumeFailures               int
	ttfb                         time.Duration
	drops                        []Drop
	view                         *healthView // what discovery learnt
}

// newFetcher makes a fetcher that puts verified blocks into sink (nil:
// memory).
func newFetcher(root cid.Cid, o Options, sink blockSink) *fetcher {
	if sink == nil {
		sink = memDAG{}
	}
	seed := o.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	return &fetcher{
		root: root, o: o, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		events:  make(chan func(), 64),
		sink:    sink,
		have:    map[cid.Cid]struct{}{},
		jobs:    map[cid.Cid]*job{},
		mirrors: map[string]*mirror{},
		live:    map[*attempt]struct{}{},
		view:    newHealthView(o.MaxStatementBytes),
	}
}

// send delivers an event to the loop unless the loop has finished.
func (f *fetcher) send(ctx context.Context, ev func()) {
	select {
	case f.events <- ev:
	case <-ctx.Done():
	}
}

func (f *fetcher) tick() time.Duration {
	t := min(f.o.HedgeDelay/10, f.o.StallTimeout/10, f.o.ProgressInterval)
	return max(t, 2*time.Millisecond)
}

func (f *fetcher) run(parent context.Context, boots []bootstrap) (*Result, error) {
	f.start = time.Now()
	ctx, cancel := context.WithCancelCause(parent)
	f.ctx = ctx
	defer func() {
		cancel(errDone)
		f.wg.Wait()
	}()
	f.want(link{c: f.root})
	if len(f.jobs) > 0 {
		f.discovering = true
		f.wg.Go(func() { f.discover(ctx, boots) })
	}
	ticker := time.NewTicker(f.tick())
	defer ticker.Stop()
	lastProgress := f.start
	for len(f.jobs) > 0 {
		if f.fatal != nil {
			return nil, f.fatal
		}
		now := time.Now()
		f.schedule(now)
		if f.inflight == 0 && !f.discovering {
			if !f.revive() {
				return nil, f.failure()
			}
			continue
		}
		select {
		case ev := <-f.events:
			ev()
		case now := <-ticker.C:
			f.watch(now)
			if f.o.Progress != nil && now.Sub(lastProgress) >= f.o.ProgressInterval {
				lastProgress = now
				f.o.Progress(f.progress(now))
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("client: fetching %s: %w", f.root, context.Cause(ctx))
		}
	}
	if f.fatal != nil {
		return nil, f.fatal
	}
	// Cancel the losers still running and count what they read, so
	// Received and Duplicate are complete.
	for a := range f.live {
		a.cancel(errDone)
	}
	for f.inflight > 0 {
		select {
		case ev := <-f.events:
			ev()
		case <-ctx.Done():
			return nil, fmt.Errorf("client: fetching %s: %w", f.root, context.Cause(ctx))
		}
	}
	if f.o.Progress != nil {
		f.o.Progress(f.progress(time.Now()))
	}
	res := &Result{
		Root: f.root, Bytes: f.bytes, Blocks: len(f.have), Duration: time.Since(f.start),
		TTFB: f.ttfb, PerMirror: map[string]int64{}, Dropped: f.drops,
		Requests: f.requests, Hedges: f.hedges, Received: f.received, Duplicate: f.dup, Wasted: f.wasted,
		Resumed: f.resumed, resumeFailures: f.resumeFailures,
	}
	switch s := f.sink.(type) {
	case memDAG:
		res.blocks = s
	case *spool:
		res.spool = s
	case treeSink:
		res.spool = s.s
	}
	for _, m := range f.mlist {
		if m.bytes > 0 {
			res.PerMirror[m.url] = m.bytes
		}
	}
	res.Peers = f.view.peersByURL(f.o.Now(), f.o.MaxAge)
	return res, nil
}

func (f *fetcher) progress(now time.Time) Progress {
	p := Progress{Bytes: f.bytes, Blocks: len(f.have), Failovers: f.failovers, Elapsed: now.Sub(f.start), Total: f.total}
	if s := p.Elapsed.Seconds(); s > 0 {
		p.Rate = float64(f.bytes) / s
	}
	for _, m := range f.mlist {
		if m.active > 0 {
			p.Mirrors++
		}
	}
	return p
}

// want queues c unless it is held or already wanted. A block the sink
// already holds (a resumed download) is taken from there.
func (f *fetcher) want(l link) {
	c := l.c
	if _, ok := f.have[c]; ok {
		return
	}
	if _, ok := f.jobs[c]; ok {
		return
	}
	if data, ok := identityData(c); ok {
		f.accept(c, data)
		return
	}
	if f.sink.has(c) {
		if data, ok := f.sink.block(c); ok {
			f.resumed++
			f.acceptFrom(c, data, false)
			return
		}
	}
	j := &job{c: c, size: l.size, tsize: l.tsize, order: f.nextJob, queued: true}
	f.nextJob++
	f.jobs[c] = j
	f.queue = append(f.queue, j)
}

// accept stores a verified block and wants its children.
func (f *fetcher) accept(c cid.Cid, data []byte) { f.acceptFrom(c, data, true) }

// acceptFrom is accept for a block that store says is not yet in the sink.
func (f *fetcher) acceptFrom(c cid.Cid, data []byte, store bool) {
	links, err := linksOf(c, data)
	if err != nil {
		f.fatal = err
		return
	}
	if store {
		if err := f.sink.put(c, data); err != nil {
			f.fatal = err
			return
		}
	}
	f.have[c] = struct{}{}
	if f.o.onVerified != nil {
		f.o.onVerified(c, data)
	}
	f.bytes += int64(len(data))
	if c == f.root {
		f.total = int64(len(data))
		for _, l := range links {
			f.total += int64(l.tsize)
		}
	}
	if j, ok := f.jobs[c]; ok {
		// Wanted on its own too (a block the subtree shares with
		// another part of the DAG): stop fetching it.
		for _, a := range j.attempts {
			a.cancel(errLostRace)
		}
		delete(f.jobs, c)
	}
	for _, l := range links {
		f.want(l)
	}
}

// subtreeBudget is the CAR byte budget for fetching j with its whole
// subtree, or 0 to fetch the block alone.
func (f *fetcher) subtreeBudget(j *job) int64 {
	if j.single || j.c.Type() != cid.DagProtobuf || j.tsize == 0 || f.o.SubtreeBytes <= 0 || j.tsize > uint64(f.o.SubtreeBytes) {
		return 0
	}
	// Blocks total at most Tsize; each adds a CID and a length.
	return 2*int64(j.tsize) + 64<<10
}

// addMirror registers a mirror found by discovery (probe answered 200 in
// rtt).
func (f *fetcher) addMirror(u string, rtt time.Duration) {
	m, ok := f.mirrors[u]
	if !ok {
		m = &mirror{url: u}
		f.mirrors[u] = m
		f.mlist = append(f.mlist, m)
		f.o.Logger.Debug("mirror added", "mirror", u, "rtt", rtt)
	}
	if rtt > 0 && m.samples == 0 {
		// A probe round trip is a fair first guess of time to first byte.
		m.ttfb, m.samples = rtt.Seconds(), 1
	}
}

// rejectMirror records a mirror that failed its probe.
func (f *fetcher) rejectMirror(u string, err error) {
	m, ok := f.mirrors[u]
	if !ok {
		m = &mirror{url: u}
		f.mirrors[u] = m
		f.mlist = append(f.mlist, m)
	}
	f.drop(m, err)
}

func (f *fetcher) drop(m *mirror, err error) {
	if m.state != mirrorAlive {
		return
	}
	var fl *failure
	if errors.As(err, &fl) && fl.soft && !m.revived {
		m.state = mirrorSoftDropped
	} else {
		m.state = mirrorDropped
	}
	m.reason = err.Error()
	f.failovers++
	f.drops = append(f.drops, Drop{Mirror: m.url, Reason: m.reason})
	f.o.Logger.Debug("mirror dropped", "mirror", m.url, "reason", m.reason)
	for _, j := range f.jobs {
		for _, a := range j.attempts {
			if a.m == m {
				a.cancel(errDropped)
			}
		}
	}
}

// revive gives soft-dropped mirrors a second chance when nothing else is
// left; it reports whether any came back.
func (f *fetcher) revive() bool {
	revived := false
	for _, m := range f.mlist {
		if m.state == mirrorSoftDropped {
			m.state, m.revived, m.fails = mirrorAlive, true, 0
			revived = true
			f.o.Logger.Debug("mirror revived", "mirror", m.url)
		}
	}
	return revived
}

// failure builds the fail-closed error naming every mirror.
func (f *fetcher) failure() error {
	var parts []string
	for _, m := range f.mlist {
		r := m.reason
		if r == "" {
			r = "unused"
		}
		parts = append(parts, m.url+": "+r)
	}
	parts = append(parts, f.notes...)
	if len(parts) == 0 {
		parts = []string{"no mirror found"}
	}
	return fmt.Errorf("%w %s: %s", ErrNoMirror, f.root, strings.Join(parts, "; "))
}

// schedule hands queued jobs to mirrors and hedges late requests.
func (f *fetcher) schedule(now time.Time) {
	for len(f.queue) > 0 && f.inflight < f.o.Parallel {
		j := f.queue[0]
		if f.jobs[j.c] != j {
			// Arrived in another block's subtree meanwhile.
			f.queue = f.queue[1:]
			continue
		}
		m := f.pick(j, false, false)
		if m == nil {
			break
		}
		f.queue = f.queue[1:]
		j.queued = false
		f.launch(j, m, now, false)
	}
	if f.inflight < f.o.Parallel {
		f.hedge(now)
	}
}

// pick chooses a mirror with a free slot for j: the one with the lowest
// expected time, an untried one first, now and then (5%) a random one. For
// a first attempt it skips mirrors so slow that the queue would drain
// faster without them.
func (f *fetcher) pick(j *job, hedging, idleOnly bool) *mirror {
	size := j.sizeHint()
	var free []*mirror
	best := time.Duration(-1) // best single-request time among measured mirrors
	capacity := 0.0           // blocks/second of all measured mirrors
	for _, m := range f.mlist {
		if m.state != mirrorAlive {
			continue
		}
		if m.measured(size) {
			if e := m.expected(size, 1); best < 0 || e < best {
				best = e
			}
			if e := m.expected(size, f.o.PerMirror); e > 0 {
				capacity += float64(f.o.PerMirror) / e.Seconds()
			}
		}
		if !m.usable(f.o.PerMirror) || (idleOnly && m.active > 0) || slices.ContainsFunc(j.attempts, func(a *attempt) bool { return a.m == m }) {
			continue
		}
		free = append(free, m)
	}
	if len(free) == 0 {
		return nil
	}
	if !hedging && best > 0 && capacity > 0 {
		// Time for the measured mirrors to drain the queue: a mirror
		// that would take longer than that for one block only adds a
		// straggler to the tail.
		drain := time.Duration(float64(len(f.queue)) / capacity * float64(time.Second))
		free = slices.DeleteFunc(free, func(m *mirror) bool {
			return m.measured(size) && m.expected(size, m.active+1) > drain+2*best
		})
		if len(free) == 0 {
			return nil
		}
	}
	if len(free) > 1 && f.rng.IntN(20) == 0 {
		return free[f.rng.IntN(len(free))]
	}
	return slices.MinFunc(free, func(a, b *mirror) int {
		ea, eb := a.expected(size, a.active+1), b.expected(size, b.active+1)
		if ea != eb {
			return int(ea - eb)
		}
		return a.active - b.active
	})
}

// hedge starts a second request for jobs whose request is late (HedgeFactor
// times its mirror's expected time) or, once the queue is empty, would
// finish later than a fresh request on an idle mirror.
func (f *fetcher) hedge(now time.Time) {
	var running []*job
	for _, j := range f.jobs {
		if len(j.attempts) == 1 {
			running = append(running, j)
		}
	}
	slices.SortFunc(running, func(a, b *job) int { return a.order - b.order })
	for _, j := range running {
		if f.inflight >= f.o.Parallel {
			return
		}
		a := j.attempts[0]
		elapsed := now.Sub(a.start)
		size := j.sizeHint()
		late := elapsed > f.hedgeDelay(a.m, size)
		tail := false
		if !late && len(f.queue) == 0 {
			if idle, ok := f.bestIdle(size); ok {
				tail = f.remaining(a, now) > 2*idle+f.o.HedgeDelay/10
			}
		}
		if !late && !tail {
			continue
		}
		m := f.pick(j, true, tail && !late)
		if m == nil {
			continue
		}
		if len(f.queue) > 0 && m.active > 0 {
			continue // spare capacity goes to the queue first
		}
		f.o.Logger.Debug("hedge", "cid", j.c, "slow", a.m.url, "to", m.url, "after", elapsed, "tail", tail, "size", j.size)
		f.hedges++
		f.launch(j, m, now, true)
	}
}

// hedgeDelay is how long a request for size bytes may run on m before it
// is hedged: HedgeFactor times what m is expected to take or, when m has no
// sample for blocks this large, times what the best measured mirror takes
// (plus m's own time to first byte); HedgeDelay when nothing is measured.
func (f *fetcher) hedgeDelay(m *mirror, size int64) time.Duration {
	var d time.Duration
	switch {
	case m.measured(size):
		d = m.expected(size, max(1, m.active))
	default:
		best := time.Duration(-1)
		for _, o := range f.mlist {
			if e := o.expected(size, o.active+1); o.state == mirrorAlive && o.measured(size) && (best < 0 || e < best) {
				best = e
			}
		}
		if best < 0 {
			return f.o.HedgeDelay
		}
		d = best + time.Duration(m.ttfb*float64(time.Second))
	}
	return max(time.Duration(f.o.HedgeFactor*float64(d)), f.o.HedgeDelay/10)
}

// remaining predicts how long attempt a still needs.
func (f *fetcher) remaining(a *attempt, now time.Time) time.Duration {
	size := a.j.sizeHint()
	read := a.read.Load()
	elapsed := now.Sub(a.start)
	if read > 0 && a.j.size > 0 && elapsed > 0 {
		left := max(0, size-int64(len(a.j.prefix))-read)
		return time.Duration(float64(elapsed) * float64(left) / float64(read))
	}
	if !a.m.measured(size) {
		return 0 // unknown: only the late rule may hedge it
	}
	return max(0, a.m.expected(size, max(1, a.m.active))-elapsed)
}

// bestIdle is the expected time of the best measured mirror with nothing
// in flight; ok is false when there is none.
func (f *fetcher) bestIdle(size int64) (best time.Duration, ok bool) {
	for _, m := range f.mlist {
		if m.state == mirrorAlive && m.active == 0 && m.measured(size) {
			if e := m.expected(size, 1); !ok || e < best {
				best, ok = e, true
			}
		}
	}
	return best, ok
}

// launch starts one request for j on m.
func (f *fetcher) launch(j *job, m *mirror, now time.Time, hedge bool) {
	ctx, cancel := context.WithCancelCause(f.ctx)
	a := &attempt{j: j, m: m, start: now, hedge: hedge, cancel: cancel, winStart: now, share: m.active + 1}
	j.attempts = append(j.attempts, a)
	f.live[a] = struct{}{}
	m.active++
	m.requests++
	f.inflight++
	f.requests++
	prefix, subtree := j.prefix, f.subtreeBudget(j)
	f.wg.Go(func() {
		defer cancel(nil)
		r := fetchBlock(ctx, f.o.HTTPClient, m.url, j.c, prefix, subtree, &a.read)
		// The loop may have ended: deliver on a context it cancels.
		select {
		case f.events <- func() { f.finish(a, r) }:
		case <-f.ctx.Done():
		}
	})
}

// watch cancels requests that move less than MinRate over StallTimeout.
func (f *fetcher) watch(now time.Time) {
	need := max(1, int64(float64(f.o.MinRate)*f.o.StallTimeout.Seconds()))
	for _, j := range f.jobs {
		for _, a := range j.attempts {
			if now.Sub(a.winStart) < f.o.StallTimeout {
				continue
			}
			read := a.read.Load()
			if got := read - a.winRead; got < need {
				a.cancel(soft("stalled: %d bytes in %s", got, f.o.StallTimeout))
				continue
			}
			a.winStart, a.winRead = now, read
		}
	}
}

// finish handles the end of an attempt.
func (f *fetcher) finish(a *attempt, r reply) {
	j, m := a.j, a.m
	j.attempts = slices.DeleteFunc(j.attempts, func(x *attempt) bool { return x == a })
	delete(f.live, a)
	m.active--
	f.inflight--
	read := a.read.Load()
	f.received += read
	if r.ttfb > 0 {
		if t := a.start.Add(r.ttfb).Sub(f.start); f.ttfb == 0 || t < f.ttfb {
			f.ttfb = t
		}
	}
	_, held := f.have[j.c]
	if r.err != nil && r.data != nil && !held {
		// A subtree CAR failed midway: what verified before the
		// failure is good.
		m.bytes += f.acceptAll(j.c, r.data, r.more)
		held = true
	}
	switch {
	case r.err == nil && held:
		f.dup += read
	case r.err == nil:
		f.sample(m, r.ttfb, read, time.Since(a.start), (a.share+m.active+1)/2)
		m.fails = 0
		m.bytes += int64(len(r.data) - r.usedPre)
		if r.usedPre > 0 {
			f.creditPrefix(j, r.usedPre)
		}
		j.prefix = nil
		m.bytes += f.acceptAll(j.c, r.data, r.more) - int64(len(r.data))
		for _, o := range j.attempts {
			o.cancel(errLostRace)
		}
	case errors.Is(r.err, errLostRace), errors.Is(r.err, errDone), errors.Is(r.err, errDropped):
		f.o.Logger.Debug("cancelled", "cid", j.c, "mirror", m.url, "why", r.err, "read", read, "hedge", a.hedge)
		if errors.Is(r.err, errDropped) && m.state == mirrorSoftDropped {
			f.keepPartial(j, m, r, read) // the mirror died; its bytes may still be good
		} else {
			f.dup += read
		}
		if errors.Is(r.err, errLostRace) {
			// Slower than a hedge: count it against the mirror.
			f.sample(m, time.Since(a.start), 0, time.Since(a.start), 1)
			m.fails++
		}
	case errors.Is(r.err, errOverBudget):
		// The subtree is bigger than its parent's link said: fetch
		// block by block, blaming nobody.
		f.o.Logger.Debug("subtree over budget", "cid", j.c, "mirror", m.url, "tsize", j.tsize)
		j.single = true
		f.dup += read
	case errors.Is(r.err, errResume):
		// A resumed block failed: the prefix (from a mirror that died)
		// or this mirror lied. Start over from scratch, blaming neither.
		f.o.Logger.Debug("resume failed", "cid", j.c, "mirror", m.url)
		f.resumeFailures++
		f.wasted += read + int64(len(j.prefix))
		j.prefix, j.from = nil, nil
	default:
		var fl *failure
		f.o.Logger.Debug("failed", "cid", j.c, "mirror", m.url, "err", r.err, "read", read, "partial", len(r.partial))
		if errors.As(r.err, &fl) && fl.soft {
			f.keepPartial(j, m, r, read)
		} else {
			f.wasted += read
		}
		if !errors.As(r.err, &fl) {
			// Not a mirror failure: the DAG itself is unusable.
			f.fatal = r.err
			return
		}
		f.drop(m, r.err)
	}
	if _, held := f.have[j.c]; !held && len(j.attempts) == 0 && !j.queued {
		// Back to the front of the queue: it was due first.
		j.queued = true
		f.queue = slices.Insert(f.queue, 0, j)
	}
}

// sample folds one request's timings into m's EWMAs.
// share is how many requests the mirror was serving meanwhile (they split
// its uplink), so m.rate estimates the mirror's total rate.
func (f *fetcher) sample(m *mirror, ttfb time.Duration, n int64, total time.Duration, share int) {
	m.ttfb = ewma(m.ttfb, ttfb.Seconds(), m.samples)
	if body := (total - ttfb).Seconds(); n >= 64<<10 && body > 0 {
		r := float64(n) / body * float64(max(1, share))
		if m.rate == 0 {
			m.rate = r
		} else {
			m.rate = ewma(m.rate, r, 1)
		}
	}
	m.samples++
}

// creditPrefix credits the mirror that sent a resumed block's prefix.
func (f *fetcher) creditPrefix(j *job, n int) {
	if j.from != nil {
		j.from.bytes += int64(n)
	}
}

// keepPartial keeps the unverified bytes of a raw block whose mirror failed
// midway, so the next request resumes after them (HTTP Range) instead of
// fetching them again. The block is still verified whole.
func (f *fetcher) keepPartial(j *job, m *mirror, r reply, read int64) {
	if len(r.partial) > len(j.prefix) && len(r.partial) < MaxBlockSize && (j.size == 0 || int64(len(r.partial)) < j.size) {
		f.dup += int64(len(j.prefix)) // superseded prefix
		j.prefix, j.from = r.partial, m
		return
	}
	f.dup += read
}

// acceptAll accepts a verified block and the verified blocks of its subtree
// that came with it, and returns their bytes.
func (f *fetcher) acceptAll(c cid.Cid, data []byte, more []block) int64 {
	n := int64(len(data))
	f.accept(c, data)
	for _, b := range more {
		if _, ok := f.have[b.c]; ok {
			continue
		}
		f.accept(b.c, b.data)
		n += int64(len(b.data))
	}
	return n
}
