package adversary_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/mirrornet/mirrornet/node"
	"github.com/mirrornet/mirrornet/protocol"
)

// vmRSS is this process's resident set size, from /proc (0 elsewhere).
func vmRSS() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// syntheticStatus is a status JSON of n small mirrors, as large as the
// victim's with n strangers in view: the baseline serves it from memory.
func syntheticStatus(n int) []byte {
	st := node.Status{Self: node.SelfStatus{PeerID: "12D3KooWself", Addrs: []string{"/ip4/127.0.0.1/tcp/4001"}, Bundles: []string{}}}
	for i := range n {
		st.Mirrors = append(st.Mirrors, node.MirrorStatus{
			PeerID: fmt.Sprintf("12D3KooW%044d", i), State: "alive", LastSeen: time.Now().UTC().Format(time.RFC3339Nano), Seq: 1,
			Addrs: []string{"/ip4/192.0.2.1/tcp/4001"}, HTTP: "http://192.0.2.1:8080",
			Bundles: []string{"bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52z"}, Version: "attacker",
			Evidence: "unverified", Domain: "unknown",
		})
	}
	raw, _ := json.MarshalIndent(st, "", "  ")
	return append(raw, '\n')
}

// latencies polls two URLs in turn (the victim's status page and the
// baseline) until stop, and samples RSS after each pair.
type latencies struct {
	mu         sync.Mutex
	node, base []time.Duration
	failures   []string
	peakRSS    uint64
}

func (l *latencies) poll(victimURL, baseURL string, stop <-chan struct{}, pairs int) {
	hc := &http.Client{Timeout: 2 * time.Minute}
	var buf bytes.Buffer
	var enc string
	get := func(url string) (time.Duration, error) {
		start := time.Now()
		// Both servers' bytes are read as they come (gzip asked for
		// explicitly, so the client does not decompress): the same
		// bytes, the same client work.
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Accept-Encoding", "gzip")
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		enc = resp.Header.Get("Content-Encoding")
		buf.Reset()
		_, err = io.Copy(&buf, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s: %s", url, resp.Status)
		}
		return time.Since(start), err
	}
	for i := 0; pairs <= 0 || i < pairs; i++ {
		select {
		case <-stop:
			return
		default:
		}
		dn, errN := get(victimURL)
		if errN == nil {
			// The baseline serves the very JSON the node just served.
			body := bytes.Clone(buf.Bytes())
			lastBody.Store(&body)
			lastEncoding.Store(&enc)
		}
		db, errB := get(baseURL)
		rss := vmRSS()
		l.mu.Lock()
		for _, err := range []error{errN, errB} {
			if err != nil {
				l.failures = append(l.failures, err.Error())
			}
		}
		if errN == nil {
			l.node = append(l.node, dn)
		}
		if errB == nil {
			l.base = append(l.base, db)
		}
		l.peakRSS = max(l.peakRSS, rss)
		l.mu.Unlock()
	}
}

// newBaselineServer serves lastBody with plain net/http.
func newBaselineServer() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := *lastBody.Load()
		if enc := lastEncoding.Load(); enc != nil && *enc != "" {
			w.Header().Set("Content-Encoding", *enc)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	}))
}

// lastBody is what the baseline serves: the status body the node served
// last, as it came (a synthetic JSON of 10,000 mirrors before the first
// request).
var lastBody atomic.Pointer[[]byte]

// lastEncoding is the Content-Encoding the node answered lastBody with.
var lastEncoding atomic.Pointer[string]

func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*q))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkStatusUnderFlood measures what a stranger's flood does to the
// status page (GET /api/v1/status over loopback HTTP, the body read
// whole), next to a baseline measured in the same run and the same way: a
// plain net/http server answering, from a byte slice in memory, the status
// bytes the node served just before, gzip-compressed as the node sent them
// (the client asks for gzip and reads both bodies as they come, so the
// client does the same work for both). The victim runs the local profile,
// whose probe round (every second) and payout snapshots are the busiest.
//
//   - flood-10000: 10,000 valid liveness statements from throwaway keys
//     (the first 2,000 near the size limit) arrive through gossip while
//     the page is polled; RSS is sampled after every request pair.
//   - view-10000-small: 10,000 small statements are accepted first (the
//     view holds them all), then 300 request pairs are timed.
//
// Goals: node p99 under 200 ms; RSS growth under 64 MiB.
func BenchmarkStatusUnderFlood(b *testing.B) {
	first := syntheticStatus(10_000)
	lastBody.Store(&first)
	srv := newBaselineServer()
	b.Cleanup(srv.Close)
	for _, tc := range []struct {
		name      string
		fat       int
		pollAfter bool
	}{{"flood-10000", 2_000, false}, {"view-10000-small", 0, true}} {
		b.Run(tc.name, func(b *testing.B) {
			for range b.N {
				statusUnderFlood(b, srv.URL, tc.fat, tc.pollAfter)
			}
		})
	}
}

