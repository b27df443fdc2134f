package replicate

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	bsmsg "github.com/ipfs/boxo/bitswap/message"
	pb "github.com/ipfs/boxo/bitswap/message/pb"
	iface "github.com/ipfs/boxo/bitswap/network"
	"github.com/ipfs/boxo/bitswap/network/bsnet"
	"github.com/ipfs/boxo/exchange"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"

	"github.com/mirrornet/mirrornet/internal/bitswapserve"
	"github.com/mirrornet/mirrornet/internal/bundle/verify"
)

// The fetch side. A bitswap session picks one holder per block, with odds
// proportional to what each holder already delivered, so the first holder
// to answer gets most of the work and three holders are little faster than
// one. Fetch therefore schedules the requests itself, over bitswap's own
// wire protocol (so any bitswap server, a stock IPFS node included, can
// answer):
//
//   - every holder gets want-block requests (with send-dont-have) on its
//     own message stream, and keeps as many outstanding as its window, the
//     bandwidth-delay product of the path to it (see window);
//   - the DAG is walked as blocks arrive; the next block goes to the
//     holder with the most room, so each holder's share follows its speed;
//   - a holder that answers DONT_HAVE is not asked for that block again;
//     one that disconnects or fails a send has its requests moved to the
//     others; a request left unanswered for hedgeAfter is also asked of
//     another holder with room (first answer wins, the other is
//     cancelled);
//   - a block no holder can give (all said DONT_HAVE, or none is
//     connected) is asked for through a bitswap session, which also asks
//     every connected peer and waits for providers until ctx ends.
//
// Blocks are taken off the network in the bitswap network's receive path
// (hookNet), before bitswap's client sees them: bitswap's decoder derived
// each block's CID from its bytes, so a block is claimed only if its
// multihash is one a fetch asked for, and stored with PutVerified. Every
// received block is cancelled at every holder it was asked of.

// hookNet is the network handed to bitswap: the guarded serving network,
// with every received message shown to the fetches in progress first.
type hookNet struct {
	*bitswapserve.Network
	r *Replicator
}

func (n *hookNet) Start(rs ...iface.Receiver) {
	w := make([]iface.Receiver, len(rs))
	for i, rc := range rs {
		w[i] = &hookRecv{r: n.r, next: rc, first: i == 0}
	}
	n.Network.Start(w...)
}

type hookRecv struct {
	r     *Replicator
	next  iface.Receiver
	first bool // bitswap passes one receiver; if ever several, deliver once
}

func (h *hookRecv) ReceiveMessage(ctx context.Context, p peer.ID, m bsmsg.BitSwapMessage) {
	if h.first {
		h.r.deliver(p, m)
	}
	h.next.ReceiveMessage(ctx, p, m)
}

func (h *hookRecv) ReceiveError(err error)  { h.next.ReceiveError(err) }
func (h *hookRecv) PeerConnected(p peer.ID) { h.next.PeerConnected(p) }
func (h *hookRecv) PeerDisconnected(p peer.ID) {
	if h.first {
		h.r.each(func(f *walk) { f.post(event{kind: evGone, from: p}) })
	}
	h.next.PeerDisconnected(p)
}

// each calls fn for every fetch in progress.
func (r *Replicator) each(fn func(*walk)) {
	r.fmu.Lock()
	fs := make([]*walk, 0, len(r.fetches))
	for f := range r.fetches {
		fs = append(fs, f)
	}
	r.fmu.Unlock()
	for _, f := range fs {
		fn(f)
	}
}

// deliver hands the blocks and DONT_HAVEs of a received message to the
// fetches that asked for them. It runs on the network's receive goroutine
// of that message (one per incoming stream) and stores claimed blocks
// there, so blocks from several streams are stored in parallel.
func (r *Replicator) deliver(p peer.ID, m bsmsg.BitSwapMessage) {
	blks, dh := m.Blocks(), m.DontHaves()
	if len(blks) == 0 && len(dh) == 0 {
		return
	}
	r.each(func(f *walk) {
		for _, b := range blks {
			f.receive(p, b)
		}
		for _, c := range dh {
			f.mu.Lock()
			_, ok := f.wanted[string(c.Hash())]
			f.mu.Unlock()
			if ok {
				f.post(event{kind: evDontHave, from: p, c: c})
			}
		}
	})
}

type eventKind int

