package node

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/memberlist"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	dto "github.com/prometheus/client_model/go"

	"github.com/mirrornet/mirrornet/internal/debugprof"
	"github.com/mirrornet/mirrornet/internal/health"
	"github.com/mirrornet/mirrornet/internal/netsim"
)

// BenchmarkScale runs N mirrors (full node.Node instances as shipped: real
// gossipsub, real Ed25519 signatures, Noise and yamux) on a simulated
// network (internal/netsim: 10 ms one-way links, optional loss), and then,
// in the same run and on the same kind of network, N hashicorp/memberlist
// members twice: DefaultLANConfig, and a config tuned to our profile's
// detection timeout. Each system goes through the same script, one after
// the other (never two at once, so each has both cores):
//
//  1. start N members, connect/join them, wait until every view holds all N
//     alive; memory per member = (heap after GC, RSS) growth / N;
//  2. settle, then an idle window: bytes sent and received per member per
//     second, counted at the transport (every byte the member hands to the
//     network: gossip, probes, sync, identify; memberlist: UDP and TCP),
//     and CPU per member (process CPU time / N / wall time);
//  3. crash one member (its address is cut off first, so no FIN or RST
//     reaches anyone, then it is closed): time until 99% and 100% of the
//     others hold it dead;
//  4. partition the network 50/50 for a while, heal it, and time until
//     every view again holds exactly the live members (alive or suspect)
//     and the crashed one not;
//  5. false "dead": a live member's state turning dead in a live
//     observer's view outside the partition (memberlist: NotifyLeave for a
//     live member; mirrornet: a rise in the observer's count of dead
//     members other than the crashed one, sampled every 250 ms of
//     simulated time up to N=250, every second at N=1,000).
//
// Loss is modelled by netsim: each datagram or stream segment is lost with
// the given probability; a lost stream segment is sent again after
// max(200 ms, 4 × latency) and what follows it on that connection waits
// (TCP). Both systems see the same network.
//
// Time can be stretched for both systems alike when N members do not fit
// two cores in real time: MIRRORNET_SCALE_STRETCH=k multiplies every timer
// of both protocols and the link latency and RTO by k; durations are
// divided by k and rates given per simulated second.
//
//	go test ./node -run XXX -bench Scale -benchtime 1x -timeout 3h
//	MIRRORNET_SCALE_N=100 MIRRORNET_SCALE_LOSS=1 go test ./node -run XXX -bench Scale -benchtime 1x
//	MIRRORNET_SCALE_SYSTEMS=mirrornet  (or memberlist-lan, memberlist-tuned)
//	MIRRORNET_SCALE_PARTITION=0  (skip the partition and heal: large N)
func BenchmarkScale(b *testing.B) {
	ns := envInts(b, "MIRRORNET_SCALE_N", []int{100, 300, 1000})
	losses := envInts(b, "MIRRORNET_SCALE_LOSS", []int{0, 1})
	for _, n := range ns {
		for _, loss := range losses {
			b.Run(fmt.Sprintf("N=%d/loss=%d%%", n, loss), func(b *testing.B) {
				for range b.N {
					runScale(b, n, float64(loss)/100, scaleStretch(b), b.ReportMetric)
				}
			})
		}
	}
}

// TestScaleVirtual runs BenchmarkScale's script, for every system, in a
// testing/synctest bubble: time is virtual and moves only when every
// goroutine of every member is idle, so the protocols run as on CPUs of
// infinite speed, whatever the load of the shared machine, and no time
// stretch is needed. Bytes, detection and healing times and false "dead"
// verdicts are then the protocols' own; CPU per member is CPU seconds
// spent per simulated second (the process's, like the benchmark's).
// It runs only with MIRRORNET_SCALE_VIRTUAL=1 and takes the benchmark's
// MIRRORNET_SCALE_N, _LOSS and _SYSTEMS:
//
//	MIRRORNET_SCALE_VIRTUAL=1 MIRRORNET_SCALE_N=100 MIRRORNET_SCALE_LOSS=0,1 go test ./node -run ScaleVirtual -v -timeout 3h
func TestScaleVirtual(t *testing.T) {
	if os.Getenv("MIRRORNET_SCALE_VIRTUAL") != "1" {
		t.Skip("set MIRRORNET_SCALE_VIRTUAL=1 to measure")
	}
	ns := envInts(t, "MIRRORNET_SCALE_N", []int{100, 300, 1000})
	losses := envInts(t, "MIRRORNET_SCALE_LOSS", []int{0, 1})
	scaleDebugServer(t)
	for _, n := range ns {
		for _, loss := range losses {
			t.Run(fmt.Sprintf("N=%d/loss=%d%%", n, loss), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					var line strings.Builder
					runScale(t, n, float64(loss)/100, 1, func(v float64, unit string) {
						fmt.Fprintf(&line, " %.4g %s", v, unit)
					})
					t.Logf("virtual time:%s", line.String())
					// A closed memberlist member's probe in flight ends
					// at its own timeout: let virtual time reach it, as
					// a bubble ends only once every goroutine has.
					time.Sleep(time.Minute)
				})
			})
		}
	}
}

// scaleDebugServer serves the process's profiles (package debugprof) on
// MIRRORNET_SCALE_PPROF, a loopback address such as 127.0.0.1:6070, so
// that a long run can be looked into while it runs (outside any synctest
// bubble: its goroutines do not hold virtual time up).
func scaleDebugServer(t *testing.T) {
	addr := os.Getenv("MIRRORNET_SCALE_PPROF")
	if addr == "" {
		return
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().IsLoopback() {
		t.Fatalf("MIRRORNET_SCALE_PPROF=%q: want a loopback address and port", addr)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	debugprof.Register(mux)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
}

// envInts parses a comma-separated list of whole numbers from the
// environment, or returns def.
func envInts(b testing.TB, name string, def []int) []int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		x, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || x < 0 {
			b.Fatalf("%s=%q: want whole numbers separated by commas", name, v)
		}
		out = append(out, x)
	}
	return out
}

