package adversary_test

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/domain"
	"github.com/mirrornet/mirrornet/internal/probe"
	"github.com/mirrornet/mirrornet/internal/probe/probetest"
	"github.com/mirrornet/mirrornet/protocol"
)

const bundle = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"

type ident struct {
	key crypto.PrivKey
	id  peer.ID
}

// world is one receiving mirror's view of a network under attack: the
// receiver ("self"), honest mirrors in distinct /24s that it connected to,
// a farm of identities behind one IP that it connected to, and ghosts it
// never connected to. Every mirror is alive and lists the bundle.
type world struct {
	cfg     probe.Config
	self    ident
	honest  []ident
	farm    []ident
	ghosts  []ident
	targets map[string]ident
	placer  *domain.Placer
	ev      *probe.Evidence
	// domains places peers for the evidence (the placer, or a naive rule
	// for the control runs).
	domains probe.Domains
	alive   []peer.ID
	now     time.Time
	// refused counts results the evidence dropped, by reason.
	refused map[string]int
	// rejected counts results attest.Verify rejected (forged passes).
	rejected int
}

func (w *world) Alive(time.Time) []peer.ID                   { return w.alive }
func (w *world) Holds(_ peer.ID, b string, _ time.Time) bool { return b == bundle }

// perPeer is the rule this package proves wrong: a mirror nobody observed
// is a failure domain of its own.
type perPeer struct{ pl *domain.Placer }

func (p perPeer) Domain(id peer.ID) string {
	if d := p.pl.Domain(id); d != domain.Unknown {
		return d
	}
	return "peer:" + id.String()
}

var seed uint64

func newIdent(t *testing.T) ident {
	seed++
	k, id := probetest.Key(t, seed)
	return ident{k, id}
}