const (
	evBlock    eventKind = iota // c arrived from (and is stored; err if storing failed)
	evDontHave                  // from says it does not have c
	evGone                      // from disconnected
	evSendFail                  // a send to from failed
	evRTT                       // a probe measured the round trip to from
)

type event struct {
	kind  eventKind
	from  peer.ID // "" for a block that came through the fallback session
	c     cid.Cid
	size  int
	links []cid.Cid
	err   error
	rtt   time.Duration
}

// fetch is one walk of a DAG in progress.
type walk struct {
	r      *Replicator
	ctx    context.Context
	events chan event

	mu sync.Mutex
	// wanted holds the blocks asked for and not yet claimed, by multihash:
	// the receive path claims a block by deleting it.
	wanted map[string]cid.Cid
	ever   map[string]struct{} // every block asked for, to count duplicates
	// fb holds the blocks also asked for through the fallback session:
	// those are left to bitswap's decoder (claim), so that the session's
	// request is answered too.
	fb map[string]struct{}
}

func (f *walk) post(ev event) {
	select {
	case f.events <- ev:
	case <-f.ctx.Done():
	}
}

// receive stores blk if f asked for it and nobody claimed it yet.
func (f *walk) receive(from peer.ID, blk blocks.Block) {
	k := string(blk.Cid().Hash())
	f.mu.Lock()
	c, ok := f.wanted[k]
	delete(f.wanted, k)
	f.mu.Unlock()
	if !ok {
		if f.asked(k) {
			f.r.dups.Add(1) // a hedged request answered twice
		}
		return
	}
	f.post(f.store(from, c, blk))
}

// claim is receive for a block taken off the stream (see recv.go) by its
// multihash k: it stores blk and reports true if f asked for it, nobody
// claimed it yet and the fallback session does not wait for it too.
func (f *walk) claim(from peer.ID, k string, blk blocks.Block) bool {
	f.mu.Lock()
	c, ok := f.wanted[k]
	if _, fb := f.fb[k]; ok && !fb {
		delete(f.wanted, k)
	} else {
		ok = false
	}
	f.mu.Unlock()
	if ok {
		f.post(f.store(from, c, blk))
	}
	return ok
}

// asked reports whether the walk ever asked for block k (multihash).
func (f *walk) asked(k string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.ever[k]
	return ok
}

// store puts blk, received for c, and reads its links. blk's CID was
// derived from its bytes, by bitswap's decoder or by the claimStream (see
// ipfsbs.WithBitswapDecodedPuts): comparing multihashes is enough, and the
// store does not hash it again.
func (f *walk) store(from peer.ID, c cid.Cid, blk blocks.Block) event {
	ev := event{kind: evBlock, from: from, c: c}
	if !bytes.Equal(blk.Cid().Hash(), c.Hash()) {
		ev.err = fmt.Errorf("%w: %s", ErrBadBlock, c)
		return ev
	}
	data := blk.RawData()
	if err := f.r.bstore.Put(f.ctx, blk); err != nil {
		ev.err = fmt.Errorf("replicate: %w", err)
		return ev
	}
	links, err := verify.Links(c, data)
	if err != nil {
		ev.err = fmt.Errorf("replicate: %w", err)
		return ev
	}
	ev.size, ev.links = len(data), links
	return ev
}

// holder is the fetch loop's view of one holder.
type holder struct {
	id          peer.ID
	out         map[string]time.Time // requests outstanding, by multihash: when asked
	lacks       map[string]struct{}  // blocks it said it does not have
	win         window
	gone        bool
	send        *sender
	got         int       // blocks it delivered first
	bytes       int64     // their bytes
	first, last time.Time // its first and last such delivery
}

// want is a block asked for and not yet received.
type want struct {
	c     cid.Cid
	asked []*holder // holders asked, in order
	fb    bool      // asked through the fallback session
}

// hedgeFloor is the least time a request waits before it is also asked of
// another holder; hedgeFactor times the holder's smallest delivery time
// plus its window's worth of transfer is the usual wait. Only an idle
// holder takes over a request (see hedge): on a loaded machine every
// answer is late, and hedging then only sends blocks twice.
const (
	hedgeFloor  = 2 * time.Second
	hedgeFactor = 4
)

func (h *holder) hedgeAfter() time.Duration {
	d := hedgeFloor
	if delay := h.win.pathDelay(); h.win.rate > 0 && delay > 0 {
		queue := time.Duration(float64(h.win.bytes()) / h.win.rate * float64(time.Second))
		d = max(d, hedgeFactor*(delay+queue))
	}
	return d
}