// scaleStretch is MIRRORNET_SCALE_STRETCH (default 1).
func scaleStretch(b testing.TB) int {
	v := os.Getenv("MIRRORNET_SCALE_STRETCH")
	if v == "" {
		return 1
	}
	k, err := strconv.Atoi(v)
	if err != nil || k < 1 {
		b.Fatalf("MIRRORNET_SCALE_STRETCH=%q: want a whole number >= 1", v)
	}
	return k
}

// A scaleSystem is one membership protocol under test.
type scaleSystem interface {
	// start builds and joins n members on nw and returns once every
	// member's view holds all n alive.
	start(b testing.TB, nw *netsim.Network, ips []netip.Addr)
	// deadCounts returns, per live member, how many members its view holds
	// dead (ignoring the one crashed, if any); -1 for a crashed one.
	deadCounts() []int
	// knowsDead reports whether live member obs holds member v dead.
	knowsDead(obs, v int) bool
	// agree reports whether every live member's view holds exactly the
	// live members (alive or suspect).
	agree() bool
	// crash stops member v without a word (its address is already cut
	// off).
	crash(v int)
	// falseDeadEvents counts dead verdicts about live members seen by
	// event (-1: not available, the harness samples deadCounts).
	falseDeadEvents() int
	// resetFalseDead starts counting false dead events afresh.
	setCounting(on bool)
	close()
}

// scaleResult is what one system measured.
type scaleResult struct {
	heapPer, rssPer  float64 // bytes per member
	sentPer, recvPer float64 // bytes per member per simulated second
	cpuPer           float64 // fraction of a core per member (simulated time)
	know99, know100  time.Duration
	// firstSuspicion: when the first suspicion of the crashed member that
	// any view holds was signed, after the crash (mirrornet only): the
	// failure detector's part of know99; the suspicion timeout and the
	// dissemination are the rest.
	firstSuspicion       time.Duration
	healAgree            time.Duration // -1: not within the limit
	falseDead            int
	startup              time.Duration
	partitionDeadPercent float64 // share of cross-side pairs dead before the heal
	lagMax               time.Duration
	// mirrornet only, over the idle window: liveness statements published
	// per simulated second network-wide, and per member the gossipsub and
	// ping payload bytes sent per simulated second (the rest of sentPer is
	// framing, encryption, identify, sync).
	statementsPerSec, gossipSentPer, pingSentPer float64
	// steadyStatementsPerSec is the refresh rate network-wide of the
	// steady state (steadyRefresher), 0 if the phases were not spread.
	steadyStatementsPerSec float64
}

// scaleCounters is what a system can count besides the transport's bytes.
type scaleCounters interface {
	// counters returns totals so far over every member: liveness
	// statements published, gossipsub bytes sent, ping payload bytes sent.
	counters() (statements, gossipSent, pingSent int64)
}

// runScale runs the script on every system selected and reports each
// figure with report (b.ReportMetric, or a log line in virtual time).
func runScale(b testing.TB, n int, loss float64, k int, report func(float64, string)) {
	latency := benchLinkLatency(b, 10*time.Millisecond)
	prof, _ := health.ProfileByName("lan")
	systems := map[string]func() scaleSystem{
		"mirrornet":        func() scaleSystem { return &mnSystem{stretch: k} },
		"memberlist-lan":   func() scaleSystem { return &mlSystem{cfg: mlLANConfig(k), stretch: k} },
		"memberlist-tuned": func() scaleSystem { return &mlSystem{cfg: mlTunedConfig(k, n, prof), stretch: k} },
	}
	order := []string{"mirrornet", "memberlist-lan", "memberlist-tuned"}
	if v := os.Getenv("MIRRORNET_SCALE_SYSTEMS"); v != "" {
		order = strings.Split(v, ",")
	}
	load, _ := os.ReadFile("/proc/loadavg")
	b.Logf("N=%d loss=%.0f%% stretch=%d latency=%v load average at start: %s", n, loss*100, k, latency, strings.TrimSpace(string(load)))
	res := map[string]scaleResult{}
	for _, name := range order {
		mk, ok := systems[name]
		if !ok {
			b.Fatalf("MIRRORNET_SCALE_SYSTEMS: unknown system %q", name)
		}
		r := runScaleSystem(b, mk(), n, loss, k, latency)
		res[name] = r
		b.Logf("%s: %+v", name, r)
		unit := func(what string) string { return name + "-" + what }
		report(r.sentPer, unit("sent-B/s/member"))
		report(r.recvPer, unit("recv-B/s/member"))
		report(r.cpuPer*100, unit("CPU-%core/member"))
		report(r.heapPer/1024, unit("heap-KiB/member"))
		report(r.rssPer/1024, unit("RSS-KiB/member"))
		report(r.know99.Seconds(), unit("crash-99%-s"))
		report(r.know100.Seconds(), unit("crash-100%-s"))
		if _, ok := any(mk()).(firstSuspector); ok {
			report(r.firstSuspicion.Seconds(), unit("crash-first-suspicion-s"))
		}
		heal := r.healAgree.Seconds()
		if r.healAgree < 0 {
			heal = max(-2, float64(r.healAgree)) // -1: did not agree within the limit; -2: no partition
		}
		report(heal, unit("heal-agree-s"))
		report(float64(r.falseDead), unit("false-dead"))
		report(r.partitionDeadPercent, unit("partition-dead-%"))
		report(float64(r.lagMax.Milliseconds()), unit("timer-lag-max-ms"))
		if _, ok := any(mk()).(scaleCounters); ok {
			report(r.statementsPerSec, unit("statements/s"))
			report(r.steadyStatementsPerSec, unit("steady-statements/s"))
			report(r.gossipSentPer, unit("gossip-sent-B/s/member"))
			report(r.pingSentPer, unit("ping-sent-B/s/member"))
		}
	}
	mn, lan := res["mirrornet"], res["memberlist-lan"]
	if mn.know99 > 0 && lan.know99 > 0 {
		report(float64(mn.know99)/float64(lan.know99), "crash-99%-ratio-vs-lan")
	}
	if mn.sentPer > 0 && lan.sentPer > 0 {
		report((mn.sentPer+mn.recvPer)/(lan.sentPer+lan.recvPer), "bytes-ratio-vs-lan")
	}
	if t := res["memberlist-tuned"]; mn.sentPer > 0 && t.sentPer > 0 {
		report((mn.sentPer+mn.recvPer)/(t.sentPer+t.recvPer), "bytes-ratio-vs-tuned")
		if t.know99 > 0 {
			report(float64(mn.know99)/float64(t.know99), "crash-99%-ratio-vs-tuned")
		}
	}
	report(float64(k), "time-stretch")
}