func newWorld(t *testing.T, farm, ghosts int, naive bool) *world {
	t.Helper()
	cfg, err := probe.ProfileConfig(probe.ProfileLAN) // k = 3
	if err != nil {
		t.Fatal(err)
	}
	pl, err := domain.New(domain.DefaultConfig(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{cfg: cfg, placer: pl, targets: map[string]ident{}, refused: map[string]int{},
		now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	w.self = newIdent(t)
	pl.Observe(w.self.id, netip.MustParseAddr("198.51.100.1"))
	for i := range 5 {
		h := newIdent(t)
		pl.Observe(h.id, netip.MustParseAddr(fmt.Sprintf("192.0.%d.10", 10+i)))
		w.honest = append(w.honest, h)
	}
	for range farm {
		f := newIdent(t)
		pl.Observe(f.id, netip.MustParseAddr("203.0.113.66")) // thirty identities, one IP
		w.farm = append(w.farm, f)
	}
	for range ghosts {
		w.ghosts = append(w.ghosts, newIdent(t)) // never connected: not observed
	}
	// The targets: an honest mirror that serves, and the attacker's own
	// mirror that serves nothing (it signs receipts for its friends).
	for _, name := range []string{"serving", "empty"} {
		tg := newIdent(t)
		pl.Observe(tg.id, netip.MustParseAddr(fmt.Sprintf("192.0.%d.20", 40+len(w.targets))))
		w.targets[name] = tg
	}
	for _, g := range [][]ident{{w.self}, w.honest, w.farm, w.ghosts, {w.targets["serving"], w.targets["empty"]}} {
		for _, i := range g {
			w.alive = append(w.alive, i.id)
		}
	}
	w.domains = pl
	if naive {
		w.domains = perPeer{pl}
	}
	if w.ev, err = probe.NewEvidence(cfg, w, w.domains); err != nil {
		t.Fatal(err)
	}
	return w
}

// deliver is what a mirror does with a probe result from gossip: verify it
// (signature, nonce, receipts), count it as evidence, and take its
// observed address as a report.
func (w *world) deliver(t *testing.T, raw []byte) {
	t.Helper()
	st, err := attest.Verify(raw, w.now)
	if err != nil {
		if attest.Classify(err) != attest.Reject {
			t.Fatalf("verify: %v", err)
		}
		w.rejected++
		return
	}
	if err := w.ev.Add(st, w.now); err != nil {
		switch {
		case errors.Is(err, probe.ErrNotAssigned):
			w.refused["not_seated"]++
		case errors.Is(err, probe.ErrDuplicate):
			w.refused["duplicate"]++
		default:
			t.Fatalf("add: %v", err)
		}
		return
	}
	target, _ := peer.Decode(st.Probe.Target)
	if a, err := netip.ParseAddr(st.Probe.Addr); err == nil {
		w.placer.Report(st.Signer, target, a)
	}
}

// report signs obs's result about target: outcome, with the target's
// receipt when withReceipt (an honest target that served, or a colluding
// one), at an address of the reporter's choosing.
func (w *world) report(t *testing.T, obs, target ident, outcome string, withReceipt bool, addr string) []byte {
	t.Helper()
	s := probetest.Spec{Target: target.id, Bundle: bundle, Outcome: outcome, At: w.now, EpochLength: w.cfg.EpochLength, Addr: addr}
	canary := probetest.IsCanary(w.now, w.cfg.EpochLength, target.id, obs.id)
	if withReceipt && (outcome != protocol.OutcomePass || !canary || target == w.targets["empty"]) {
		s.TargetKey = target.key
	}
	p := probetest.Result(t, obs.id, s)
	if outcome == protocol.OutcomePass && s.TargetKey == nil {
		return probetest.Forge(t, obs.key, p) // a pass it cannot prove
	}
	return probetest.Sign(t, obs.key, p)
}

// round: every honest mirror (and self) reports the truth about both
// targets; every attacker identity lies about both. Honest observers pass
// the serving mirror (with its receipt) and fail the empty one; honest
// canaries fail. Attackers fail the serving mirror and pass the empty one
// with its colluding receipts; they are smart enough to fail canaries
// (which challenges are canaries is public), so only the committee rules
// stand between them and the verdict.
func (w *world) round(t *testing.T, attackers []ident) {
	t.Helper()
	serving, empty := w.targets["serving"], w.targets["empty"]
	for _, o := range append([]ident{w.self}, w.honest...) {
		outcome := protocol.OutcomePass
		if probetest.IsCanary(w.now, w.cfg.EpochLength, serving.id, o.id) {
			outcome = protocol.OutcomeFail
		}
		w.deliver(t, w.report(t, o, serving, outcome, true, "192.0.40.20"))
		w.deliver(t, w.report(t, o, empty, protocol.OutcomeTimeout, false, ""))
	}
	for i, a := range attackers {
		// They also claim the empty mirror sits in a /24 of its own,
		// and vouch for each other's addresses.
		w.deliver(t, w.report(t, a, serving, protocol.OutcomeFail, false, "192.0.40.20"))
		lie := protocol.OutcomePass
		if probetest.IsCanary(w.now, w.cfg.EpochLength, empty.id, a.id) {
			lie = protocol.OutcomeFail
		}
		w.deliver(t, w.report(t, a, empty, lie, true, fmt.Sprintf("100.64.%d.1", i)))
	}
	w.now = w.now.Add(w.cfg.Interval)
}

func (w *world) run(t *testing.T, attackers []ident, rounds int) (serving, empty probe.TargetStatus) {
	t.Helper()
	for range rounds {
		w.round(t, attackers)
	}
	now := w.now.Add(-w.cfg.Interval)
	return w.ev.Status(w.targets["serving"].id, now), w.ev.Status(w.targets["empty"].id, now)
}

// dropHonest takes the honest mirrors (but self) out of the network.
func (w *world) dropHonest() {
	w.alive = slices.DeleteFunc(w.alive, func(p peer.ID) bool {
		return slices.ContainsFunc(w.honest, func(h ident) bool { return h.id == p })
	})
	w.honest = nil
}

func bad(s probe.State) bool { return s == probe.StateDegraded || s == probe.StateFailing }

// TestSybilFarmAndGhosts: a farm of 30 identities on one IP, and 3
// identities this node never connected to, lie in concert for 30 rounds
// (three epochs of the lan profile): the mirror that serves nothing is not
// verified, the honest one is not degraded (and is verified by the honest
// observers), and effective redundancy counts the farm once.
func TestSybilFarmAndGhosts(t *testing.T) {
	for _, tc := range []struct {
		name        string
		farm, ghost int
	}{
		{"farm of 30 on one IP", 30, 0},
		{"3 identities never connected", 0, 3},
		{"both", 30, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, tc.farm, tc.ghost, false)
			attackers := append(slices.Clone(w.farm), w.ghosts...)
			serving, empty := w.run(t, attackers, 30)
			if empty.State == probe.StateVerified {
				t.Errorf("the attackers made a mirror that serves nothing verified: %+v", empty)
			}
			if !bad(empty.State) {
				t.Errorf("honest observers' failures of the empty mirror did not count: %+v", empty)
			}
			if bad(serving.State) {
				t.Errorf("the attackers made an honest mirror %s: %+v", serving.State, serving)
			}
			if serving.State != probe.StateVerified {
				t.Errorf("the honest mirror is not verified by the honest majority: %+v", serving)
			}
			// Each attacker group holds at most one seat of any committee.
			if serving.FailDomains > 2 {
				t.Errorf("attackers hold %d failing domains, want at most 2 (farm, unknown)", serving.FailDomains)
			}
			// Their lies cost them weight (they contradict the majority).
			for _, a := range attackers {
				if wgt := w.ev.Weight(a.id, w.now.Add(-w.cfg.Interval)); wgt >= 0.5 {
					t.Errorf("attacker %s keeps weight %.2f", a.id.ShortString(), wgt)
					break
				}
			}
			// Their address reports place nobody: the ghosts and the
			// empty mirror's claimed /24s need two observed domains.
			for _, g := range w.ghosts {
				if d := w.placer.Domain(g.id); d != domain.Unknown {
					t.Errorf("ghost placed in %q", d)
				}
			}
			if d := w.placer.Domain(w.targets["empty"].id); d != "net:192.0.41.0/24" {
				t.Errorf("the attackers moved the empty mirror to %q", d)
			}
			// Effective redundancy counts the farm once, and every
			// unobserved identity together once.
			var ids []peer.ID
			for _, a := range attackers {
				ids = append(ids, a.id)
			}
			want := 0
			if tc.farm > 0 {
				want++
			}
			if tc.ghost > 0 {
				want++
			}
			if got := w.placer.EffectiveRedundancy(ids); got != want {
				t.Errorf("effective redundancy of %d attacker identities is %d, want %d", len(ids), got, want)
			}
			t.Logf("serving: %s (%d of %d seats pass); empty: %s (%d fail); %d forged passes rejected, refused %v",
				serving.State, serving.PassDomains, serving.Seats, empty.State, empty.FailDomains, w.rejected, w.refused)
		})
	}
}

// TestSybilControlPerPeerDomains runs the same ghosts against the rule
// this replaces (an unobserved mirror is its own failure domain): three
// identities nobody connected to then make the empty mirror verified.
// This is what TestSybilFarmAndGhosts would see without the feature.
func TestSybilControlPerPeerDomains(t *testing.T) {
	w := newWorld(t, 0, 3, true)
	// The empty mirror's honest observers are gone: only the ghosts and
	// this node speak (a new mirror, or an honest network too small to
	// seat three).
	w.dropHonest()
	serving, empty := w.run(t, w.ghosts, 6)
	if empty.State != probe.StateVerified {
		t.Fatalf("control: per-peer domains should let 3 ghosts verify the empty mirror: %+v", empty)
	}
	if !bad(serving.State) {
		t.Fatalf("control: per-peer domains should let 3 ghosts degrade the serving mirror: %+v", serving)
	}
	// The same with the one unknown domain: neither.
	w2 := newWorld(t, 0, 3, false)
	w2.dropHonest()
	serving2, empty2 := w2.run(t, w2.ghosts, 6)
	if empty2.State == probe.StateVerified {
		t.Errorf("3 ghosts verified the empty mirror: %+v", empty2)
	}
	if bad(serving2.State) {
		t.Errorf("3 ghosts made the serving mirror %s: %+v", serving2.State, serving2)
	}
}

// TestSybilPassWithoutReceipt: against a mirror that lost its data (it
// cannot sign receipts for blocks it does not serve), attackers can only
// forge passes; every one is rejected as provably bad and nothing counts.
func TestSybilPassWithoutReceipt(t *testing.T) {
	w := newWorld(t, 30, 3, false)
	lost := w.targets["serving"]
	for range 10 {
		for _, a := range append(slices.Clone(w.farm), w.ghosts...) {
			w.deliver(t, w.report(t, a, lost, protocol.OutcomePass, false, ""))
		}
		w.now = w.now.Add(w.cfg.Interval)
	}
	if st := w.ev.Status(lost.id, w.now.Add(-w.cfg.Interval)); st.State == probe.StateVerified || st.Samples != 0 {
		t.Errorf("forged passes counted: %+v", st)
	}
	if w.rejected == 0 {
		t.Error("no forged pass was rejected")
	}
}
