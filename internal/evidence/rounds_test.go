package evidence

import (
	"math/rand"
	"reflect"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/evidence/evidencetest"
	"github.com/mirrornet/mirrornet/internal/ledger"
	"github.com/mirrornet/mirrornet/internal/probe"
	"github.com/mirrornet/mirrornet/protocol"
)

// slowJudge is the committee judge as first written: probe.Judge drawing
// every committee itself, peer IDs decoded and encoded as needed. The fast
// judge must give the same verdicts.
func slowJudge(cfg probe.Config) RoundJudge {
	return func(round uint64, results []*attest.Statement, alive []string, domainOf func(string) string) map[string]bool {
		var ids []peer.ID
		for _, a := range alive {
			if id, err := peer.Decode(a); err == nil {
				ids = append(ids, id)
			}
		}
		var rs []probe.Result
		canary := map[peer.ID]time.Time{}
		for _, st := range results {
			pr := st.Probe
			target, err := peer.Decode(pr.Target)
			if err != nil {
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
		j := probe.Judge(probe.Input{Config: c, Results: rs, Alive: ids, CanaryPass: canary, Now: end,
			Domain: func(p peer.ID) string { return domainOf(p.String()) }})
		out := make(map[string]bool, len(j.Targets))
		for t, st := range j.Targets {
			out[t.String()] = st.State == probe.StateVerified
		}
		return out
	}
}

func slowParams(p Params) Params {
	cfg := probe.DefaultConfig()
	cfg.EpochLength = time.Duration(p.Manifest.ProbeEpochMS) * time.Millisecond
	cfg.K = max(p.Manifest.K, 1)
	cfg.Observers = max(cfg.Observers, 2*cfg.K)
	cfg.Confirmations = min(cfg.Confirmations, cfg.K)
	p.Judge = slowJudge(cfg)
	return p
}

func derive(t *testing.T, ps *Parsed, p Params) (ledger.Input, *ledger.Table) {
	t.Helper()
	in, _, err := DeriveParsed(ps, p)
	if err != nil {
		t.Fatal(err)
	}
	tab, err := ledger.Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	return in, tab
}

// TestFastJudgeEqualsSlow: the ledger's committee judge (committees drawn
// once per round, rounds judged in parallel) gives the same input and
// table as probe.Judge drawing every committee itself, on epochs with
// failures, mirrors down, observers off the committee, unobserved mirrors,
// farms and lying canary observers; and the statements' order does not
// matter.
func TestFastJudgeEqualsSlow(t *testing.T) {
	for i, sp := range []synthSpec{
		{mirrors: 30, domains: 12, rounds: 6, observers: 6, seed: 1, fail: 0.2, down: 0.1, stray: 0.3, canary: 0.03, unobserved: 3},
		{mirrors: 24, domains: 24, rounds: 4, observers: 6, seed: 2, fail: 0.3, down: 0.2, stray: 0.5},
		{mirrors: 40, domains: 5, rounds: 3, observers: 6, seed: 3, fail: 0.05, down: 0.3, stray: 0.1, unobserved: 10},
	} {
		s := synthDay(t, sp)
		fastIn, fast := derive(t, s.ps, s.params)
		slowIn, slow := derive(t, s.ps, slowParams(s.params))
		if !reflect.DeepEqual(fastIn, slowIn) {
			t.Fatalf("spec %d: inputs differ", i)
		}
		if fast.Hash() != slow.Hash() {
			t.Fatalf("spec %d: tables differ", i)
		}
		verified, all := 0, 0
		for _, m := range fastIn.Mirrors {
			for _, v := range m.Verified {
				all++
				if v {
					verified++
				}
			}
		}
		if verified == 0 || verified == all {
			t.Fatalf("spec %d: %d of %d mirror-rounds verified: the comparison says little", i, verified, all)
		}
		shuffled := *s.ps
		shuffled.Statements = append([]*attest.Statement(nil), s.ps.Statements...)
		rand.New(rand.NewSource(int64(i))).Shuffle(len(shuffled.Statements), func(a, b int) {
			shuffled.Statements[a], shuffled.Statements[b] = shuffled.Statements[b], shuffled.Statements[a]
		})
		if _, again := derive(t, &shuffled, s.params); again.Hash() != fast.Hash() {
			t.Fatalf("spec %d: the statements' order changes the table", i)
		}
	}
}

// TestRoundCache: verdicts remembered per round give the same ledger; a
// second derivation judges nothing again; a round whose evidence changed
// is judged again, and only that round.
func TestRoundCache(t *testing.T) {
	s := synthDay(t, synthSpec{mirrors: 20, domains: 10, rounds: 5, observers: 6, seed: 4, fail: 0.2, down: 0.1, stray: 0.2})
	_, want := derive(t, s.ps, s.params)
	c := NewRoundCache(100)
	p := s.params
	p.Judge = c.Judge(JudgeFor(p.Manifest))
	if _, got := derive(t, s.ps, p); got.Hash() != want.Hash() || c.Misses != 5 || c.Hits != 0 {
		t.Fatalf("first derivation: same table %v, %d misses, %d hits", got.Hash() == want.Hash(), c.Misses, c.Hits)
	}
	if _, got := derive(t, s.ps, p); got.Hash() != want.Hash() || c.Misses != 5 || c.Hits != 5 {
		t.Fatalf("second derivation: same table %v, %d misses, %d hits", got.Hash() == want.Hash(), c.Misses, c.Hits)
	}
	// A late failing result in round 2.
	changed := *s.ps
	changed.Statements = append([]*attest.Statement(nil), s.ps.Statements...)
	pr := s.probe
	at := time.UnixMilli(evidencetest.Epoch0 + 2*evidencetest.RoundMS + 9000)
	pr.Observer, pr.Target, pr.Epoch, pr.Time, pr.Seq, pr.Outcome, pr.Receipts = s.ids[3], s.ids[4], uint64(at.UnixMilli()/evidencetest.RoundMS), at.UnixMilli(), 1<<62, protocol.OutcomeFail, nil
	changed.Statements = append(changed.Statements, &attest.Statement{Kind: attest.KindProbe, Signer: s.pids[3], Seq: 1 << 62, Time: at, Probe: &pr})
	_, fresh := derive(t, &changed, s.params)
	if _, got := derive(t, &changed, p); got.Hash() != fresh.Hash() || c.Misses != 6 || c.Hits != 9 {
		t.Fatalf("changed round: same table %v, %d misses, %d hits", got.Hash() == fresh.Hash(), c.Misses, c.Hits)
	}
	if c := NewRoundCache(3); c.Judge(JudgeFor(p.Manifest)) != nil {
		p.Judge = c.Judge(JudgeFor(p.Manifest))
		derive(t, s.ps, p)
		if c.Len() != 3 {
			t.Fatalf("cache of 3 holds %d rounds", c.Len())
		}
	}
}