// fetchDAG walks root's DAG, making every block present and verified, and
// returns the progress counters. Blocks already stored are not fetched
// (so a restarted fetch resumes). A second pass counts the DAG's blocks
// again and adds to p.Fetched.
func (r *Replicator) fetchDAG(ctx context.Context, holders []peer.ID, root cid.Cid, p Progress, progress func(Progress)) (Progress, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f := &walk{r: r, ctx: ctx, events: make(chan event, 64), wanted: map[string]cid.Cid{}, ever: map[string]struct{}{}, fb: map[string]struct{}{}}
	r.fmu.Lock()
	r.fetches[f] = struct{}{}
	r.fmu.Unlock()
	defer func() {
		r.fmu.Lock()
		delete(r.fetches, f)
		r.fmu.Unlock()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // stop the senders and fallbacks before waiting for them

	l := &loop{f: f, r: r, ctx: ctx, wg: &wg, wants: map[string]*want{}, seen: map[string]struct{}{}}
	l.fbCtx, l.fbCancel = context.WithCancel(ctx)
	for _, id := range holders {
		h := &holder{id: id, out: map[string]time.Time{}, lacks: map[string]struct{}{},
			win: newWindow(int64(r.cfg.WindowMin), int64(r.cfg.WindowMax), int64(r.cfg.WindowMin))}
		h.send = newSender(ctx, &wg, r.h, id, func(err error) { f.post(event{kind: evSendFail, from: id, err: err}) })
		l.holders = append(l.holders, h)
		wg.Go(func() {
			if rtt := probeRTT(ctx, r.h, id); rtt > 0 {
				f.post(event{kind: evRTT, from: id, rtt: rtt})
			}
		})
	}
	p.Blocks, p.Bytes = 0, 0 // a second pass counts the DAG again
	l.p = p
	l.progress = progress
	p, err := l.run(root)
	l.fbCancel() // a fallback still waiting is for a block that came another way
	if err == nil {
		// the last cancels are on their way: let them go (a holder keeps
		// a want open until cancelled, and may send the block again)
		for _, h := range l.holders {
			h.send.finish()
		}
		fin := make(chan struct{})
		go func() { wg.Wait(); close(fin) }()
		select {
		case <-fin:
		case <-ctx.Done():
		}
	}
	return p, err
}

// loop is the state of one fetch, owned by fetchDAG's goroutine.
type loop struct {
	f        *walk
	r        *Replicator
	ctx      context.Context
	wg       *sync.WaitGroup
	holders  []*holder
	stack    []cid.Cid // blocks to look at, next last
	seen     map[string]struct{}
	wants    map[string]*want
	p        Progress
	progress func(Progress)
	prio     int32
	start    time.Time // when the walk started
	allAsked time.Time // when the last block known was asked for (the tail's start)

	sess     exchange.Fetcher
	fbCtx    context.Context // the fallbacks'; cancelled when the walk ends
	fbCancel context.CancelFunc
	fbQueue  []cid.Cid
	fbActive int
}

func (l *loop) run(root cid.Cid) (Progress, error) {
	l.start = time.Now()
	l.push([]cid.Cid{root})
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if err := l.fill(); err != nil {
			return l.p, err
		}
		if len(l.stack) == 0 && len(l.wants) == 0 {
			l.report(root)
			return l.p, nil
		}
		if len(l.stack) == 0 && l.allAsked.IsZero() {
			l.allAsked = time.Now()
		} else if len(l.stack) > 0 {
			l.allAsked = time.Time{} // more links came in
		}
		next := l.hedge(time.Now())
		timer.Reset(max(time.Until(next), time.Millisecond))
		select {
		case ev := <-l.f.events:
			if err := l.handle(ev); err != nil {
				return l.p, err
			}
		case <-timer.C:
		case <-l.ctx.Done():
			if l.r.ctx.Err() != nil {
				return l.p, ErrClosed
			}
			return l.p, fmt.Errorf("replicate: fetching %s: %d blocks done: %w", root, l.p.Blocks, l.ctx.Err())
		}
	}
}

