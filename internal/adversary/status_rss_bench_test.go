package adversary_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/mirrornet/mirrornet/internal/gctune"
	"github.com/mirrornet/mirrornet/node"
	"github.com/mirrornet/mirrornet/protocol"
)

// victimEnv, set to a Unix time in milliseconds, makes
// TestStatusBenchVictim run a mirror whose clock stands still at that
// time, in a process of its own (BenchmarkStatusFloodRSS starts it).
const victimEnv = "MIRRORNET_STATUS_BENCH_VICTIM"

// TestStatusBenchVictim is not a test: it is the victim process of
// BenchmarkStatusFloodRSS (skipped unless victimEnv is set). It runs a
// mirror on loopback (libp2p TCP and HTTP), prints "VICTIM <multiaddr>
// <http URL>" and runs until its stdin closes.
func TestStatusBenchVictim(t *testing.T) {
	frozen, err := strconv.ParseInt(os.Getenv(victimEnv), 10, 64)
	if err != nil {
		t.Skip("the victim process of BenchmarkStatusFloodRSS")
	}
	// The runtime setting `mirrornet node` applies (GOGC=50 unless GOGC
	// is set): the victim is measured as the real program runs.
	gctune.Apply(os.LookupEnv)
	cfg := node.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.MDNS, cfg.DHT = false, false
	cfg.Profile = "local"
	n, err := node.New(cfg, node.WithClock(func() time.Time { return time.UnixMilli(frozen) }))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	fmt.Printf("VICTIM %s %s\n", n.Addrs()[0], n.HTTPURL())
	// A line "heap" on stdin writes a heap profile (for a reader of the
	// figures: where the memory is) to <victimEnv>_HEAP.base.
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if path := os.Getenv(victimEnv + "_HEAP"); sc.Text() == "heap" && path != "" {
			if f, err := os.Create(path + ".base"); err == nil {
				pprof.WriteHeapProfile(f)
				f.Close()
			}
		}
	}
	if path := os.Getenv(victimEnv + "_HEAP"); path != "" {
		// Where the memory is (for a reader of the figures).
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Fprintf(os.Stderr, "victim memstats: heap in use %d MiB, idle %d MiB, released %d MiB, stacks %d MiB, sys %d MiB\n",
			ms.HeapInuse>>20, ms.HeapIdle>>20, ms.HeapReleased>>20, ms.StackInuse>>20, ms.Sys>>20)
		if f, err := os.Create(path); err == nil {
			pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
}

// procRSS is the resident set size of process pid, from /proc.
func procRSS(pid int) uint64 { return procStatus(pid, "VmRSS") }

// procStatus is one "kB" field of /proc/pid/status, in bytes.
func procStatus(pid int, field string) uint64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// judged is the sum of mirrornet_statements_total at base.
func judged(b testing.TB, hc *http.Client, base string) float64 {
	resp, err := hc.Get(base + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "mirrornet_statements_total{") {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			v, _ := strconv.ParseFloat(line[i+1:], 64)
			sum += v
		}
	}
	return sum
}

// rssGoal is the memory goal: 10,000 valid statements from throwaway keys
// grow a mirror's RSS by less than this.
const rssGoal = 64 << 20

// TestFloodThrowawayKeysRSS is the memory goal as the goal says it, in
// RSS: a mirror in a process of its own (see floodRSS) takes 10,000 valid
// statements from throwaway keys over libp2p TCP, and its resident set
// (VmRSS, from /proc, sampled after every batch) grows by less than 64
// MiB. The victim runs with the collector setting of `mirrornet node`
// (internal/gctune). The figure depends on the garbage collector, not on
// time: the heap grows with what the node keeps (its statement byte
// budget, caches) and with what each statement costs to judge.
func TestFloodThrowawayKeysRSS(t *testing.T) {
	if testing.Short() {
		t.Skip("ten thousand signatures and a second process: not in -short")
	}
	if raceEnabled {
		t.Skip("the race detector multiplies memory: RSS says nothing then")
	}
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc")
	}
	r := floodRSS(t)
	t.Logf("victim RSS %d MiB before the flood, peak %d MiB (+%d MiB)", r.base>>20, r.peak>>20, (int64(r.peak)-int64(r.base))>>20)
	if growth := int64(r.peak) - int64(r.base); growth >= rssGoal {
		t.Fatalf("victim RSS grew by %d MiB (%d -> %d MiB), want < %d MiB", growth>>20, r.base>>20, r.peak>>20, rssGoal>>20)
	}
}

