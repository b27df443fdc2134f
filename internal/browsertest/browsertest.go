// Package browsertest runs a real headless Chromium for tests, through
// chromedp: it finds the browser (Debian's `chromium`; .ci/run installs
// it), starts it with a fresh profile and flags that keep it off the
// network, maps test host names to loopback, and saves screenshots to the
// test's artifact directory (go test -artifacts keeps them).
//
// Use:
//
//	b := browsertest.New(t, browsertest.Options{HostRules: []string{"MAP app.example.test 127.0.0.1"}})
//	ctx := b.Tab(t)
//	chromedp.Do(ctx, chromedp.Navigate(url))
//	b.Screenshot(t, ctx, "01-open")
//
// Without a browser the test is skipped with a message that says how to
// install one; with CI=true it fails instead, so CI never passes by
// skipping.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// EnvBrowser names a browser binary to use instead of searching PATH.
const EnvBrowser = "MIRRORNET_CHROMIUM"

// Find returns the path of a Chromium binary, or "" if none is found.
func Find() string {
	if p := os.Getenv(EnvBrowser); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// Require returns the browser's path, or skips t (fails it when the
// environment says CI=true) when there is none.
func Require(t testing.TB) string {
	t.Helper()
	p := Find()
	if p != "" {
		return p
	}
	const msg = "no Chromium found (install it with `apt-get install -y chromium`, or set " + EnvBrowser + ")"
	if os.Getenv("CI") == "true" {
		t.Fatal("browsertest: " + msg + "; CI=true, so this is a failure, not a skip")
	}
	t.Skip("browsertest: " + msg)
	return ""
}

// Options configure New.
type Options struct {
	// HostRules are Chromium --host-resolver-rules entries, e.g.
	// "MAP app.example.test 127.0.0.1"; joined with commas.
	HostRules []string
	// ExtraFlags are more command-line switches (name → value; true for
	// a bare switch).
	ExtraFlags map[string]any
}

// Browser is one headless Chromium process with a fresh profile.
type Browser struct {
	ctx    context.Context // browser context: tabs are made from it
	outDir string
}

// New starts Chromium for t; it is stopped when t ends.
func New(t testing.TB, o Options) *Browser {
	t.Helper()
	path := Require(t)
	flags := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		// No GPU process to fork: on a machine short of resources the
		// zygote's fork of it fails ("Zygote could not fork: process_type
		// gpu-process") and Chromium does not start.
		chromedp.Flag("in-process-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1000, 800),
	)
	if len(o.HostRules) > 0 {
		flags = append(flags, chromedp.Flag("host-resolver-rules", strings.Join(o.HostRules, ",")))
	}
	for k, v := range o.ExtraFlags {
		flags = append(flags, chromedp.Flag(k, v))
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), flags...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	// Start the browser now, so a broken install fails here, clearly.
	if err := chromedp.Do(bctx); err != nil {
		cancelBrowser()
		cancelAlloc()
		t.Fatalf("browsertest: start %s: %v", path, err)
	}
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
	})
	var out string
	if tt, ok := t.(interface{ ArtifactDir() string }); ok {
		out = tt.ArtifactDir()
	} else {
		out = t.TempDir()
	}
	return &Browser{ctx: bctx, outDir: out}
}

// Context is the browser's first tab.
func (b *Browser) Context() context.Context { return b.ctx }

// Tab opens a new tab (sharing the browser's profile: cookies, storage,
// service workers); it is closed when t ends.
func (b *Browser) Tab(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		t.Fatalf("browsertest: new tab: %v", err)
	}
	t.Cleanup(cancel)
	return ctx
}

// IsolatedTab opens a tab in a new browser context: same Chromium, but
// its own cookies, storage and service workers, as a fresh incognito
// window. It is closed when t ends.
func (b *Browser) IsolatedTab(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := b.NewIsolatedTab(t)
	t.Cleanup(cancel)
	return ctx
}

// NewIsolatedTab is IsolatedTab for a tab the caller closes (cancel),
// e.g. one per benchmark iteration. The tab is attached before it is
// returned: a context chromedp has not run anything in yet attaches to
// its target lazily, and then misses the target after a navigation.
func (b *Browser) NewIsolatedTab(t testing.TB) (context.Context, context.CancelFunc) {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		t.Fatalf("browsertest: new browser context: %v", err)
	}
	return ctx, cancel
}

// OutDir is where screenshots go.
func (b *Browser) OutDir() string { return b.outDir }

// Screenshot saves a PNG of the tab's viewport as OutDir/name.png and
// logs its path. A failure to capture is reported, not fatal.
func (b *Browser) Screenshot(t testing.TB, ctx context.Context, name string) string {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(sctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Errorf("browsertest: screenshot %s: %v", name, err)
		return ""
	}
	p := filepath.Join(b.outDir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Errorf("browsertest: write screenshot: %v", err)
		return ""
	}
	t.Logf("screenshot %s", p)
	return p
}