// HolderStats is one holder's part in a fetch.
type HolderStats struct {
	Peer   peer.ID
	Blocks int   // blocks it delivered first
	Bytes  int64 // their bytes
	// First and Last are the times of its first and last delivery.
	First, Last time.Time
	// Window is its window in bytes at the end; RTT the probed round trip;
	// Rate the delivery rate its window measured while busy (bytes/s).
	Window int64
	RTT    time.Duration
	Rate   float64
}

// Span is the time from the holder's first delivery to its last.
func (h HolderStats) Span() time.Duration { return h.Last.Sub(h.First) }

// FetchStats describes the last walk of a bundle's DAG: when it started
// and ended, when the last block was asked for (from then on the holders
// only drain their windows: the tail), and each holder's part.
type FetchStats struct {
	Start, AllAsked, End time.Time
	Holders              []HolderStats
}

// Tail is the time from the first holder to deliver its last block to the
// end of the walk: how long the fetch waited on the others at the end.
func (s FetchStats) Tail() time.Duration {
	var first time.Time
	for _, h := range s.Holders {
		if h.Blocks > 0 && (first.IsZero() || h.Last.Before(first)) {
			first = h.Last
		}
	}
	if first.IsZero() {
		return 0
	}
	return s.End.Sub(first)
}

// report logs each holder's part and keeps the walk's statistics for
// LastFetchStats.
func (l *loop) report(root cid.Cid) {
	st := FetchStats{Start: l.start, AllAsked: l.allAsked, End: time.Now()}
	for _, h := range l.holders {
		hs := HolderStats{Peer: h.id, Blocks: h.got, Bytes: h.bytes, First: h.first, Last: h.last,
			Window: h.win.bytes(), RTT: h.win.rtt, Rate: h.win.rate}
		st.Holders = append(st.Holders, hs)
		l.r.log.Debug("holder's part of the fetch", "root", root, "peer", h.id, "blocks", h.got, "bytes", h.bytes,
			"active", hs.Span(), "window_bytes", hs.Window, "delay", h.win.delay, "rtt", hs.RTT,
			"rate_bytes_per_s", int64(hs.Rate), "dont_haves", len(h.lacks))
	}
	l.r.log.Debug("fetch walk done", "root", root, "took", st.End.Sub(st.Start), "tail", st.Tail())
	l.r.fmu.Lock()
	l.r.last = st
	l.r.fmu.Unlock()
}

// LastFetchStats returns the statistics of the last DAG walk that
// completed (zero before any).
func (r *Replicator) LastFetchStats() FetchStats {
	r.fmu.Lock()
	defer r.fmu.Unlock()
	return r.last
}

// push queues the links not seen before, so the stack pops them in link
// order (depth first, as the DAG is laid out).
func (l *loop) push(links []cid.Cid) {
	for i := len(links) - 1; i >= 0; i-- {
		k := string(links[i].Hash())
		if _, ok := l.seen[k]; ok {
			continue
		}
		l.seen[k] = struct{}{}
		l.stack = append(l.stack, links[i])
	}
}

// done counts a block present and verified and queues its links.
func (l *loop) done(size int, links []cid.Cid, fetched bool) {
	l.p.Blocks++
	l.p.Bytes += int64(size)
	if fetched {
		l.p.Fetched++
	}
	if l.progress != nil {
		l.progress(l.p)
	}
	l.push(links)
}

// fill takes blocks off the stack: those stored already are counted, the
// others asked of the holder with the most room (or of the fallback
// session when no live holder may have them), until the stack is empty or
// every holder's window is full.
func (l *loop) fill() error {
	for len(l.stack) > 0 {
		c := l.stack[len(l.stack)-1]
		links, size, ok, err := l.r.local(c)
		if err != nil {
			return err
		}
		if ok {
			l.stack = l.stack[:len(l.stack)-1]
			l.done(size, links, false)
			continue
		}
		if empty, err := c.Prefix().Sum(nil); err == nil && empty.Equals(c) {
			// The block of zero bytes (an empty file) is known from its
			// CID; boxo's bitswap server never sends it (see nonZeroSizes).
			l.stack = l.stack[:len(l.stack)-1]
			if err := l.r.bstore.Put(l.ctx, mustBlock(nil, c)); err != nil {
				return fmt.Errorf("replicate: %w", err)
			}
			l.done(0, nil, true)
			continue
		}
		k := string(c.Hash())
		h, anyLive := l.pick(k)
		if h == nil && anyLive {
			return nil // every window is full
		}
		l.stack = l.stack[:len(l.stack)-1]
		w := &want{c: c}
		l.wants[k] = w
		l.f.mu.Lock()
		l.f.wanted[k] = c
		l.f.ever[k] = struct{}{}
		l.f.mu.Unlock()
		if h == nil {
			l.fallback(w)
			continue
		}
		l.ask(h, w, time.Now())
	}
	return nil
}

