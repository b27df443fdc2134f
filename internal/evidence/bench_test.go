package evidence

import (
	"fmt"
	"math/rand"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/evidence/evidencetest"
	"github.com/mirrornet/mirrornet/internal/ledger"
	"github.com/mirrornet/mirrornet/internal/probe"
	"github.com/mirrornet/mirrornet/internal/probe/probetest"
	"github.com/mirrornet/mirrornet/protocol"
)

// BenchmarkLedgerDay computes the ledger of one day of evidence at the lan
// probe rate (5-minute probe epochs, six observers a target) for 1,000
// mirrors in 250 domains, and reports:
//
//   - derive+compute-s and -cpu-s: the wall and CPU time a mirror takes
//     from its verified statements to the table (statements are verified
//     once, as they arrive);
//
//   - outsider-verify-cpu-s: the CPU time an outsider's `ledger verify`
//     spends checking every signature of that day, projected from the
//     measured per-statement CPU cost of Parse (spread over all cores);
//
//   - evidence-MB/mirror/day: bytes of signed evidence each mirror adds per
//     day, from the sizes of really signed statements.
//
//     go test ./internal/evidence -run XXX -bench LedgerDay -benchtime 1x
func BenchmarkLedgerDay(b *testing.B) {
	const (
		mirrors   = 1000
		rounds    = 288 // a day of 5-minute probe epochs
		observers = 6
		// measured are the rounds actually derived: an hour. Every round
		// costs the same (a committee draw per target over every alive
		// mirror, then the votes), so the day is 24 times the hour.
		measured = 12
	)
	sc := evidencetest.Build(b, 3, nil) // for a real release and fund
	r := rand.New(rand.NewSource(1))
	ids := make([]string, mirrors)
	pids := make([]peer.ID, mirrors)
	keys := make([]crypto.PrivKey, mirrors)
	domains := map[string]string{}
	for i := range ids {
		k, _, err := crypto.GenerateEd25519Key(r)
		if err != nil {
			b.Fatal(err)
		}
		id, _ := peer.IDFromPrivateKey(k)
		ids[i], pids[i], keys[i] = id.String(), id, k
		domains[ids[i]] = fmt.Sprintf("net:10.%d.%d.0/24", i/250, i%250)
	}
	fund := sc.Fund
	fund.EpochMS = measured * evidencetest.RoundMS
	fundRaw, err := attest.SignFund(fund, sc.Maintainers, sc.MaintainerKey)
	if err != nil {
		b.Fatal(err)
	}
	rel, err := attest.VerifyRelease(sc.Release, farFuture)
	if rel == nil {
		b.Fatal(err)
	}

	// Sizes of real statements as a lan mirror signs them.
	live := protocol.Liveness{Peer: ids[0], State: protocol.StateUp, Seq: 1 << 40, Time: evidencetest.Epoch0,
		Addrs: []string{"/ip4/198.51.100.7/tcp/4001", "/ip4/198.51.100.7/udp/4001/quic-v1"},
		HTTP:  "https://mirror-0.example.org", Bundles: []string{evidencetest.AppCID}, Version: "0.3.0"}
	liveRaw, err := attest.SignLiveness(keys[0], live)
	if err != nil {
		b.Fatal(err)
	}
	probeOf := func(obs, target int, round int, seq uint64) protocol.ProbeResult {
		at := time.UnixMilli(evidencetest.Epoch0 + int64(round)*evidencetest.RoundMS + 1000)
		pr := probetest.Result(b, pids[obs], probetest.Spec{Target: pids[target], Bundle: evidencetest.AppCID, Outcome: protocol.OutcomePass,
			At: at, EpochLength: evidencetest.RoundMS * time.Millisecond, Seq: seq, TargetKey: keys[target]})
		pr.LatencyMS = 12
		return pr
	}
	probeRaw, err := attest.SignProbe(keys[1], probeOf(1, 0, 0, 1<<40))
	if err != nil {
		b.Fatal(err)
	}
	perMirrorDay := float64(rounds*observers*len(probeRaw)+rounds*len(liveRaw)) / 1e6

	// What Parse costs per statement, on every core.
	sample := NewSet()
	for i := range 4000 {
		raw, err := attest.SignProbe(keys[i%mirrors], probeOf(i%mirrors, (i+1)%mirrors, 0, uint64(1<<40+i)))
		if err != nil {
			b.Fatal(err)
		}
		sample.Add(raw)
	}
	c0 := cpuTime()
	if p := Parse(sample); p.Invalid != 0 {
		b.Fatal("sample did not verify")
	}
	perItem := (cpuTime() - c0) / time.Duration(sample.Len())

	// A day of verified statements, built directly (signing 1.7 million
	// statements would take this machine minutes and measure nothing).
	ps := &Parsed{Root: "bench", Releases: []*attest.Release{rel}, Funds: [][]byte{fundRaw}}
	var seq uint64 = 1 << 40
	domainOf := func(p peer.ID) string { return domains[p.String()] }
	// Every synthetic result has the size and shape of a real one (the
	// judge reads observer, target, epoch, round, time and outcome).
	template := probeOf(1, 0, 0, 1)
	for round := range measured {
		at := time.UnixMilli(evidencetest.Epoch0 + int64(round)*evidencetest.RoundMS + 500)
		epoch := uint64(at.UnixMilli() / evidencetest.RoundMS)
		for t := range mirrors {
			seq++
			l := live
			l.Peer, l.Seq, l.Time = ids[t], seq, at.UnixMilli()
			ps.Statements = append(ps.Statements, &attest.Statement{Kind: attest.KindLiveness, Signer: pids[t], Seq: seq, Time: at, Liveness: &l})
			// The target's committee holds the seats that vote.
			for _, seat := range probe.Committee(epoch, pids[t], pids, domainOf, observers) {
				seq++
				pr := template
				pr.Observer, pr.Target, pr.Seq, pr.Epoch = seat.Holder.String(), ids[t], seq, epoch
				pr.Time = at.UnixMilli() + 500
				ps.Statements = append(ps.Statements, &attest.Statement{Kind: attest.KindProbe, Signer: seat.Holder, Seq: seq, Time: time.UnixMilli(pr.Time), Probe: &pr})
			}
		}
	}
	for i, id := range ids {
		a := protocol.PayoutAddress{Peer: id, Seq: 1, Time: evidencetest.Epoch0 - 1, Addresses: map[string]string{"STX": fmt.Sprintf("SP%04d", i)}}
		ps.Statements = append(ps.Statements, &attest.Statement{Kind: attest.KindPayout, Seq: 1, Time: time.UnixMilli(a.Time), Payout: &a})
	}
	params := Params{Manifest: Manifest{App: sc.App, Fund: fund.ID(), ProbeEpochMS: evidencetest.RoundMS, K: 3}, Domains: domains, Judge: JudgeFor(Manifest{ProbeEpochMS: evidencetest.RoundMS, K: 3})}

	b.ResetTimer()
	cpu0 := cpuTime()
	var tab *ledger.Table
	for range b.N {
		in, _, err := DeriveParsed(ps, params)
		if err != nil {
			b.Fatal(err)
		}
		if tab, err = ledger.Compute(in); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	paid := 0
	for _, p := range tab.Payouts {
		if p.Amount > 0 {
			paid++
		}
	}
	if paid != mirrors {
		b.Fatalf("%d of %d mirrors paid", paid, mirrors)
	}
	day := float64(rounds) / measured
	b.ReportMetric(day*b.Elapsed().Seconds()/float64(b.N), "day-derive+compute-s")
	// CPU seconds (both cores, GC included): what the computation costs
	// whatever else the shared machine runs.
	b.ReportMetric(day*cpu.Seconds()/float64(b.N), "day-derive+compute-cpu-s")
	b.ReportMetric(day*(perItem*time.Duration(len(ps.Statements))).Seconds(), "day-outsider-verify-cpu-s")
	b.ReportMetric(perMirrorDay, "evidence-MB/mirror/day")
	b.ReportMetric(day*float64(len(ps.Statements)), "day-statements")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
