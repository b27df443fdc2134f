package evidence

import (
	"net/netip"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/domain"
	"github.com/mirrornet/mirrornet/internal/ledger"
)

// ObservationQuorum is how many distinct observed domains must agree on
// where a mirror is before the ledger places it there (see
// domain.ResolveReports): one network full of identities cannot place
// anyone, itself included.
const ObservationQuorum = 2

// Domains places the mirrors that probe results name in failure domains,
// from the addresses their observers signed in those results (a probe
// result's Addr: where the observer reached the target, on a real
// connection). It is what Derive uses, so anyone holding the evidence
// computes the same domains; no mirror's own unsigned sightings enter it.
//
// For each observer and target, the address the observer reported most
// often counts (ties: the smaller address); domain.ResolveReports turns
// the reports into domains, by IPv4 /24 or IPv6 /48 (an IP-to-ASN table is
// a mirror's local file, not evidence). Peers it cannot place are absent
// (ledger.UnknownDomain, one domain however many). sts may hold any
// statements; only probe results with an address are read, and the result
// does not depend on their order.
func Domains(sts []*attest.Statement) map[string]string {
	var o Observations
	for _, st := range sts {
		o.Add(st)
	}
	return o.Domains()
}

// Observations gathers the address reports of probe results, for a
// caller that sees them a round at a time (a mirror prejudging rounds as
// they close): Domains over what was added is Domains of those
// statements. The zero value is empty; it is not safe for concurrent use.
//
// A day at a thousand mirrors is two million results over a million
// (observer, target) pairs, so peers are numbered as they come and a
// pair's addresses are kept without a map of their own (one address is
// the rule, several the exception).
type Observations struct {
	num   map[string]int32
	names []string
	pairs map[uint64]*addrVotes
	addrs map[string]netip.Addr // parsed addresses, by their text
}

type addrVotes struct {
	addr netip.Addr
	n    int
	more map[netip.Addr]int // other addresses, rarely any
}

func (o *Observations) peer(s string) int32 {
	n, ok := o.num[s]
	if !ok {
		n = int32(len(o.names))
		o.num[s] = n
		o.names = append(o.names, s)
	}
	return n
}

// Add reads st's report if st is a probe result with an address.
func (o *Observations) Add(st *attest.Statement) {
	if st.Kind != attest.KindProbe || st.Probe.Addr == "" || st.Probe.Target == st.Probe.Observer {
		return
	}
	if o.num == nil {
		o.num, o.pairs, o.addrs = map[string]int32{}, map[uint64]*addrVotes{}, map[string]netip.Addr{}
	}
	a, ok := o.addrs[st.Probe.Addr]
	if !ok {
		var err error
		if a, err = netip.ParseAddr(st.Probe.Addr); err != nil {
			return
		}
		a = a.Unmap()
		if len(o.addrs) < 1<<16 {
			o.addrs[st.Probe.Addr] = a
		}
	}
	k := uint64(uint32(o.peer(st.Probe.Target)))<<32 | uint64(uint32(o.peer(st.Probe.Observer)))
	v := o.pairs[k]
	switch {
	case v == nil:
		o.pairs[k] = &addrVotes{addr: a, n: 1}
	case v.addr == a:
		v.n++
	default:
		if v.more == nil {
			v.more = map[netip.Addr]int{}
		}
		v.more[a]++
	}
}

// Reporters returns, per peer reported so far, how many distinct
// observers reported an address for it.
func (o *Observations) Reporters() map[string]int {
	out := map[string]int{}
	for k := range o.pairs {
		out[o.names[k>>32]]++
	}
	return out
}

// Domains places the peers reported so far (see the function Domains).
func (o *Observations) Domains() map[string]string {
	ids := make([]peer.ID, len(o.names))
	for i, s := range o.names {
		if id, err := peer.Decode(s); err == nil {
			ids[i] = id
		}
	}
	reports := map[peer.ID]map[peer.ID]netip.Addr{}
	for k, v := range o.pairs {
		t, r := ids[k>>32], ids[uint32(k)]
		if t == "" || r == "" {
			continue
		}
		best, n := v.addr, v.n
		for a, c := range v.more {
			if c > n || c == n && a.Less(best) {
				best, n = a, c
			}
		}
		m := reports[t]
		if m == nil {
			m = map[peer.ID]netip.Addr{}
			reports[t] = m
		}
		m[r] = best
	}
	names := make(map[peer.ID]string, len(ids))
	for i, id := range ids {
		if id != "" {
			if _, dup := names[id]; !dup {
				names[id] = o.names[i]
			}
		}
	}
	out := map[string]string{}
	for id, d := range domain.ResolveReports(reports, nil, ObservationQuorum) {
		if d != domain.Unknown && d != ledger.UnknownDomain {
			out[names[id]] = d
		}
	}
	return out
}
