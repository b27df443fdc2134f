package evidence

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/evidence/evidencetest"
	"github.com/mirrornet/mirrornet/internal/probe"
	"github.com/mirrornet/mirrornet/internal/probe/probetest"
	"github.com/mirrornet/mirrornet/protocol"
)

// synthSpec describes a synthetic epoch of verified statements: what a
// mirror holds after verifying each statement as it arrived. Signing a
// day of statements for a thousand mirrors would take minutes and measure
// nothing, so statements are built directly; each has the size and shape
// of a real one (the judge reads observer, target, epoch, round, time,
// outcome and challenge).
type synthSpec struct {
	mirrors, domains, rounds, observers int
	seed                                int64
	// fail is the chance a result fails; down the chance a mirror has no
	// liveness sample in a round (it is still probed); stray the chance a
	// target gets one more result from an observer off its committee;
	// canary the chance a seat's result is a passed canary.
	fail, down, stray, canary float64
	// unobserved is how many mirrors (the first) no domain holds: their
	// observers report no address.
	unobserved int
}

type synth struct {
	ps      *Parsed
	params  Params
	ids     []string
	keys    []crypto.PrivKey
	pids    []peer.ID
	domains map[string]string
	addrs   []string // where observers reach each mirror ("" unobserved)
	live    protocol.Liveness
	probe   protocol.ProbeResult
}

func synthDay(tb testing.TB, sp synthSpec) *synth {
	tb.Helper()
	sc := evidencetest.Build(tb, 3, nil) // for a real release and fund
	r := rand.New(rand.NewSource(sp.seed))
	s := &synth{ids: make([]string, sp.mirrors), pids: make([]peer.ID, sp.mirrors), keys: make([]crypto.PrivKey, sp.mirrors), domains: map[string]string{}, addrs: make([]string, sp.mirrors)}
	for i := range s.ids {
		k, _, err := crypto.GenerateEd25519Key(r)
		if err != nil {
			tb.Fatal(err)
		}
		id, _ := peer.IDFromPrivateKey(k)
		s.ids[i], s.pids[i], s.keys[i] = id.String(), id, k
		if i >= sp.unobserved {
			d := i % sp.domains
			s.domains[s.ids[i]] = fmt.Sprintf("net:10.%d.%d.0/24", d/250, d%250)
			s.addrs[i] = fmt.Sprintf("10.%d.%d.%d", d/250, d%250, 1+i/sp.domains%250)
		}
	}
	fund := sc.Fund
	fund.EpochMS = int64(sp.rounds) * evidencetest.RoundMS
	fundRaw, err := attest.SignFund(fund, sc.Maintainers, sc.MaintainerKey)
	if err != nil {
		tb.Fatal(err)
	}
	rel, err := attest.VerifyRelease(sc.Release, farFuture)
	if rel == nil {
		tb.Fatal(err)
	}
	s.live = protocol.Liveness{Peer: s.ids[0], State: protocol.StateUp, Seq: 1 << 40, Time: evidencetest.Epoch0,
		Addrs: []string{"/ip4/198.51.100.7/tcp/4001", "/ip4/198.51.100.7/udp/4001/quic-v1"},
		HTTP:  "https://mirror-0.example.org", Bundles: []string{evidencetest.AppCID}, Version: "0.3.0"}
	// A real result whose challenge is no canary (the template of all).
	for t := 0; ; t++ {
		if s.probe = s.probeOf(tb, 1, t%sp.mirrors, t/sp.mirrors, 1<<40); !strings.HasPrefix(s.probe.Challenge, protocol.ChallengeCanary) {
			break
		}
	}
	ps := &Parsed{Root: "synthetic", Releases: []*attest.Release{rel}, Funds: [][]byte{fundRaw}}
	var seq uint64 = 1 << 40
	domainOf := func(p peer.ID) string { return s.domains[p.String()] }
	byID := map[peer.ID]int{}
	for i, p := range s.pids {
		byID[p] = i
	}
	add := func(obs, t int, at time.Time, epoch uint64, pass, canary bool) {
		seq++
		pr := s.probe
		pr.Observer, pr.Target, pr.Seq, pr.Epoch, pr.Time, pr.Addr = s.ids[obs], s.ids[t], seq, epoch, at.UnixMilli(), s.addrs[t]
		if !pass {
			pr.Outcome, pr.Receipts = protocol.OutcomeFail, nil
		}
		if canary {
			pr.Challenge = protocol.ChallengeCanary + ":" + fmt.Sprintf("%032x", seq)
		}
		ps.Statements = append(ps.Statements, &attest.Statement{Kind: attest.KindProbe, Signer: s.pids[obs], Seq: seq, Time: at, Probe: &pr})
	}
	for round := range sp.rounds {
		at := time.UnixMilli(evidencetest.Epoch0 + int64(round)*evidencetest.RoundMS + 500)
		epoch := uint64(at.UnixMilli() / evidencetest.RoundMS)
		draw := probe.NewDraw(epoch, s.pids, domainOf, sp.observers)
		for t := range s.ids {
			if r.Float64() >= sp.down {
				seq++
				l := s.live
				l.Peer, l.Seq, l.Time = s.ids[t], seq, at.UnixMilli()
				ps.Statements = append(ps.Statements, &attest.Statement{Kind: attest.KindLiveness, Signer: s.pids[t], Seq: seq, Time: at, Liveness: &l})
			}
			// The target's committee holds the seats that vote.
			for _, seat := range draw.Committee(s.pids[t]) {
				add(byID[seat.Holder], t, at.Add(500*time.Millisecond), epoch, r.Float64() >= sp.fail, r.Float64() < sp.canary)
			}
			if r.Float64() < sp.stray {
				if o := r.Intn(len(s.ids)); o != t {
					add(o, t, at.Add(700*time.Millisecond), epoch, r.Float64() >= sp.fail, false)
				}
			}
		}
	}
	for i, id := range s.ids {
		a := protocol.PayoutAddress{Peer: id, Seq: 1, Time: evidencetest.Epoch0 - 1, Addresses: map[string]string{"STX": fmt.Sprintf("SP%04d", i)}}
		ps.Statements = append(ps.Statements, &attest.Statement{Kind: attest.KindPayout, Seq: 1, Time: time.UnixMilli(a.Time), Payout: &a})
	}
	m := Manifest{App: sc.App, Fund: fund.ID(), ProbeEpochMS: evidencetest.RoundMS, K: 3}
	s.ps, s.params = ps, Params{Manifest: m, Judge: JudgeFor(m)}
	return s
}

// probeOf is a real probe result of obs probing target in a round.
func (s *synth) probeOf(tb testing.TB, obs, target int, round int, seq uint64) protocol.ProbeResult {
	at := time.UnixMilli(evidencetest.Epoch0 + int64(round)*evidencetest.RoundMS + 1000)
	pr := probetest.Result(tb, s.pids[obs], probetest.Spec{Target: s.pids[target], Bundle: evidencetest.AppCID, Outcome: protocol.OutcomePass,
		At: at, EpochLength: evidencetest.RoundMS * time.Millisecond, Seq: seq, TargetKey: s.keys[target]})
	pr.LatencyMS = 12
	pr.Addr = "203.0.113.17" // as long as any address a result reports
	return pr
}