// pick returns the holder to ask for block k: among the live holders
// that may have it, one that never answered DONT_HAVE if there is any
// (a holder of the bundle has every block; one that lacked a block is
// likely still fetching it), else any; the one with the most room. It
// returns nil if they are all full, and whether any live holder may have
// k at all.
func (l *loop) pick(k string) (*holder, bool) {
	var best *holder
	bestRoom, anyLive, clean := 0, false, false
	for _, h := range l.holders {
		if h.gone {
			continue
		}
		if _, no := h.lacks[k]; no {
			continue
		}
		anyLive = true
		if len(h.lacks) == 0 && !clean {
			clean, best, bestRoom = true, nil, 0
		}
		if clean && len(h.lacks) > 0 {
			continue
		}
		if room := h.win.blocks() - len(h.out); room > bestRoom {
			best, bestRoom = h, room
		}
	}
	return best, anyLive
}

func (l *loop) ask(h *holder, w *want, now time.Time) {
	k := string(w.c.Hash())
	h.out[k] = now
	w.asked = append(w.asked, h)
	// earlier blocks of the walk first: the holder serves higher priority
	// first
	l.prio++
	h.send.want(w.c, math.MaxInt32-l.prio)
}

// fallback asks for w's block through a bitswap session, at most
// cfg.Parallel at a time.
func (l *loop) fallback(w *want) {
	if w.fb {
		return
	}
	w.fb = true
	l.f.mu.Lock()
	l.f.fb[string(w.c.Hash())] = struct{}{}
	l.f.mu.Unlock()
	l.fbQueue = append(l.fbQueue, w.c)
	l.startFallbacks()
}

func (l *loop) startFallbacks() {
	for len(l.fbQueue) > 0 && l.fbActive < l.r.cfg.Parallel {
		c := l.fbQueue[0]
		l.fbQueue = l.fbQueue[1:]
		if _, ok := l.wants[string(c.Hash())]; !ok {
			continue
		}
		if l.sess == nil {
			l.sess = l.r.bs.NewSession(l.ctx)
		}
		l.fbActive++
		sess, f, fbCtx := l.sess, l.f, l.fbCtx
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			blk, err := sess.GetBlock(fbCtx, c)
			if err != nil {
				if fbCtx.Err() != nil {
					return
				}
				f.post(event{kind: evBlock, c: c, err: fmt.Errorf("replicate: fetching block %s: %w", c, err)})
				return
			}
			// the receive path may have claimed it already; storing twice
			// is harmless and the loop counts the block once
			k := string(c.Hash())
			f.mu.Lock()
			delete(f.wanted, k)
			f.mu.Unlock()
			f.post(f.store("", c, blk))
		}()
	}
}

// handle applies one event.
func (l *loop) handle(ev event) error {
	h := l.holder(ev.from)
	k := string(ev.c.Hash())
	switch ev.kind {
	case evBlock:
		if ev.from == "" {
			l.fbActive--
			l.startFallbacks()
		}
		w, ok := l.wants[k]
		if !ok {
			return nil // a second copy (fallback and holder both answered)
		}
		if ev.err != nil {
			return ev.err
		}
		delete(l.wants, k)
		now := time.Now()
		for _, a := range w.asked {
			asked, ok := a.out[k]
			if !ok {
				continue
			}
			delete(a.out, k)
			if a == h {
				h.got++
				h.bytes += int64(ev.size)
				if h.first.IsZero() {
					h.first = now
				}
				h.last = now
				h.win.delivered(now, ev.size, now.Sub(asked), len(h.out) > 0)
				if len(h.out) == 0 {
					h.win.idle()
				}
			}
			if !a.gone {
				a.send.cancel(ev.c)
			}
		}
		l.done(ev.size, ev.links, true)
	case evDontHave:
		if h == nil {
			return nil
		}
		h.lacks[k] = struct{}{}
		if _, ok := h.out[k]; !ok {
			return nil
		}
		delete(h.out, k)
		l.reassign(k)
	case evRTT:
		if h != nil {
			h.win.probed(ev.rtt)
		}
	case evGone, evSendFail:
		if h == nil || h.gone {
			return nil
		}
		h.gone = true
		l.r.log.Debug("holder lost during fetch", "peer", h.id, "err", ev.err)
		for k := range h.out {
			delete(h.out, k)
			l.reassign(k)
		}
	}
	return nil
}

