package evidence

import (
	"crypto/sha256"
	"encoding/binary"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/probe"
	"github.com/mirrornet/mirrornet/protocol"
)

// CommitteeJudge is the RoundJudge of the network's probe rules (package
// probe): in each probe epoch a target's results count from the observers
// seated on its committee, one vote per observed failure domain, and it is
// verified when a majority of the seats, from at least K healthy domains,
// passed it. cfg is the network profile's probe config.
//
// The verdicts are probe.Judge's. What makes a day of rounds affordable is
// that each round's committees are drawn once, by one probe.Draw over the
// round's alive set (a ledger's round has a thousand targets and the same
// alive set for all of them), and that peer IDs are decoded once per
// judge, not once per round.
func CommitteeJudge(cfg probe.Config) RoundJudge {
	var mu sync.Mutex
	ids := map[string]peer.ID{} // decoded peer IDs; "" when invalid
	decode := func(ss ...[]string) {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range ss {
			for _, x := range s {
				if _, ok := ids[x]; !ok {
					id, err := peer.Decode(x)
					if err != nil {
						id = ""
					}
					ids[x] = id
				}
			}
		}
	}
	return func(round uint64, results []*attest.Statement, alive []string, domainOf func(string) string) map[string]bool {
		targets := make([]string, len(results))
		for i, st := range results {
			targets[i] = st.Probe.Target
		}
		decode(alive, targets)
		mu.Lock()
		aliveIDs := make([]peer.ID, 0, len(alive))
		dom := make(map[peer.ID]string, len(alive))
		for _, a := range alive {
			if id := ids[a]; id != "" {
				aliveIDs = append(aliveIDs, id)
				dom[id] = domainOf(a)
			}
		}
		targetIDs := make([]peer.ID, len(results))
		for i, t := range targets {
			targetIDs[i] = ids[t]
		}
		mu.Unlock()
		// Peers outside the alive set (observers that vouch for a target
		// this view missed) are placed on demand; Judge asks once each.
		domain := func(p peer.ID) string {
			if d, ok := dom[p]; ok {
				return d
			}
			return domainOf(p.String())
		}
		var rs []probe.Result
		canary := map[peer.ID]time.Time{}
		for i, st := range results {
			pr := st.Probe
			target := targetIDs[i]
			if target == "" {
				continue
			}
			_, isCanary, _ := protocol.ChallengeNonce(pr.Challenge)
			r := probe.Result{Observer: st.Signer, Target: target, Epoch: pr.Epoch, Round: pr.Round, Seq: pr.Seq,
				At: time.UnixMilli(pr.Time), Pass: pr.Outcome == protocol.OutcomePass, Canary: isCanary}
			if r.Canary && r.Pass && r.At.After(canary[r.Observer]) {
				canary[r.Observer] = r.At
			}
			rs = append(rs, r)
		}
		c := cfg
		c.Window = cfg.EpochLength
		end := time.UnixMilli(int64(round+1)*cfg.EpochLength.Milliseconds() - 1)
		draw := probe.NewDraw(round, aliveIDs, domain, c.Observers)
		j := probe.Judge(probe.Input{Config: c, Results: rs, Alive: aliveIDs, CanaryPass: canary, Now: end, Domain: domain,
			Committees: func(t peer.ID, e uint64) ([]probe.Seat, bool) {
				if e != round {
					return nil, false
				}
				return draw.Committee(t), true
			}})
		out := make(map[string]bool, len(j.Targets))
		for t, st := range j.Targets {
			out[t.String()] = st.State == probe.StateVerified
		}
		return out
	}
}