// memStats returns the heap in use after a full collection and the RSS.
func memStats() (heap, rss int64) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	_, rss = procRSS()
	return int64(ms.HeapInuse), rss
}

// procRSS returns the process's peak and current RSS.
func procRSS() (peak, rss int64) {
	status, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(status), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			peak = kb << 10
		}
	}
	return peak, rss
}

// writeHeapProfile writes the heap profile (after a collection) to path.
func writeHeapProfile(b testing.TB, path string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

// threadCPU is the calling OS thread's CPU time so far (lock the
// goroutine to its thread).
func threadCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func runScaleSystem(b testing.TB, sys scaleSystem, n int, loss float64, k int, latency time.Duration) scaleResult {
	b.Helper()
	d := time.Duration(k)
	nw, err := netsim.New(netsim.Config{Latency: latency * d, Loss: loss, RTO: max(200*time.Millisecond, 4*latency) * d, Seed: uint64(n)})
	if err != nil {
		b.Fatal(err)
	}
	ips := make([]netip.Addr, n)
	for i := range n {
		ips[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	var r scaleResult
	heap0, rss0 := memStats()
	t0 := time.Now()
	defer sys.close()
	sys.start(b, nw, ips)
	r.startup = time.Since(t0) / d
	heap1, rss1 := memStats()
	r.heapPer = float64(heap1-heap0) / float64(n)
	r.rssPer = float64(rss1-rss0) / float64(n)
	if path := os.Getenv("MIRRORNET_SCALE_HEAPPROFILE"); path != "" {
		// The heap of n running members, for go tool pprof.
		writeHeapProfile(b, fmt.Sprintf("%s.%T.N%d", path, sys, n))
	}

	// False "dead" from here on: by event where the system has them, else
	// by sampling every live observer's dead count.
	crashed := -1
	var mu sync.Mutex
	sampled := 0
	var sampleCost time.Duration
	counting := true
	var prev []int
	sample := func() {
		s := threadCPU()
		c := sys.deadCounts()
		mu.Lock()
		if counting && prev != nil {
			for i := range c {
				if i != crashed && c[i] > prev[i] {
					sampled += c[i] - prev[i]
					if diagFalseDead {
						fmt.Printf("DIAG t=%v observer=%d dead %d -> %d (crashed %d)\n", time.Since(t0).Round(time.Millisecond), i, prev[i], c[i], crashed)
					}
				}
			}
		}
		prev = c
		sampleCost += threadCPU() - s
		mu.Unlock()
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	byEvent := sys.falseDeadEvents() >= 0
	if !byEvent {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// One OS thread, so that its CPU time can be told apart.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			t := time.NewTicker(sampleEvery(n) * d)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					sample()
				}
			}
		}()
	}
	// How late a 100 ms timer fires: the harness's own view of CPU
	// starvation (other processes on the machine, or too many members).
	var lagMax atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		const every = 100 * time.Millisecond
		t := time.NewTicker(every)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				now := time.Now()
				if l := int64(now.Sub(last) - every); l > lagMax.Load() {
					lagMax.Store(l)
				}
				last = now
			}
		}
	}()
	stopSampling := func() {
		cancel()
		wg.Wait()
	}
	defer stopSampling()

	// Settle, then the idle window (MIRRORNET_SCALE_SETTLE and
	// MIRRORNET_SCALE_WINDOW, in simulated seconds: mirrornet's refreshes
	// come every 30 s or more, so a window shorter than that after a
	// short settle sees no refresh at all and only probes and gossipsub's
	// own traffic).
	settle, window := 5, 10
	if v := envInts(b, "MIRRORNET_SCALE_SETTLE", nil); len(v) == 1 {
		settle = v[0]
	}
	if v := envInts(b, "MIRRORNET_SCALE_WINDOW", nil); len(v) == 1 && v[0] > 0 {
		window = v[0]
	}
	sleepFor(time.Duration(settle) * time.Second * d)
	// The window measures the network as it runs for hours, not as it
	// starts: see steadyRefresher.
	if st, ok := sys.(steadyRefresher); ok && scaleRefreshPhase(b) == "steady" {
		rate, early := st.steadyRefreshes(uint64(n))
		r.steadyStatementsPerSec = rate
		b.Logf("%T: refresh phases spread over the refresh interval: %.3f statements/s network-wide expected; %d mirrors refresh sooner (their last statement, signed while their view was small, runs out)", sys, rate, early)
	}
	var st0, gs0, ps0 int64
	cnt, hasCounters := sys.(scaleCounters)
	if hasCounters {
		st0, gs0, ps0 = cnt.counters()
	}
	sent0, recv0 := nw.Totals()
	mu.Lock()
	cost0 := sampleCost
	mu.Unlock()
	cpu0, w0 := cpuTime(), time.Now()
	sleepFor(time.Duration(window) * time.Second * d)
	cpu1, wall := cpuTime(), time.Since(w0)
	sent1, recv1 := nw.Totals()
	if hasCounters {
		st1, gs1, ps1 := cnt.counters()
		simw := wall.Seconds() / float64(k)
		r.statementsPerSec = float64(st1-st0) / simw
		r.gossipSentPer = float64(gs1-gs0) / float64(n) / simw
		r.pingSentPer = float64(ps1-ps0) / float64(n) / simw
	}
	mu.Lock()
	cost1 := sampleCost
	mu.Unlock()
	sim := wall.Seconds() / float64(k)
	r.sentPer = float64(sent1-sent0) / float64(n) / sim
	r.recvPer = float64(recv1-recv0) / float64(n) / sim
	// The sampler's own work (its thread's CPU time) is not the members'.
	r.cpuPer = (cpu1 - cpu0 - (cost1 - cost0)).Seconds() / float64(n) / sim

	// Say what the window measured now: at N=1,000 on a loaded machine the
	// rest of the script can take long.
	b.Logf("%T: window: %.0f / %.0f B/s/member sent / received, CPU %.3f%% core/member, heap %.0f KiB, RSS %.0f KiB per member, startup %v, statements %.2f/s, gossipsub %.0f B/s and ping payload %.0f B/s sent per member",
		sys, r.sentPer, r.recvPer, 100*r.cpuPer, r.heapPer/1024, r.rssPer/1024, r.startup, r.statementsPerSec, r.gossipSentPer, r.pingSentPer)

	// Crash.
	victim := n / 2
	mu.Lock()
	crashed = victim
	mu.Unlock()
	nw.Isolate(ips[victim])
	tc := time.Now()
	sys.crash(victim)
	need99 := int(math.Ceil(0.99 * float64(n-1)))
	poll := time.NewTicker(10 * time.Millisecond * d)
	deadline := time.Now().Add(120 * time.Second * d)
	for {
		known := 0
		for i := range n {
			if i != victim && sys.knowsDead(i, victim) {
				known++
			}
		}
		el := time.Since(tc) / d
		if fs, ok := sys.(firstSuspector); ok && r.firstSuspicion == 0 {
			if at, ok := fs.firstSuspicion(victim); ok {
				r.firstSuspicion = at.Sub(tc) / d
			}
		}
		if known >= need99 && r.know99 == 0 {
			r.know99 = el
		}
		if known == n-1 {
			r.know100 = el
			break
		}
		if time.Now().After(deadline) {
			b.Errorf("%T: crash known by %d of %d after %v", sys, known, n-1, el)
			r.know100 = -1
			break
		}
		<-poll.C
	}
	poll.Stop()

	b.Logf("%T: crash known by 99%% in %v, by all in %v (first suspicion signed after %v)", sys, r.know99, r.know100, r.firstSuspicion)

	// Partition 50/50, then heal (MIRRORNET_SCALE_PARTITION=0 skips it:
	// heal reported as -2).
	sleepFor(2 * time.Second * d)
	if os.Getenv("MIRRORNET_SCALE_PARTITION") == "0" {
		stopSampling()
		r.healAgree = -2
		if byEvent {
			r.falseDead = sys.falseDeadEvents()
		} else {
			mu.Lock()
			r.falseDead = sampled
			mu.Unlock()
		}
		r.lagMax = time.Duration(lagMax.Load())
		b.Logf("%T: false dead %d (no partition)", sys, r.falseDead)
		return r
	}
	sys.setCounting(false)
	mu.Lock()
	counting = false
	prePartition := sampled
	mu.Unlock()
	if byEvent {
		prePartition = sys.falseDeadEvents()
	}
	// Said now: at N=1,000 on a loaded machine the partition and the heal
	// can take longer than the run is given.
	b.Logf("%T: false dead up to the partition %d", sys, prePartition)
	half := func(ip netip.Addr) bool { return slices.Index(ips, ip) < n/2 }
	nw.Partition(half, ips)
	sleepFor(30 * time.Second * d)
	c := sys.deadCounts()
	cross, deadCross := 0, 0
	for i := range n {
		if i == victim {
			continue
		}
		other := n / 2 // live members on the other side
		if i < n/2 {
			other = n - n/2
		}
		if (i < n/2) != (victim < n/2) {
			other-- // the victim, dead already
		}
		cross += other
		deadCross += min(other, max(0, c[i]))
	}
	if cross > 0 {
		r.partitionDeadPercent = 100 * float64(deadCross) / float64(cross)
	}
	nw.Heal()
	th := time.Now()
	r.healAgree = -1
	deadline = time.Now().Add(60 * time.Second * d)
	nextDiag := th.Add(5 * time.Second * d)
	for time.Now().Before(deadline) {
		if sys.agree() {
			r.healAgree = time.Since(th) / d
			break
		}
		if ms, ok := sys.(*mnSystem); ok && time.Now().After(nextDiag) {
			b.Logf("heal +%v: %s", time.Since(th)/d, ms.disagreements())
			nextDiag = nextDiag.Add(5 * time.Second * d)
		}
		sleepFor(100 * time.Millisecond * d)
	}
	if r.healAgree >= 0 {
		// False "dead" again once agreed: a short tail.
		mu.Lock()
		prev, counting = nil, true
		mu.Unlock()
		sys.setCounting(true)
		sleepFor(5 * time.Second * d)
	}
	stopSampling()
	if byEvent {
		r.falseDead = sys.falseDeadEvents()
	} else {
		mu.Lock()
		r.falseDead = sampled
		mu.Unlock()
	}
	r.lagMax = time.Duration(lagMax.Load())
	b.Logf("%T: false dead before the partition %d, after the heal %d", sys, prePartition, r.falseDead-prePartition)
	return r
}