// reassign finds block k, no longer asked of some holder, another way if
// no other holder is still asked for it.
func (l *loop) reassign(k string) {
	w, ok := l.wants[k]
	if !ok {
		return
	}
	for _, a := range w.asked {
		if _, ok := a.out[k]; ok && !a.gone {
			return // still asked elsewhere
		}
	}
	if h, _ := l.pick(k); h != nil {
		l.ask(h, w, time.Now())
		return
	}
	for _, h := range l.holders {
		if _, no := h.lacks[k]; !h.gone && !no {
			// a live holder may have it but has no room: back on the
			// stack, asked again as soon as one has
			delete(l.wants, k)
			l.f.mu.Lock()
			delete(l.f.wanted, k)
			l.f.mu.Unlock()
			l.stack = append(l.stack, w.c)
			return
		}
	}
	l.fallback(w)
}

// hedge asks a second holder, one with room, for requests outstanding
// longer than their holder's hedgeAfter, and returns when the next one
// becomes due.
func (l *loop) hedge(now time.Time) time.Time {
	next := now.Add(time.Hour)
	for k, w := range l.wants {
		if len(w.asked) != 1 {
			continue
		}
		a := w.asked[0]
		at, ok := a.out[k]
		if !ok {
			continue
		}
		due := at.Add(a.hedgeAfter())
		if due.After(now) {
			if due.Before(next) {
				next = due
			}
			continue
		}
		var best *holder
		bestRoom := 0
		for _, h := range l.holders {
			if h == a || h.gone || len(h.lacks) > 0 || len(h.out) > 0 {
				continue // only an idle holder that never lacked a block
			}
			if room := h.win.blocks() - len(h.out); room > bestRoom {
				best, bestRoom = h, room
			}
		}
		if best != nil {
			l.ask(best, w, now)
		}
	}
	return next
}

func (l *loop) holder(id peer.ID) *holder {
	if id == "" {
		return nil
	}
	for _, h := range l.holders {
		if h.id == id {
			return h
		}
	}
	return nil
}

// local reports whether block c is stored (and valid, for blocks with
// links) and returns its links and size. A missing or corrupt block gives
// ok false: it is to be fetched.
func (r *Replicator) local(c cid.Cid) (links []cid.Cid, size int, ok bool, err error) {
	if has, _ := r.st.Has(c); !has {
		return nil, 0, false, nil
	}
	if c.Type() == cid.Raw {
		n, err := r.st.GetSize(c)
		if err != nil {
			return nil, 0, false, nil
		}
		return nil, n, true, nil
	}
	data, err := r.st.Get(c)
	if err != nil {
		return nil, 0, false, nil
	}
	links, err = verify.Links(c, data)
	if err != nil {
		return nil, 0, false, fmt.Errorf("replicate: %w", err)
	}
	return links, len(data), true, nil
}

// rttProbes is how many pings probeRTT sends; the smallest round trip
// counts (a ping can wait behind blocks on the connection, or for a CPU).
const rttProbes = 3

// probeRTT measures the round trip to p with libp2p's ping, or returns 0
// if p does not answer it (the window then falls back on delivery times).
func probeRTT(ctx context.Context, h host.Host, p peer.ID) time.Duration {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var best time.Duration
	n := 0
	for res := range ping.Ping(ctx, h, p) {
		if res.Error != nil {
			break
		}
		if best == 0 || res.RTT < best {
			best = res.RTT
		}
		if n++; n == rttProbes {
			break
		}
	}
	return best
}

func mustBlock(data []byte, c cid.Cid) blocks.Block {
	b, _ := blocks.NewBlockWithCid(data, c)
	return b
}

// sender sends one holder the wants and cancels the fetch loop queues,
// coalesced into as few messages as the holder can take, on one bitswap
// stream of its own, from its own goroutine so the loop never waits on the
// network.
//
// It owns the stream rather than using bitswap's message sender, which can
// only reset its stream: a reset drops what the holder has not read yet,
// and the last messages of a fetch carry the cancels of its last blocks
// (a holder keeps a want open until cancelled). A finished sender closes
// its stream instead, and the holder reads to the end.
type sender struct {
	mu      sync.Mutex
	wants   []wantEntry
	cancels []cid.Cid
	done    bool // finish was called: send what is queued and stop
	poke    chan struct{}
}

