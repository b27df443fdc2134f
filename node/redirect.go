package node

import (
	"slices"

	"github.com/ipfs/go-cid"

	"github.com/mirrornet/mirrornet/internal/health"
	"github.com/mirrornet/mirrornet/internal/redirect"
)

// redirectSource gives the redirector (internal/redirect) this mirror's
// view: liveness, probe evidence, measured latency, and what it holds.
type redirectSource struct{ n *Node }

var _ redirect.Source = redirectSource{}

func (s redirectSource) Candidates(root cid.Cid) []redirect.Candidate {
	n := s.n
	now := n.clock()
	ms := n.view.Mirrors(now)
	ev := map[string]MirrorEvidence{}
	if pf := n.probeFeatureOf(); pf != nil {
		for _, e := range pf.evidence().Mirrors {
			ev[e.PeerID] = e
		}
	}
	key := root.String()
	self := n.id.String()
	out := []redirect.Candidate{{
		PeerID: self, URL: n.HTTPURL(), Alive: true, Holds: n.store.Held(root), Self: true,
		Evidence: ev[self].State, Domain: ev[self].Domain,
	}}
	for _, m := range ms {
		id := m.Peer.String()
		if id == self {
			continue
		}
		c := redirect.Candidate{PeerID: id, Alive: m.State == health.StateAlive, Evidence: ev[id].State, Domain: ev[id].Domain,
			Latency: n.host.Peerstore().LatencyEWMA(m.Peer)}
		if l := m.Liveness; l != nil {
			c.URL = l.HTTP
			_, c.Holds = slices.BinarySearch(m.Bundles, key)
		}
		out = append(out, c)
	}
	return out
}

func (s redirectSource) Release(app string) (cid.Cid, bool) {
	for _, f := range s.n.features {
		if rf, ok := f.(*releaseFeature); ok {
			rf.mu.Lock()
			rec, ok := rf.book.Get(app, 0)
			rf.mu.Unlock()
			if !ok {
				return cid.Undef, false
			}
			c, err := cid.Decode(rec.CID)
			return c, err == nil
		}
	}
	return cid.Undef, false
}