// sampleEvery is how often the harness samples every view for false
// "dead" verdicts: 250 ms up to 250 members, then longer in proportion
// (1 s at N=1,000), as one sample reads all N² view entries (at N=1,000
// and 250 ms that was more CPU than the members' own work). A mirror held
// dead stays dead until a newer statement of its own arrives; a false
// verdict undone within the interval can be missed.
func sampleEvery(n int) time.Duration {
	return 250 * time.Millisecond * time.Duration(max(1, (n+249)/250))
}

// sleepFor waits out a measurement window of the benchmark (not a
// synchronisation: the windows are what is measured).
func sleepFor(d time.Duration) { <-time.After(d) }

// A steadyRefresher is a system whose members sign periodic refreshes
// (mirrornet's liveness statements) on a schedule that the start-up
// bunches: mirrors that start together learn the network together, and
// their long refresh intervals (an hour at N=1,000) start together. In a
// network that has run for hours each mirror's next refresh is anywhere in
// its interval. steadyRefreshes moves every member's next refresh to such
// a point, drawn at random, and returns the refresh rate network-wide that
// the steady state has (what a window of the benchmark should then see).
type steadyRefresher interface {
	steadyRefreshes(seed uint64) (rate float64, early int)
}

// scaleRefreshPhase is MIRRORNET_SCALE_REFRESH: "steady" (the default)
// spreads the members' refresh phases as a long-running network has them
// (steadyRefresher), "start" keeps the schedule of a network that has just
// started (all mirrors at once).
func scaleRefreshPhase(b testing.TB) string {
	switch v := os.Getenv("MIRRORNET_SCALE_REFRESH"); v {
	case "", "steady":
		return "steady"
	case "start":
		return v
	default:
		b.Fatalf("MIRRORNET_SCALE_REFRESH=%q: want steady or start", v)
		return ""
	}
}