func statusUnderFlood(b *testing.B, baseURL string, fat int, pollAfter bool) {
	const (
		total = 10_000
		batch = 16 // below gossipsub's validation queue (32)
	)
	mn := mocknet.New()
	defer mn.Close()
	clock := newFakeClock()
	v := newVictim(b, mn, clock.Now, "127.0.0.1:0", func(c *node.Config) { c.Profile = "local" })
	defer v.Close()
	ah, _ := newHost(b, mn)
	if _, err := mn.ConnectPeers(ah.ID(), v.ID()); err != nil {
		b.Fatal(err)
	}
	w := newGossipWriter(b, ah, v.ID())
	victimURL := v.HTTPURL() + protocol.HTTPStatusPath

	var lat latencies
	stop := make(chan struct{})
	var pollers sync.WaitGroup
	// Memory the previous run freed goes back to the OS first: RSS
	// growth is then this flood's.
	debug.FreeOSMemory()
	baseHeap, baseRSS := liveHeap(), vmRSS()
	peakHeap := baseHeap
	if !pollAfter {
		pollers.Go(func() { lat.poll(victimURL, baseURL, stop, 0) })
	}
	sent := 0
	for sent < total {
		for range batch {
			k := newThrowaway(b)
			w.publish(b, k.liveness(b, 1, clock.Now(), "http://127.0.0.1:9", sent < fat, "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52z"))
			sent++
		}
		v.verdicts.waitOthers(b, v.ID(), sent, 2*time.Minute)
		if sent%1000 == 0 {
			peakHeap = max(peakHeap, liveHeap())
		}
	}
	if pollAfter {
		lat.poll(victimURL, baseURL, nil, 300)
	}
	close(stop)
	pollers.Wait()
	peakHeap = max(peakHeap, liveHeap())

	lat.mu.Lock()
	defer lat.mu.Unlock()
	if len(lat.failures) > 0 {
		b.Fatalf("%d requests failed, first: %s", len(lat.failures), lat.failures[0])
	}
	mirrors := len(v.Status().Mirrors)
	np50, np99, bp50, bp99 := quantile(lat.node, 0.5), quantile(lat.node, 0.99), quantile(lat.base, 0.5), quantile(lat.base, 0.99)
	rssGrowth := float64(int64(lat.peakRSS)-int64(baseRSS)) / (1 << 20)
	heapGrowth := float64(int64(peakHeap)-int64(baseHeap)) / (1 << 20)
	b.ReportMetric(float64(mirrors), "mirrors")
	b.ReportMetric(float64(len(lat.node)), "requests")
	b.ReportMetric(ms(np50), "node-p50-ms")
	b.ReportMetric(ms(np99), "node-p99-ms")
	b.ReportMetric(ms(bp50), "base-p50-ms")
	b.ReportMetric(ms(bp99), "base-p99-ms")
	b.ReportMetric(ms(np99)/max(ms(bp99), 0.001), "p99-ratio")
	b.ReportMetric(loadAverage(), "load1")
	b.ReportMetric(rssGrowth, "rss-growth-MiB")
	b.ReportMetric(heapGrowth, "heap-growth-MiB")
	b.Logf("view %d mirrors; %d request pairs; node p50 %s p99 %s max %s; baseline p50 %s p99 %s max %s; RSS %d MiB before, peak %d MiB (+%.0f MiB); live heap +%.0f MiB",
		mirrors, len(lat.node), np50.Round(time.Microsecond), np99.Round(time.Microsecond), quantile(lat.node, 1).Round(time.Microsecond),
		bp50.Round(time.Microsecond), bp99.Round(time.Microsecond), quantile(lat.base, 1).Round(time.Microsecond),
		baseRSS>>20, lat.peakRSS>>20, rssGrowth, heapGrowth)
	// The goal: p99 under 200 ms. On a shared machine whose cores other
	// work saturates, the baseline itself may miss it: the ratio to the
	// baseline (same run, same bytes) says what the node adds.
	if np99 >= statusGoal {
		b.Logf("goal missed: node p99 %s >= %s (baseline p99 %s, ratio %.2f, load %.1f)", np99.Round(time.Millisecond), statusGoal,
			bp99.Round(time.Millisecond), ms(np99)/max(ms(bp99), 0.001), loadAverage())
	}
}

// statusGoal is the status page's p99 goal under a flood.
const statusGoal = 200 * time.Millisecond

// loadAverage is the one-minute load average (0 where /proc is missing).
func loadAverage() float64 {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _ := strconv.ParseFloat(strings.Fields(string(raw))[0], 64)
	return f
}