// BenchmarkStatusFloodRSS is TestFloodThrowawayKeysRSS with the status
// page's latency: the victim's status page is polled throughout, in turn
// with the baseline of BenchmarkStatusUnderFlood (the same JSON served
// from memory by plain net/http, in this process). It reports the RSS
// growth and both latency distributions, and fails if the growth misses
// the goal.
func BenchmarkStatusFloodRSS(b *testing.B) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		b.Skip("needs /proc")
	}
	for range b.N {
		r := floodRSS(b)
		growth := float64(int64(r.peak)-int64(r.base)) / (1 << 20)
		np99, bp99 := quantile(r.node, 0.99), quantile(r.baseline, 0.99)
		b.ReportMetric(growth, "victim-rss-growth-MiB")
		b.ReportMetric(float64(r.base)/(1<<20), "victim-rss-base-MiB")
		b.ReportMetric(ms(quantile(r.node, 0.5)), "node-p50-ms")
		b.ReportMetric(ms(np99), "node-p99-ms")
		b.ReportMetric(ms(quantile(r.baseline, 0.5)), "base-p50-ms")
		b.ReportMetric(ms(bp99), "base-p99-ms")
		b.ReportMetric(float64(len(r.node)), "requests")
		b.ReportMetric(ms(np99)/max(ms(bp99), 0.001), "p99-ratio")
		b.ReportMetric(loadAverage(), "load1")
		if np99 >= statusGoal {
			b.Logf("goal missed: node p99 %s >= %s (baseline p99 %s, load %.1f)", np99.Round(time.Millisecond), statusGoal, bp99.Round(time.Millisecond), loadAverage())
		}
		b.Logf("victim RSS %d MiB before, peak %d MiB (+%.0f MiB), %d MiB after; %d request pairs: node p50 %s p99 %s, baseline p50 %s p99 %s",
			r.base>>20, r.peak>>20, growth, r.after>>20, len(r.node), quantile(r.node, 0.5).Round(time.Microsecond), np99.Round(time.Microsecond),
			quantile(r.baseline, 0.5).Round(time.Microsecond), bp99.Round(time.Microsecond))
		if int64(r.peak)-int64(r.base) >= rssGoal {
			b.Errorf("victim RSS grew by %.0f MiB, goal < %d MiB", growth, rssGoal>>20)
		}
	}
}

// rssRun is what floodRSS measured: the victim's RSS before the flood,
// at its peak and after, and the status latencies (victim and baseline,
// in pairs).
type rssRun struct {
	base, peak, after uint64
	node, baseline    []time.Duration
}

// floodRSS runs the victim mirror in a process of its own (the attacker's
// keys, signatures and garbage are not in it), on the local profile, and
// sends it 10,000 valid liveness statements from throwaway keys (the first
// 2,000 near the size limit) over libp2p TCP on loopback, 16 at a time,
// each batch once the victim has judged the last (its /metrics say so),
// while its status page is polled. RSS is read from /proc after every
// batch.
func floodRSS(b testing.TB) rssRun {
	const (
		total = 10_000
		fat   = 2_000
		batch = 16
	)
	frozen := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestStatusBenchVictim$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", victimEnv, frozen.UnixMilli()))
	if d := os.Getenv(victimEnv + "_GODEBUG"); d != "" {
		// For a reader of the figures: GODEBUG (gctrace=1) of the
		// victim alone.
		cmd.Env = append(cmd.Env, "GODEBUG="+d)
	}
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	var addr, httpURL string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "VICTIM" {
			addr, httpURL = f[1], f[2]
			break
		}
	}
	if addr == "" {
		b.Fatal("the victim process did not start")
	}
	go io.Copy(io.Discard, stdout)
	m, err := ma.NewMultiaddr(addr)
	if err != nil {
		b.Fatal(err)
	}
	ai, err := peer.AddrInfoFromP2pAddr(m)
	if err != nil {
		b.Fatal(err)
	}
	ah, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		b.Fatal(err)
	}
	defer ah.Close()
	if err := ah.Connect(ctx, *ai); err != nil {
		b.Fatal(err)
	}
	w := newGossipWriter(b, ah, ai.ID)
	hc := &http.Client{Timeout: time.Minute}
	pid := cmd.Process.Pid

	// The baseline server of BenchmarkStatusUnderFlood, in this process.
	first := syntheticStatus(10_000)
	lastBody.Store(&first)
	srv := newBaselineServer()
	defer srv.Close()

	// Settle: one status answer, then the base RSS.
	var lat latencies
	lat.poll(httpURL+protocol.HTTPStatusPath, srv.URL, nil, 3)
	lat = latencies{}
	base0 := procRSS(pid)
	baseAnon, baseFile := procStatus(pid, "RssAnon"), procStatus(pid, "RssFile")
	if os.Getenv(victimEnv+"_HEAP") != "" {
		fmt.Fprintln(stdin, "heap")
	}
	start := judged(b, hc, httpURL)

	stop := make(chan struct{})
	var pollers sync.WaitGroup
	var peakMu sync.Mutex
	peak := base0
	pollers.Go(func() {
		lat.poll(httpURL+protocol.HTTPStatusPath, srv.URL, stop, 0)
	})
	for sent := 0; sent < total; {
		for range batch {
			k := newThrowaway(b)
			w.publish(b, k.liveness(b, 1, frozen, "http://127.0.0.1:9", sent < fat, "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52z"))
			sent++
		}
		deadline := time.Now().Add(2 * time.Minute)
		for judged(b, hc, httpURL)-start < float64(sent) {
			if time.Now().After(deadline) {
				b.Fatalf("the victim judged fewer than %d statements within 2 minutes", sent)
			}
			time.Sleep(5 * time.Millisecond) // pacing a flood, not synchronising a test
		}
		peakMu.Lock()
		peak = max(peak, procRSS(pid))
		peakMu.Unlock()
	}
	close(stop)
	pollers.Wait()
	after := procRSS(pid)
	// Anonymous memory is the heap, stacks and runtime; file-backed is
	// the program's own code and data as it is paged in.
	b.Logf("victim RSS anonymous %d -> %d MiB, file-backed %d -> %d MiB", baseAnon>>20, procStatus(pid, "RssAnon")>>20, baseFile>>20, procStatus(pid, "RssFile")>>20)

	lat.mu.Lock()
	defer lat.mu.Unlock()
	if len(lat.failures) > 0 {
		b.Fatalf("%d requests failed, first: %s", len(lat.failures), lat.failures[0])
	}
	// lat.peakRSS is this process's; the victim's peak is sampled above
	// and here.
	return rssRun{base: base0, peak: max(peak, after), after: after, node: lat.node, baseline: lat.base}
}
