package evidence

import (
	"github.com/mirrornet/mirrornet/attest"
)

// The retention rule: which liveness samples are evidence.
//
// Anyone can sign liveness statements with as many throwaway keys as they
// like, and every mirror used to keep one sample per signer per probe round
// for the whole retention: a slow, sustained flood of strangers filled a
// mirror's evidence budget with samples no ledger line needs. A liveness
// sample therefore counts as evidence only when a probe result in the same
// set names its mirror, as the observer or as the target, in a probe round
// the sample covers (see [Covers]). The mirrors that take part in probes
// (those assigned to probe, those holding a committee seat and publishing,
// those whose HTTP side and bundles made them targets) keep their samples;
// a stranger that only signs liveness keeps none.
//
// The rule is a pure function of the set: [DeriveParsed] applies it before
// anything else reads the samples, a keeper exports only the samples it
// admits (so every mirror holding the same statements has the same root),
// and a keeper drops the samples it does not admit once the rounds they
// cover have settled. What it changes in the ledger is who counts as alive
// when committees are drawn and who gets a line: a mirror that neither
// probed nor was probed in a round was no committee's voter and no one's
// verified target in it.

// DropUnnamed is the Report reason for liveness samples no probe result
// of their rounds names.
const DropUnnamed = "liveness of a mirror no probe result of its rounds names"

// Covers returns the probe rounds a liveness sample covers, first to last
// (rounds of roundMS milliseconds, numbered from the Unix epoch): the round
// it was signed in and, when it carries a TTL, every later round that
// starts before the TTL runs out. It is the rounds markAlive can make the
// mirror alive in by this sample (the next sample may end them sooner).
func Covers(st *attest.Statement, roundMS int64) (first, last int64) {
	t := st.Time.UnixMilli()
	first = t / roundMS
	until := t + st.Liveness.TTLDuration().Milliseconds()
	last = max(first, (until-1)/roundMS)
	return first, last
}

// Names are the peers that probe results name (observer and target), per
// probe round. The zero value is not usable: make one with [NewNames].
type Names struct {
	roundMS int64
	byRound map[int64]map[string]struct{}
}

// NewNames returns empty names for rounds of roundMS milliseconds.
func NewNames(roundMS int64) *Names {
	return &Names{roundMS: roundMS, byRound: map[int64]map[string]struct{}{}}
}

// Add records the observer and target of a probe result; other kinds are
// ignored.
func (n *Names) Add(st *attest.Statement) {
	if st.Kind != attest.KindProbe || st.Probe == nil {
		return
	}
	r := st.Time.UnixMilli() / n.roundMS
	m := n.byRound[r]
	if m == nil {
		m = map[string]struct{}{}
		n.byRound[r] = m
	}
	m[st.Probe.Observer] = struct{}{}
	m[st.Probe.Target] = struct{}{}
}

// Admits reports whether a statement counts as evidence under the
// retention rule: a liveness sample when a probe result added names its
// mirror in a round it covers; any other kind always.
func (n *Names) Admits(st *attest.Statement) bool {
	if st.Kind != attest.KindLiveness || st.Liveness == nil {
		return true
	}
	first, last := Covers(st, n.roundMS)
	for r := first; r <= last; r++ {
		if _, ok := n.byRound[r][st.Liveness.Peer]; ok {
			return true
		}
	}
	return false
}

// Forget drops the names of rounds before round.
func (n *Names) Forget(round int64) {
	for r := range n.byRound {
		if r < round {
			delete(n.byRound, r)
		}
	}
}

// Admitted returns the statements of sts that count under the retention
// rule, the names taken from sts' own probe results, and how many
// liveness samples it left out. sts is not modified.
func Admitted(sts []*attest.Statement, roundMS int64) ([]*attest.Statement, int) {
	n := NewNames(roundMS)
	for _, st := range sts {
		n.Add(st)
	}
	out := make([]*attest.Statement, 0, len(sts))
	for _, st := range sts {
		if n.Admits(st) {
			out = append(out, st)
		}
	}
	return out, len(sts) - len(out)
}
