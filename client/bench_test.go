package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"golang.org/x/time/rate"
)

// Benchmarks. Run with
//
//	go test ./client -run '^$' -bench . -benchtime 1x
//
// (the failover baseline alone takes ~2x its cap). Results and the machine
// they ran on are in docs/BENCHMARKS.md.

var (
	benchOnce   sync.Once
	benchBundle *bundle
)

// bigBundle: 32 MiB in a multi-chunk file plus a few small files.
func bigBundle(b *testing.B) *bundle {
	benchOnce.Do(func() {
		benchBundle = buildBundle(b, map[string][]byte{
			"index.html": []byte("<h1>bench</h1>"),
			"app.js":     randomBytes(3, 200<<10),
			"data.bin":   randomBytes(4, 32<<20),
		})
	})
	return benchBundle
}

// baselineCap bounds each mirror attempt of the baseline client.
const baselineCap = 10 * time.Second

// baselineGet is the naive client: one mirror at a time, in the order
// given, block by block over format=raw with an http.Client on the default
// transport (its 30 s dial timeout) and an overall cap per mirror
// (http.DefaultClient has none, so a blackholed mirror would hang it
// forever). Any failure moves on to the next mirror and starts over.
func baselineGet(ctx context.Context, root cid.Cid, mirrors []string) (map[cid.Cid][]byte, error) {
	hc := &http.Client{Transport: http.DefaultTransport, Timeout: baselineCap}
	var lastErr error
	for _, m := range mirrors {
		actx, cancel := context.WithTimeout(ctx, baselineCap)
		blocks, err := baselineFrom(actx, hc, m, root)
		cancel()
		if err == nil {
			return blocks, nil
		}
		lastErr = fmt.Errorf("%s: %w", m, err)
	}
	return nil, lastErr
}

func baselineFrom(ctx context.Context, hc *http.Client, m string, root cid.Cid) (map[cid.Cid][]byte, error) {
	blocks := map[cid.Cid][]byte{}
	queue := []cid.Cid{root}
	for len(queue) > 0 {
		c := queue[0]
		queue = queue[1:]
		if _, ok := blocks[c]; ok {
			continue
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, m+"/ipfs/"+c.String()+"?format=raw", nil)
		resp, err := hc.Do(req)
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, MaxBlockSize+1))
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		if err := verifyBlock(c, data); err != nil {
			return nil, err
		}
		blocks[c] = data
		ls, err := linksOf(c, data)
		if err != nil {
			return nil, err
		}
		for _, l := range ls {
			queue = append(queue, l.c)
		}
	}
	return blocks, nil
}

// BenchmarkFailover: a blackholed, a stalled (one byte a second) and a lying
// mirror ahead of one honest mirror; mirrornet's client with its default
// options against the baseline trying them in that order.
func BenchmarkFailover(b *testing.B) {
	bb := bigBundle(b)
	var boot []string
	for _, how := range []behaviour{blackhole, trickle, randomData, honest} {
		boot = append(boot, newFakeMirror(b, bb, how).URL)
	}
	b.Run("client", func(b *testing.B) {
		for b.Loop() {
			res, err := Get(context.Background(), bb.root, Options{Bootstrap: boot})
			if err != nil {
				b.Fatal(err)
			}
			checkResult(b, bb, res)
			b.ReportMetric(float64(len(res.Dropped)), "drops/op")
		}
	})
	b.Run("baseline", func(b *testing.B) {
		for b.Loop() {
			blocks, err := baselineGet(context.Background(), bb.root, boot)
			if err != nil {
				b.Fatal(err)
			}
			if len(blocks) != len(bb.blocks) {
				b.Fatalf("%d blocks", len(blocks))
			}
		}
	})
}

// BenchmarkMultiSource: mirrors whose uplink is capped at the same rate
// (a shared token bucket per mirror); one alone, three, and three with one
// at a quarter of the rate.
func BenchmarkMultiSource(b *testing.B) {
	bb := bigBundle(b)
	const capRate = 16 << 20 // bytes per second per mirror
	mk := func(rates ...float64) []string {
		var boot []string
		for _, r := range rates {
			m := newFakeMirror(b, bb, honest)
			m.limiter = rate.NewLimiter(rate.Limit(r), 64<<10)
			boot = append(boot, m.URL)
		}
		return boot
	}
	for _, tc := range []struct {
		name  string
		rates []float64
	}{
		{"one", []float64{capRate}},
		{"three", []float64{capRate, capRate, capRate}},
		{"three-one-slow", []float64{capRate, capRate, capRate / 4}},
	} {
		boot := mk(tc.rates...)
		b.Run(tc.name, func(b *testing.B) {
			var dup, bytes, hedges int64
			n := 0
			for b.Loop() {
				res, err := Get(context.Background(), bb.root, Options{Bootstrap: boot})
				if err != nil {
					b.Fatal(err)
				}
				dup += res.Duplicate
				bytes += res.Bytes
				hedges += int64(res.Hedges)
				n++
			}
			b.SetBytes(bb.size)
			b.ReportMetric(100*float64(dup)/float64(bytes), "dup%")
			b.ReportMetric(float64(hedges)/float64(n), "hedges/op")
		})
	}
}

// BenchmarkAllHealthy: three unthrottled honest mirrors against one; extra
// requests and duplicate bytes over a single-mirror fetch, and time to
// first byte.
func BenchmarkAllHealthy(b *testing.B) {
	bb := bigBundle(b)
	var boot []string
	for range 3 {
		boot = append(boot, newFakeMirror(b, bb, honest).URL)
	}
	for _, tc := range []struct {
		name string
		boot []string
	}{{"one", boot[:1]}, {"three", boot}} {
		b.Run(tc.name, func(b *testing.B) {
			var reqs, dup, bytes, hedges int64
			var ttfb time.Duration
			n := 0
			for b.Loop() {
				res, err := Get(context.Background(), bb.root, Options{Bootstrap: tc.boot})
				if err != nil {
					b.Fatal(err)
				}
				reqs += int64(res.Requests)
				dup += res.Duplicate
				bytes += res.Bytes
				ttfb += res.TTFB
				hedges += int64(res.Hedges)
				n++
			}
			b.SetBytes(bb.size)
			b.ReportMetric(float64(reqs)/float64(n)/float64(len(bb.blocks)), "req/block")
			b.ReportMetric(100*float64(dup)/float64(bytes), "dup%")
			b.ReportMetric(float64(ttfb.Microseconds())/float64(n)/1000, "ttfb-ms")
			b.ReportMetric(float64(hedges)/float64(n), "hedges/op")
		})
	}
}