// steadyRefreshes draws each live mirror's next refresh uniformly in
// [now, now + its mean refresh gap] (health.RefreshSchedule: a gap is 85%
// to 95% of the refresh interval, so the mean is 90%). In a long-running
// network the refreshes of N mirrors form N independent renewal
// processes, and a window shorter than the shortest gap sees each mirror
// refresh with probability window / mean gap: exactly what this draw
// gives. The draw replaces the refresh the start-up scheduled, but never
// goes past two heartbeats before the mirror's last statement runs out
// (what the schedule itself guarantees): a mirror whose last statement was
// signed while its view was still small, with a short TTL, refreshes
// before that TTL ends, as it would have (counted in early: a settle long
// enough for every mirror's first refresh makes it 0).
func (s *mnSystem) steadyRefreshes(seed uint64) (rate float64, early int) {
	rng := rand.New(rand.NewPCG(seed, 12))
	for i, nd := range s.nodes {
		if s.dead[i] {
			continue
		}
		now := nd.clock()
		nd.mu.Lock()
		gap := nd.prof.MeanRefreshGap(nd.view.Len())
		at := now.Add(time.Duration(rng.Float64() * float64(gap)))
		if own, ok := nd.view.Mirror(nd.id, now); ok && own.Liveness != nil {
			expiry := time.UnixMilli(own.Liveness.Time).Add(own.Liveness.TTLDuration())
			if last := expiry.Add(-2 * nd.prof.Heartbeat); at.After(last) {
				at = last
				early++
			}
			nd.refreshAt = at
		} else if at.Before(nd.refreshAt) {
			nd.refreshAt = at
			early++
		}
		nd.mu.Unlock()
		rate += 1 / gap.Seconds()
	}
	return rate, early
}

// mnSystem is mirrornet: full nodes on netsim hosts.
type mnSystem struct {
	stretch int
	hosts   []host.Host
	nodes   []*Node
	dead    []bool
}

