package evidence

import (
	"syscall"
	"testing"
	"time"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/ledger"
)

// BenchmarkLedgerDay computes the ledger of one day of evidence at the lan
// probe rate (5-minute probe epochs, six committee seats a target) for
// 1,000 mirrors in 250 domains, and reports:
//
//   - day-derive+compute-s and -cpu-s: the wall and CPU time from a
//     mirror's verified statements to the table, judging every round
//     (what an outsider's `ledger verify` spends besides signatures, and a
//     mirror that judged nothing before the epoch closed);
//
//   - day-close-s and -cpu-s: the same when every round but the last was
//     judged as it closed (Prejudge: a RoundCache holds their verdicts),
//     which is what a running mirror spends when the epoch closes;
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
		// measured are the rounds actually derived: two hours. Every round
		// costs the same (a committee draw per target over every alive
		// mirror, then the votes), so the day is 12 times that.
		measured = 24
	)
	s := synthDay(b, synthSpec{mirrors: mirrors, domains: 250, rounds: measured, observers: observers, seed: 1})
	keys := s.keys

	// Sizes of real statements as a lan mirror signs them.
	liveRaw, err := attest.SignLiveness(keys[0], s.live)
	if err != nil {
		b.Fatal(err)
	}
	probeRaw, err := attest.SignProbe(keys[1], s.probe)
	if err != nil {
		b.Fatal(err)
	}
	perMirrorDay := float64(rounds*observers*len(probeRaw)+rounds*len(liveRaw)) / 1e6

	// What Parse costs per statement, on every core.
	sample := NewSet()
	for i := range 4000 {
		raw, err := attest.SignProbe(keys[i%mirrors], s.probeOf(b, i%mirrors, (i+1)%mirrors, 0, uint64(1<<40+i)))
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

	run := func(p Params) (*ledger.Table, time.Duration, time.Duration) {
		b.Helper()
		w0, cpu0 := time.Now(), cpuTime()
		in, _, err := DeriveParsed(s.ps, p)
		if err != nil {
			b.Fatal(err)
		}
		tab, err := ledger.Compute(in)
		if err != nil {
			b.Fatal(err)
		}
		return tab, time.Since(w0), cpuTime() - cpu0
	}
	var wall, cpu, closeWall, closeCPU time.Duration
	var tab *ledger.Table
	b.ResetTimer()
	for range b.N {
		// From nothing: every round judged.
		t, w, c := run(s.params)
		tab, wall, cpu = t, wall+w, cpu+c
		// A mirror that judged each round as it closed: the cache holds
		// every round; the epoch's close costs the derivation around the
		// judge, plus one round's judgement (measured above).
		cache := NewRoundCache(measured)
		p := s.params
		p.Judge = cache.Judge(p.Judge)
		run(p)
		t, w, c = run(p)
		if t.Hash() != tab.Hash() || cache.Hits != measured {
			b.Fatalf("cached ledger differs or judged again (%d hits)", cache.Hits)
		}
		closeWall, closeCPU = closeWall+w, closeCPU+c
	}
	b.StopTimer()
	paid := 0
	for _, p := range tab.Payouts {
		if p.Amount > 0 {
			paid++
		}
	}
	if paid != mirrors {
		b.Fatalf("%d of %d mirrors paid", paid, mirrors)
	}
	n := time.Duration(b.N)
	wall, cpu, closeWall, closeCPU = wall/n, cpu/n, closeWall/n, closeCPU/n
	day := float64(rounds) / measured
	b.ReportMetric(day*wall.Seconds(), "day-derive+compute-s")
	// CPU seconds (both cores, GC included): what the computation costs
	// whatever else the shared machine runs.
	b.ReportMetric(day*cpu.Seconds(), "day-derive+compute-cpu-s")
	// At the close: the day's derivation with every verdict remembered,
	// plus the judgement of its last round.
	roundWall, roundCPU := (wall-closeWall)/measured, (cpu-closeCPU)/measured
	b.ReportMetric(day*closeWall.Seconds()+roundWall.Seconds(), "day-close-s")
	b.ReportMetric(day*closeCPU.Seconds()+roundCPU.Seconds(), "day-close-cpu-s")
	b.ReportMetric(day*(perItem*time.Duration(len(s.ps.Statements))).Seconds(), "day-outsider-verify-cpu-s")
	b.ReportMetric(perMirrorDay, "evidence-MB/mirror/day")
	b.ReportMetric(day*float64(len(s.ps.Statements)), "day-statements")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