// cmpProbe is the canonical order of one round's probe results: by what
// the judge reads of them.
func cmpProbe(a, b *attest.Statement) int {
	x, y := a.Probe, b.Probe
	if c := strings.Compare(x.Target, y.Target); c != 0 {
		return c
	}
	if c := strings.Compare(string(a.Signer), string(b.Signer)); c != 0 {
		return c
	}
	for _, c := range []int{cmpU(x.Epoch, y.Epoch), cmpU(x.Round, y.Round), cmpU(x.Seq, y.Seq), cmpU(uint64(x.Time), uint64(y.Time)),
		strings.Compare(x.Outcome, y.Outcome), strings.Compare(x.Challenge, y.Challenge), cmpU(a.Seq, b.Seq)} {
		if c != 0 {
			return c
		}
	}
	return 0
}

// RoundCache remembers round verdicts by a digest of everything a judge
// reads of the round: its number, the alive set, every result's observer,
// target, epoch, round, sequence number, time, outcome and challenge, and
// the failure domain of every peer named. A mirror judges each round once,
// as it closes (see [Prejudge]), and the epoch's ledger then costs one
// round's judgement instead of a day's; a round whose evidence changed
// (a late result, a merge) has another key and is judged again. It is
// safe for concurrent use. One cache serves one judge: [RoundCache.Judge]
// wraps it.
type RoundCache struct {
	mu    sync.Mutex
	max   int
	m     map[[32]byte]map[string]bool
	order [][32]byte
	// Hits and Misses count lookups.
	Hits, Misses int
}

// NewRoundCache keeps the verdicts of at most max rounds (the oldest
// stored is forgotten first).
func NewRoundCache(max int) *RoundCache {
	return &RoundCache{max: max, m: map[[32]byte]map[string]bool{}}
}

// Judge returns j with its verdicts remembered in c. The verdict maps it
// returns are shared: callers must not modify them.
func (c *RoundCache) Judge(j RoundJudge) RoundJudge {
	return func(round uint64, results []*attest.Statement, alive []string, domainOf func(string) string) map[string]bool {
		key := roundKey(round, results, alive, domainOf)
		c.mu.Lock()
		v, ok := c.m[key]
		if ok {
			c.Hits++
		} else {
			c.Misses++
		}
		c.mu.Unlock()
		if ok {
			return v
		}
		v = j(round, results, alive, domainOf)
		c.mu.Lock()
		defer c.mu.Unlock()
		if _, ok := c.m[key]; !ok {
			c.m[key] = v
			c.order = append(c.order, key)
			for len(c.order) > c.max {
				delete(c.m, c.order[0])
				c.order = c.order[1:]
			}
		}
		return v
	}
}

// Len is the number of rounds remembered.
func (c *RoundCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// roundKey digests what a RoundJudge reads of one round, in the order
// given (DeriveParsed passes results in canonical order and alive sorted).
func roundKey(round uint64, results []*attest.Statement, alive []string, domainOf func(string) string) [32]byte {
	h := sha256.New()
	var b []byte
	str := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = append(b, "mirrornet-ledger-round/1"...)
	b = binary.BigEndian.AppendUint64(b, round)
	b = binary.AppendUvarint(b, uint64(len(alive)))
	for _, a := range alive {
		str(a)
		str(domainOf(a))
		if len(b) > 4096 {
			h.Write(b)
			b = b[:0]
		}
	}
	b = binary.AppendUvarint(b, uint64(len(results)))
	for _, st := range results {
		pr := st.Probe
		str(string(st.Signer))
		str(pr.Observer) // the signer's string form (attest checks)
		str(domainOf(pr.Observer))
		str(pr.Target)
		str(domainOf(pr.Target))
		b = binary.BigEndian.AppendUint64(b, pr.Epoch)
		b = binary.BigEndian.AppendUint64(b, pr.Round)
		b = binary.BigEndian.AppendUint64(b, pr.Seq)
		b = binary.BigEndian.AppendUint64(b, uint64(pr.Time))
		b = binary.BigEndian.AppendUint64(b, st.Seq)
		str(pr.Outcome)
		str(pr.Challenge)
		if len(b) > 4096 {
			h.Write(b)
			b = b[:0]
		}
	}
	h.Write(b)
	var out [32]byte
	h.Sum(out[:0])
	return out
}