// Sending: a message that cannot be written in sendTimeout fails, and is
// tried sendAttempts times, each on a new stream, sendBackoff apart.
const (
	sendTimeout  = time.Minute
	sendAttempts = 3
	sendBackoff  = 100 * time.Millisecond
)

// bitswapProtocols are the versions whose messages ToNetV1 writes, newest
// first.
var bitswapProtocols = []protocol.ID{bsnet.ProtocolBitswap, bsnet.ProtocolBitswapOneOne}

func newSender(ctx context.Context, wg *sync.WaitGroup, h host.Host, p peer.ID, failed func(error)) *sender {
	s := &sender{poke: make(chan struct{}, 1)}
	wg.Go(func() {
		st := &holderStream{h: h, p: p}
		graceful := false
		defer func() { st.end(graceful) }()
		// open the stream now: a holder that cannot be reached is
		// known before any want waits on it
		if err := st.open(ctx); err != nil {
			failed(err)
			return
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.poke:
			}
			s.mu.Lock()
			ws, cs, done := s.wants, s.cancels, s.done
			s.wants, s.cancels = nil, nil
			s.mu.Unlock()
			if len(ws) > 0 || len(cs) > 0 {
				msg := bsmsg.New(false)
				for _, c := range cs {
					msg.Cancel(c)
				}
				for _, e := range ws {
					msg.AddEntry(e.c, e.prio, pb.Message_Wantlist_Block, true)
				}
				if err := st.send(ctx, msg); err != nil {
					if ctx.Err() == nil {
						failed(err)
					}
					return
				}
			}
			if done {
				graceful = true
				return
			}
		}
	})
	return s
}

// holderStream is a sender's bitswap stream to one holder, opened again
// after a failed write.
type holderStream struct {
	h host.Host
	p peer.ID
	s network.Stream
}

func (hs *holderStream) open(ctx context.Context) error {
	if hs.s != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	s, err := hs.h.NewStream(ctx, hs.p, bitswapProtocols...)
	if err != nil {
		return err
	}
	hs.s = s
	return nil
}

// send writes msg, on a new stream after a failed attempt.
func (hs *holderStream) send(ctx context.Context, msg bsmsg.BitSwapMessage) error {
	var err error
	for attempt := range sendAttempts {
		if attempt > 0 {
			t := time.NewTimer(sendBackoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		if err = hs.open(ctx); err != nil {
			continue
		}
		_ = hs.s.SetWriteDeadline(time.Now().Add(sendTimeout))
		if err = msg.ToNetV1(hs.s); err == nil {
			_ = hs.s.SetWriteDeadline(time.Time{})
			return nil
		}
		hs.end(false)
	}
	return fmt.Errorf("replicate: sending to %s: %w", hs.p, err)
}

// end closes the stream so the holder reads what was sent (graceful), or
// resets it. A close waits for the holder's side of the protocol
// negotiation, so it runs apart, bounded by sendTimeout, and a holder that
// never answers does not hold up the fetch.
func (hs *holderStream) end(graceful bool) {
	s := hs.s
	hs.s = nil
	if s == nil {
		return
	}
	if !graceful {
		_ = s.Reset()
		return
	}
	go func() {
		_ = s.SetDeadline(time.Now().Add(sendTimeout))
		if err := s.Close(); err != nil {
			_ = s.Reset()
		}
	}()
}

// finish makes the sender send what is queued and stop.
func (s *sender) finish() {
	s.mu.Lock()
	s.done = true
	s.mu.Unlock()
	s.wake()
}

type wantEntry struct {
	c    cid.Cid
	prio int32
}

func (s *sender) want(c cid.Cid, prio int32) {
	s.mu.Lock()
	s.wants = append(s.wants, wantEntry{c, prio})
	s.mu.Unlock()
	s.wake()
}

func (s *sender) cancel(c cid.Cid) {
	s.mu.Lock()
	s.cancels = append(s.cancels, c)
	s.mu.Unlock()
	s.wake()
}

func (s *sender) wake() {
	select {
	case s.poke <- struct{}{}:
	default:
	}
}
