package swbundle_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/mirrornet/mirrornet/internal/browsertest"
	"github.com/mirrornet/mirrornet/internal/swbundle"
)

// navigate loads u in the tab and returns how long until its load event,
// checking that the sample dapp (not an error page) is what loaded.
func navigate(b *testing.B, ctx context.Context, u string) time.Duration {
	b.Helper()
	nctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	if err := chromedp.Do(nctx, chromedp.Navigate(u)); err != nil {
		b.Fatalf("navigate %s: %v", u, err)
	}
	took := time.Since(start)
	s, err := readPage(ctx)
	if err != nil || s.Visits == "" || s.Visits == "-" || s.Error != "" {
		b.Fatalf("page after load: %+v (%v)", s, err)
	}
	return took
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkPageLoad loads the sample dapp, in the same headless Chromium,
// served directly by a mirror (a browser context where the bootstrap is
// skipped) and through the verifying worker (installed once beforehand),
// alternating the two every iteration. Reported: the median of each in
// ms, and worker/direct (goal: at most 1.5).
func BenchmarkPageLoad(b *testing.B) {
	br := browsertest.New(b, browsertest.Options{HostRules: []string{"MAP *.localhost 127.0.0.1"}})
	a, _, c, root := threeMirrors(b)

	worker := br.IsolatedTab(b)
	waitInstalled(b, worker, appURL(root, a))

	direct := br.IsolatedTab(b)
	// The cookie a browser without service workers gets from the
	// bootstrap page: the mirror then serves the app directly.
	if _, err := chromedp.Call(direct, network.SetCookie, network.SetCookieParams{
		Name: swbundle.DirectCookie, Value: "1", URL: appURL(root, c),
	}); err != nil {
		b.Fatal(err)
	}
	navigate(b, direct, appURL(root, c)) // warm the connection, as the worker's is
	if s, _ := readPage(direct); s.Controlled {
		b.Fatal("the direct tab is controlled by a worker")
	}

	// Both tabs fetch every file on every load: the mirror's immutable
	// /ipfs responses would otherwise come from the HTTP cache in the
	// direct tab, and the worker answers with no-store anyway.
	for _, ctx := range []context.Context{direct, worker} {
		if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
			b.Fatal(err)
		}
		if _, err := chromedp.Call(ctx, network.SetCacheDisabled, network.SetCacheDisabledParams{CacheDisabled: true}); err != nil {
			b.Fatal(err)
		}
	}

	var ds, ws []time.Duration
	for b.Loop() {
		ds = append(ds, navigate(b, direct, appURL(root, c)))
		ws = append(ws, navigate(b, worker, appURL(root, a)))
	}
	d, w := median(ds), median(ws)
	b.ReportMetric(float64(d.Microseconds())/1000, "direct-ms")
	b.ReportMetric(float64(w.Microseconds())/1000, "worker-ms")
	b.ReportMetric(float64(w)/float64(d), "worker/direct")
}

// waitInstalled opens u (the bootstrap page installs the worker and
// reloads) and waits until the worker serves the app.
func waitInstalled(b testing.TB, ctx context.Context, u string) {
	b.Helper()
	nctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(nctx, chromedp.Navigate(u)); err != nil {
		b.Fatalf("navigate: %v", err)
	}
	if s := waitPage(b, ctx); s.Error != "" || !s.Controlled {
		b.Fatalf("install: %+v", s)
	}
}

// BenchmarkReloadAfterMirrorDies measures a reload after the mirror the
// app was opened through, and every mirror that served it, became
// unreachable (connection refused): each iteration installs the worker
// in a fresh browser context, takes those mirrors down, and times the
// reload until its load event (goal: under 1 s).
func BenchmarkReloadAfterMirrorDies(b *testing.B) {
	br := browsertest.New(b, browsertest.Options{HostRules: []string{"MAP *.localhost 127.0.0.1"}})
	a, bm, c, root := threeMirrors(b)
	all := []*mirror{a, bm, c}
	var rs []time.Duration
	i := 0
	for b.Loop() {
		origin := all[i%3]
		i++
		b.StopTimer()
		ctx, cancel := br.NewIsolatedTab(b)
		waitInstalled(b, ctx, appURL(root, origin))
		st := readStatus(b, ctx)
		down := []*mirror{origin}
		for _, m := range all {
			if served, _, _ := st.mirror(m.url); served > 0 && m != origin {
				down = append(down, m)
			}
		}
		if len(down) == len(all) {
			down = down[:2] // keep one up
		}
		for _, m := range down {
			m.down()
		}
		b.StartTimer()
		start := time.Now()
		if err := chromedp.Do(ctx, chromedp.Reload()); err != nil {
			b.Fatalf("reload: %v", err)
		}
		took := time.Since(start)
		b.StopTimer()
		if s, err := readPage(ctx); err != nil || s.Error != "" || s.Visits != "2" {
			b.Fatalf("after reload: %+v (%v)", s, err)
		}
		rs = append(rs, took)
		cancel()
		for _, m := range down {
			m.up(b)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(median(rs).Microseconds())/1000, "reload-ms")
	b.ReportMetric(float64(slices.Max(rs).Microseconds())/1000, "max-reload-ms")
}
