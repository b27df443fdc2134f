// Package wants is the pure core of a mirror's bitswap serving side: its
// view of each connected peer's wantlist as the peer itself sees it (a want
// is open until the peer cancels it; boxo's server forgets a want as soon
// as it has sent the block), which blocks to send again, and per-peer
// statistics. It starts no goroutines, does no I/O and never reads the
// clock: every method takes now.
package wants

import (
	"slices"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Config tunes the tracker; see bitswapserve.Config for each field.
type Config struct {
	ResendAfter       time.Duration
	MaxResendInterval time.Duration
	MaxResends        int
	ActiveWindow      time.Duration
	MaxWantsPerPeer   int
}

// Tracker is the view of every peer's wants. It is not safe for
// concurrent use.
type Tracker struct {
	cfg   Config
	peers map[peer.ID]*peerWants
}

// peerWants is one peer's open wants.
type peerWants struct {
	wants map[cid.Cid]*want
	// lastMsg is when the peer last asked for a block this mirror serves;
	// resends go only to peers active within Config.ActiveWindow.
	lastMsg time.Time
	// cancels counts the cancels the peer sent: only a peer seen cancelling
	// wants gets blocks re-sent (a client that never cancels would receive
	// every block again and again).
	cancels int
	resent  int // blocks re-sent to this peer, ever
}

// want is one open want of a peer.
type want struct {
	since     time.Time // when the peer (last) asked for it
	wantBlock bool      // want-block (else want-have)
	held      bool      // this mirror serves the block
	delivered bool      // the block was sent since the peer asked
	answered  bool      // a HAVE or DONT_HAVE was sent since the peer asked
	lastSent  time.Time // when the block was last sent
	resends   int       // re-sends since delivery or the peer's last idle spell
}

// New returns an empty Tracker.
func New(cfg Config) *Tracker {
	return &Tracker{cfg: cfg, peers: map[peer.ID]*peerWants{}}
}

// Entry is one wantlist entry of an incoming message.
type Entry struct {
	Cid       cid.Cid
	Cancel    bool
	WantBlock bool // want-block (else want-have)
	Held      bool // this mirror serves the block
}

// Received records a message from p: its wantlist entries (full: the
// message replaces the peer's whole wantlist).
func (t *Tracker) Received(p peer.ID, full bool, es []Entry, now time.Time) {
	pw := t.peers[p]
	if pw == nil {
		pw = &peerWants{wants: map[cid.Cid]*want{}}
		t.peers[p] = pw
	}
	// Activity is asking this mirror for a block it serves: a busy client
	// that broadcasts wants for other content to every peer is not
	// fetching from this mirror.
	active := false
	for _, e := range es {
		active = active || (!e.Cancel && e.Held)
	}
	if active {
		if !pw.lastMsg.IsZero() && now.Sub(pw.lastMsg) > t.cfg.ActiveWindow {
			// The peer is back after an idle spell: whatever it left open
			// may be wanted for real now, so re-sending starts over.
			for _, w := range pw.wants {
				w.resends = 0
				if w.delivered {
					w.lastSent = now
				}
			}
		}
		pw.lastMsg = now
	}
	if full {
		clear(pw.wants)
	}
	for _, e := range es {
		if e.Cancel {
			if _, ok := pw.wants[e.Cid]; ok {
				pw.cancels++
				delete(pw.wants, e.Cid)
			}
			continue
		}
		if w, ok := pw.wants[e.Cid]; ok && !w.delivered && !w.answered {
			// asked again before any answer: the first ask is the age
			w.wantBlock = w.wantBlock || e.WantBlock
			continue
		}
		if len(pw.wants) >= t.cfg.MaxWantsPerPeer {
			if _, ok := pw.wants[e.Cid]; !ok {
				continue // bounded memory: the engine caps its own ledger too
			}
		}
		pw.wants[e.Cid] = &want{since: now, wantBlock: e.WantBlock, held: e.Held}
	}
}

// Sent records a message this mirror sent to p: the blocks and the
// presences (HAVE, DONT_HAVE) in it.
func (t *Tracker) Sent(p peer.ID, blocks, presences []cid.Cid, now time.Time) {
	pw := t.peers[p]
	if pw == nil {
		return
	}
	for _, c := range blocks {
		if w, ok := pw.wants[c]; ok {
			if !w.delivered {
				w.resends = 0
			}
			w.delivered, w.lastSent = true, now
		}
	}
	for _, c := range presences {
		if w, ok := pw.wants[c]; ok {
			w.answered = true
		}
	}
}

// Disconnected forgets p: a peer re-sends its whole wantlist when it
// connects again.
func (t *Tracker) Disconnected(p peer.ID) { delete(t.peers, p) }

// Resend is one block to send again.
type Resend struct {
	Peer peer.ID
	Cid  cid.Cid
}

// Due returns the blocks to send again at now and marks them sent: blocks
// this mirror delivered for a want-block the peer never cancelled, to a
// peer that cancels wants (so it would have cancelled this one had it kept
// the block) and was active within ActiveWindow. Each want waits
// ResendAfter, doubling up to MaxResendInterval, and gets at most
// MaxResends per active spell. At most max results, oldest wants first.
//
// Why: boxo v0.43.0's client can end up holding a want-block it has sent
// but will never send again. Its session sends a want-block for a CID
// whose block has just arrived (the peer became "available" again after
// simulated DONT_HAVEs), after it sent the cancel; this mirror answers,
// the client drops the block as unwanted and keeps the want; its message
// queue stops rebroadcasting a want once any answer came; and when the
// client needs that block again (after a gc), it believes the want is
// still outstanding and sends nothing. Only the block arriving again, or
// a reconnect, gets it going.
func (t *Tracker) Due(now time.Time, max int) []Resend {
	type cand struct {
		Resend
		since time.Time
		w     *want
	}
	var cs []cand
	for p, pw := range t.peers {
		if pw.cancels == 0 || now.Sub(pw.lastMsg) > t.cfg.ActiveWindow {
			continue
		}
		for c, w := range pw.wants {
			if !w.delivered || !w.wantBlock || !w.held || w.resends >= t.cfg.MaxResends {
				continue
			}
			wait := t.cfg.ResendAfter << w.resends
			if wait > t.cfg.MaxResendInterval || wait <= 0 {
				wait = t.cfg.MaxResendInterval
			}
			if now.Sub(w.lastSent) >= wait {
				cs = append(cs, cand{Resend{p, c}, w.since, w})
			}
		}
	}
	slices.SortFunc(cs, func(a, b cand) int { return a.since.Compare(b.since) })
	if len(cs) > max {
		cs = cs[:max]
	}
	out := make([]Resend, len(cs))
	for i, c := range cs {
		c.w.resends++
		c.w.lastSent = now
		t.peers[c.Peer].resent++
		out[i] = c.Resend
	}
	return out
}

// PeerStats is the serving state of one peer, as /metrics and the status
// JSON show it.
type PeerStats struct {
	Peer peer.ID `json:"peer_id"`
	// WantsOpen counts the wants the peer has sent and not cancelled.
	WantsOpen int `json:"wants_open"`
	// WantsUnanswered counts those this mirror has not answered at all
	// (no block, HAVE or DONT_HAVE).
	WantsUnanswered int `json:"wants_unanswered"`
	// OldestOpenWant is the age in seconds of the oldest open want for a
	// block this mirror serves (want-haves answered with HAVE excluded):
	// a want that stays open long is a stalled transfer.
	OldestOpenWant float64 `json:"oldest_open_want_seconds"`
	// BytesOutstanding is what this mirror has handed to the network for
	// the peer and the peer has not yet taken.
	BytesOutstanding int64 `json:"bytes_outstanding"`
	// BlocksResent counts blocks sent again for wants left open.
	BlocksResent int `json:"blocks_resent"`
}

// Stats returns the state of every tracked peer, oldest open want first
// (BytesOutstanding is the caller's to fill in).
func (t *Tracker) Stats(now time.Time) []PeerStats {
	out := make([]PeerStats, 0, len(t.peers))
	for p, pw := range t.peers {
		s := PeerStats{Peer: p, WantsOpen: len(pw.wants), BlocksResent: pw.resent}
		var oldest time.Time
		for _, w := range pw.wants {
			if !w.delivered && !w.answered {
				s.WantsUnanswered++
			}
			if !w.held || (!w.wantBlock && w.answered) {
				continue
			}
			if oldest.IsZero() || w.since.Before(oldest) {
				oldest = w.since
			}
		}
		if !oldest.IsZero() {
			s.OldestOpenWant = now.Sub(oldest).Seconds()
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b PeerStats) int {
		if a.OldestOpenWant != b.OldestOpenWant {
			if a.OldestOpenWant > b.OldestOpenWant {
				return -1
			}
			return 1
		}
		return compareStrings(string(a.Peer), string(b.Peer))
	})
	return out
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