func (s *mnSystem) start(b testing.TB, nw *netsim.Network, ips []netip.Addr) {
	n := len(ips)
	d := time.Duration(s.stretch)
	s.dead = make([]bool, n)
	s.hosts = make([]host.Host, n)
	s.nodes = make([]*Node, n)
	keep := scaleFeatures(b)
	tune := scaleMesh(b)
	// Start them a few at a time: a node's start is mostly waiting (store,
	// admin socket, first publication). Only the features asked for run
	// (MIRRORNET_SCALE_FEATURES; default none: the liveness core).
	var mu sync.Mutex
	var firstErr error
	started := 0
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			sk, _, err := crypto.GenerateEd25519Key(nil)
			var h host.Host
			if err == nil {
				h, err = nw.NewHost(ips[i], sk)
			}
			var nd *Node
			if err == nil {
				cfg := testConfig(b)
				cfg.Profile = "lan"
				stretchConfig(&cfg, d)
				// The admin socket is not used here; in memory it does not
				// keep a synctest bubble (TestScaleVirtual) from idling.
				nd, err = New(cfg, WithHost(h, sk), func(o *options) {
					o.listenAdmin = listenMem
					o.keepFeature = keep
					o.tuneGossip = tune
				})
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = fmt.Errorf("mirror %d: %w", i, err)
			}
			s.hosts[i], s.nodes[i] = h, nd
			if started++; started%100 == 0 {
				// Process CPU time and RSS: a start-up of 1,000 mirrors
				// on a loaded machine is long; say how far it got.
				_, rss := procRSS()
				fmt.Fprintf(os.Stderr, "scale: mirrornet N=%d: %d started, CPU %v, RSS %d MiB\n", n, started, cpuTime().Round(time.Second), rss>>20)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	// Each mirror dials the next one and three at random (about eight
	// connections each), as bootstrap and discovery would give it.
	rng := rand.New(rand.NewPCG(uint64(n), 3))
	sem = make(chan struct{}, 64)
	for i := range n {
		for j := range 4 {
			t := (i + 1) % n
			if j > 0 {
				t = rng.IntN(n)
			}
			if t == i {
				continue
			}
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				// A loaded machine can time out a handshake: retry, and
				// leave the rest to gossip (views must still fill up).
				for range 3 {
					ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second*d)
					err := s.hosts[i].Connect(ctx, peer.AddrInfo{ID: s.hosts[t].ID(), Addrs: s.hosts[t].Addrs()})
					cancel()
					if err == nil {
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	deadline := time.Now().Add(300 * time.Second * d)
	// After a minute, 99% of the views complete and none missing more
	// than 1% of the mirrors is enough to go on: a mirror whose statements
	// a view missed at start (published before the meshes formed) is
	// learnt at its next refresh, which at N=1,000 may be an hour away.
	// The run says how far from complete the views were.
	enough := time.Now().Add(60 * time.Second * d)
	lastReport := time.Now()
	for {
		complete, least := s.progress(n)
		nearly := time.Now().After(enough) && complete >= n-n/100 && least >= n-n/100
		if nearly && complete < n {
			fmt.Fprintf(os.Stderr, "scale: mirrornet N=%d: going on with %d views complete of %d, the least complete holding %d alive\n", n, complete, n, least)
			b.Logf("mirrornet: measured with %d of %d views complete after %v, the least complete holding %d alive", complete, n, 60*time.Second, least)
		}
		if complete == n || nearly {
			conns, most := 0, 0
			for _, h := range s.hosts {
				k := len(h.Network().Conns())
				conns += k
				most = max(most, k)
			}
			peak, rss := procRSS()
			fmt.Fprintf(os.Stderr, "scale: mirrornet N=%d: views complete; connections per mirror %.1f (most %d); CPU %v, RSS %d MiB (peak %d)\n",
				n, float64(conns)/float64(n), most, cpuTime().Round(time.Second), rss>>20, peak>>20)
			if diagFalseDead {
				out := map[string]float64{}
				for _, nd := range s.nodes {
					for _, o := range []string{"ack", "indirect_ack", "suspect"} {
						var m dto.Metric
						_ = nd.live.probes.WithLabelValues(o).Write(&m)
						out[o] += m.GetCounter().GetValue()
					}
				}
				fmt.Printf("DIAG views complete: probe outcomes so far %v\n", out)
			}
			break
		}
		if time.Since(lastReport) > 30*time.Second {
			fmt.Fprintf(os.Stderr, "scale: mirrornet N=%d: %d views complete, the least complete holds %d alive\n", n, complete, least)
			lastReport = time.Now()
		}
		if time.Now().After(deadline) {
			b.Fatalf("mirrornet: views not complete within %v: %d of %d complete, the least complete holds %d alive", 300*time.Second*d, complete, n, least)
		}
		sleepFor(sampleEvery(n))
	}
}

// scaleFeatures is MIRRORNET_SCALE_FEATURES: which of the node's features
// (status, probe, payouts, releases, dashboard) the simulated mirrors run
// besides the liveness core (gossip, validation, signatures, probes of
// liveness, sync). Default "none": a liveness benchmark measures the
// liveness path, and the features' periodic work over the whole view (the
// status page's JSON, retrieval probes' seating, payouts' evidence) is
// O(N) per mirror, O(N²) per process, which dominated the start-up of
// 200 mirrors. "all" runs every feature as shipped.
func scaleFeatures(b testing.TB) func(string) bool {
	v := os.Getenv("MIRRORNET_SCALE_FEATURES")
	switch v {
	case "", "none":
		return func(string) bool { return false }
	case "all":
		return nil
	}
	names := strings.Split(v, ",")
	return func(name string) bool { return slices.Contains(names, name) }
}

// scaleMesh is MIRRORNET_SCALE_MESH=D or D,Dlo,Dhi: gossipsub's mesh
// degree, by default with Dlo = D-1 and Dhi = 2D, and Dscore = D/2, Dout
// = D/2-1 (gossipsub wants Dout below D/2; the shipped parameters are
// 4, 3, 5, 2, 1: MIRRORNET_SCALE_MESH=4,3,5), to compare bytes and
// detection time across mesh sizes. MIRRORNET_SCALE_DLAZY=k sends IHAVE to
// k peers outside the mesh (shipped: 1). Both unset: the shipped
// parameters.
func scaleMesh(b testing.TB) func(*pubsub.GossipSubParams) {
	v := envInts(b, "MIRRORNET_SCALE_MESH", nil)
	lazy := envInts(b, "MIRRORNET_SCALE_DLAZY", nil)
	if len(v) == 0 && len(lazy) == 1 {
		// MIRRORNET_SCALE_DLAZY=k alone: the shipped mesh, IHAVE to k
		// peers outside it.
		return func(p *pubsub.GossipSubParams) { p.Dlazy = lazy[0] }
	}
	if len(v) == 0 {
		return nil
	}
	if (len(v) != 1 && len(v) != 3) || v[0] < 2 {
		b.Fatalf("MIRRORNET_SCALE_MESH: want D or D,Dlo,Dhi with D at least 2")
	}
	d, lo, hi := v[0], v[0]-1, 2*v[0]
	if len(v) == 3 {
		lo, hi = v[1], v[2]
	}
	return func(p *pubsub.GossipSubParams) {
		p.D, p.Dlo, p.Dhi, p.Dscore = d, lo, hi, d/2
		p.Dout = max(0, d/2-1)
		if len(lazy) == 1 {
			p.Dlazy = lazy[0]
		}
	}
}

// stretchConfig multiplies every liveness timer of cfg by d (the failure
// detector's probe period and timeouts follow the heartbeat) and divides
// the network's refresh rate by d.
func stretchConfig(cfg *Config, d time.Duration) {
	cfg.Heartbeat *= d
	cfg.Health.SuspectAfter *= d
	cfg.Health.DeadAfter *= d
	cfg.Health.ForgetAfter *= d
	cfg.Health.SuspicionTimeout *= d
	prof := cfg.profile()
	cfg.RefreshMin = prof.RefreshMin * d
	cfg.RefreshRate = prof.RefreshRate / float64(d)
}

// counts is member i's view: how many mirrors in each state.
func (s *mnSystem) counts(i int) map[health.State]int {
	nd := s.nodes[i]
	now := nd.clock()
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.view.Counts(now)
}

// progress returns how many views hold all n alive, and the fewest alive
// any view holds.
func (s *mnSystem) progress(n int) (complete, least int) {
	least = n
	for i := range s.nodes {
		a := s.counts(i)[health.StateAlive]
		if a >= n {
			complete++
		}
		least = min(least, a)
	}
	return complete, least
}

func (s *mnSystem) deadCounts() []int {
	out := make([]int, len(s.nodes))
	for i := range s.nodes {
		if s.dead[i] {
			out[i] = -1
			continue
		}
		// The view's kept dead list (health.View.Members), not a count
		// over a fresh listing: sampling a thousand views every second
		// that way made a million entries of garbage a second, collected
		// on the members' CPU time (at N=300 a third of the figure). When
		// the view changed, the sampler may build the list in place of
		// the member's next probe slot, which then finds it built: at
		// most one listing per change, none in an idle window.
		nd := s.nodes[i]
		out[i] = len(nd.view.Members(nd.clock()).Dead)
		for j, gone := range s.dead {
			if gone && j != i && s.knowsDead(i, j) {
				out[i]--
			}
		}
	}
	return out
}

func (s *mnSystem) knowsDead(obs, v int) bool {
	nd := s.nodes[obs]
	now := nd.clock()
	nd.mu.Lock()
	defer nd.mu.Unlock()
	m, ok := nd.view.Mirror(s.nodes[v].ID(), now)
	return ok && m.State == health.StateDead
}

func (s *mnSystem) agree() bool {
	live := 0
	for _, d := range s.dead {
		if !d {
			live++
		}
	}
	for i := range s.nodes {
		if s.dead[i] {
			continue
		}
		c := s.counts(i)
		if c[health.StateAlive]+c[health.StateSuspect] != live {
			return false
		}
	}
	return true
}

// firstSuspector is a system whose views hold signed suspicions.
type firstSuspector interface {
	// firstSuspicion returns the earliest signing time of a standing
	// suspicion of member v that any view holds.
	firstSuspicion(v int) (time.Time, bool)
}

func (s *mnSystem) firstSuspicion(v int) (time.Time, bool) {
	var first time.Time
	for i, nd := range s.nodes {
		if i == v || s.dead[i] {
			continue
		}
		nd.mu.Lock()
		st, ok := nd.view.Suspicion(s.nodes[v].ID())
		nd.mu.Unlock()
		if ok && (first.IsZero() || st.Time.Before(first)) {
			first = st.Time
		}
	}
	return first, !first.IsZero()
}

func (s *mnSystem) crash(v int) {
	s.dead[v] = true
	s.nodes[v].Close()
	s.hosts[v].Close()
}

func (s *mnSystem) counters() (statements, gossipSent, pingSent int64) {
	for i, nd := range s.nodes {
		if s.dead[i] {
			continue
		}
		statements += nd.published.Load()
		gossipSent += nd.gossipBytes.sent.Load()
		pingSent += nd.live.ping.BytesSent()
	}
	return statements, gossipSent, pingSent
}

func (s *mnSystem) falseDeadEvents() int { return -1 }
func (s *mnSystem) setCounting(bool)     {}

func (s *mnSystem) close() {
	var wg sync.WaitGroup
	for i := range s.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s.nodes[i] != nil {
				s.nodes[i].Close()
			}
			if s.hosts[i] != nil {
				s.hosts[i].Close()
			}
		}()
	}
	wg.Wait()
}

// mlLANConfig is memberlist's DefaultLANConfig with every timer stretched
// by k.
func mlLANConfig(k int) *memberlist.Config {
	c := memberlist.DefaultLANConfig()
	stretchML(c, k)
	return c
}

// mlTunedConfig is memberlist tuned to detect a crash in about our
// profile's DeadAfter at n members: probes every heartbeat with a 200 ms
// timeout (DefaultLocalConfig's), gossip every 100 ms, and a suspicion
// multiplier such that probe interval + suspicion timeout (SuspicionMult ×
// log10(n+1) × probe interval) is about DeadAfter.
func mlTunedConfig(k, n int, prof health.Profile) *memberlist.Config {
	c := memberlist.DefaultLANConfig()
	c.ProbeInterval = prof.Heartbeat
	c.ProbeTimeout = 200 * time.Millisecond
	c.GossipInterval = 100 * time.Millisecond
	susp := (prof.Health.DeadAfter - prof.Heartbeat).Seconds() / (math.Log10(float64(n+1)) * prof.Heartbeat.Seconds())
	c.SuspicionMult = max(1, int(math.Round(susp)))
	stretchML(c, k)
	return c
}

func stretchML(c *memberlist.Config, k int) {
	d := time.Duration(k)
	c.TCPTimeout *= d
	c.PushPullInterval *= d
	c.ProbeInterval *= d
	c.ProbeTimeout *= d
	c.GossipInterval *= d
	c.GossipToTheDeadTime *= d
}

// mlSystem is N memberlist members on netsim.
type mlSystem struct {
	cfg     *memberlist.Config
	stretch int
	members []*memberlist.Memberlist
	names   map[string]int
	dead    []atomic.Bool
	// left[i][j]: member i has seen j dead or left.
	mu        sync.Mutex
	left      []map[int]bool
	counting  bool
	falseDead int
}

type mlEvents struct {
	s *mlSystem
	i int
}

func (e mlEvents) NotifyJoin(n *memberlist.Node)   { e.s.event(e.i, n.Name, false) }
func (e mlEvents) NotifyUpdate(n *memberlist.Node) {}
func (e mlEvents) NotifyLeave(n *memberlist.Node)  { e.s.event(e.i, n.Name, true) }

func (s *mlSystem) event(i int, name string, gone bool) {
	j, ok := s.names[name]
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if gone {
		s.left[i][j] = true
		if s.counting && !s.dead[j].Load() && !s.dead[i].Load() {
			s.falseDead++
		}
	} else {
		delete(s.left[i], j)
	}
}

func (s *mlSystem) start(b testing.TB, nw *netsim.Network, ips []netip.Addr) {
	n := len(ips)
	s.names = map[string]int{}
	s.dead = make([]atomic.Bool, n)
	s.left = make([]map[int]bool, n)
	for i := range n {
		s.names[fmt.Sprintf("m%d", i)] = i
		s.left[i] = map[int]bool{}
	}
	for i := range n {
		tr, err := nw.MemberlistTransport(netip.AddrPortFrom(ips[i], 7946))
		if err != nil {
			b.Fatal(err)
		}
		cfg := *s.cfg
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Transport = tr
		cfg.LogOutput = io.Discard
		cfg.Events = mlEvents{s: s, i: i}
		m, err := memberlist.Create(&cfg)
		if err != nil {
			b.Fatal(err)
		}
		s.members = append(s.members, m)
		if i > 0 {
			var err error
			for range 5 {
				seeds := []string{s.members[0].LocalNode().FullAddress().Addr, s.members[i/2].LocalNode().FullAddress().Addr, s.members[i-1].LocalNode().FullAddress().Addr}
				if _, err = m.Join(seeds); err == nil {
					break
				}
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	deadline := time.Now().Add(300 * time.Second * time.Duration(s.stretch))
	lastReport := time.Now()
	for {
		complete, least := 0, n
		for _, m := range s.members {
			k := m.NumMembers()
			if k >= n {
				complete++
			}
			least = min(least, k)
		}
		if complete == n {
			break
		}
		if time.Since(lastReport) > 30*time.Second {
			fmt.Fprintf(os.Stderr, "scale: memberlist N=%d: %d views complete, the least complete holds %d\n", n, complete, least)
			lastReport = time.Now()
		}
		if time.Now().After(deadline) {
			b.Fatalf("memberlist: views not complete: %d of %d, the least complete holds %d", complete, n, least)
		}
		sleepFor(250 * time.Millisecond)
	}
	s.mu.Lock()
	s.counting = true
	s.mu.Unlock()
}

func (s *mlSystem) deadCounts() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]int, len(s.members))
	for i := range s.members {
		if s.dead[i].Load() {
			out[i] = -1
			continue
		}
		for j := range s.left[i] {
			if !s.dead[j].Load() {
				out[i]++
			}
		}
	}
	return out
}

func (s *mlSystem) knowsDead(obs, v int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.left[obs][v]
}

func (s *mlSystem) agree() bool {
	live := 0
	for i := range s.dead {
		if !s.dead[i].Load() {
			live++
		}
	}
	for i, m := range s.members {
		if !s.dead[i].Load() && m.NumMembers() != live {
			return false
		}
	}
	return true
}

func (s *mlSystem) crash(v int) {
	s.dead[v].Store(true)
	s.members[v].Shutdown()
}

func (s *mlSystem) falseDeadEvents() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.falseDead
}

func (s *mlSystem) setCounting(on bool) {
	s.mu.Lock()
	s.counting = on
	s.mu.Unlock()
}

func (s *mlSystem) close() {
	var wg sync.WaitGroup
	for _, m := range s.members {
		wg.Add(1)
		go func() { defer wg.Done(); m.Shutdown() }()
	}
	wg.Wait()
}
