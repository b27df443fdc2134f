package dashboard

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mirrornet/mirrornet/internal/browsertest"
)

// Strangers' strings: every one must render as text.
const (
	evilLabel = `<script>window.__xss=1</script>`
	evilName  = `<img src=x onerror="window.__xss=2">`
)

type source struct {
	mu sync.Mutex
	s  Snapshot
}

func (s *source) get() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.s
}

func testSnapshot() Snapshot {
	now := time.Now().UTC().Format(time.RFC3339)
	return Snapshot{
		Self:      Self{PeerID: "12D3KooWSelf", Version: "0.1.0", Profile: "local", HTTP: "http://127.0.0.1:1", Peers: 2},
		Generated: now,
		Mirrors: []Mirror{
			{PeerID: "12D3KooWAlpha", State: "alive", Evidence: "verified", Domain: "net:192.0.2.0/24", Region: evilLabel, Bundles: 1, LastSeen: now},
			{PeerID: "12D3KooWBravo", State: "suspect", Evidence: "unverified", Domain: "net:198.51.100.0/24", Bundles: 1, LastSeen: now},
			{PeerID: "12D3KooWCharlie", State: "dead", Domain: "net:192.0.2.0/24", LastSeen: now},
		},
		Bundles: []Bundle{{CID: "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi", EffectiveRedundancy: 2, Holders: 2, HeldHere: true, Apps: []string{evilName}}},
		Apps: []App{{App: "app1example", Name: evilName, Version: 3, CID: "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
			Status: "current", Integrity: "verified", Holders: 2, EffectiveRedundancy: 2, Followed: true}},
		Probes: []Probe{{Observer: "12D3KooWAlpha", Target: "12D3KooWBravo", Outcome: "pass", Bundle: "bafy-probe", LatencyMS: 12, Time: now}},
	}
}

func server(t *testing.T, src *source) *httptest.Server {
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", Index(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "mirrornet mirror (plain)\n")
	})))
	mux.Handle("GET "+APIPath, API(src.get))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestWantsHTML(t *testing.T) {
	for accept, want := range map[string]bool{
		"":    false,
		"*/*": false, // curl
		"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8": true, // browsers
		"application/json":          false,
		"text/plain, text/html;q=0": false,
		"TEXT/HTML":                 true,
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Accept", accept)
		if got := WantsHTML(r); got != want {
			t.Errorf("Accept %q: WantsHTML %v, want %v", accept, got, want)
		}
	}
}

// curl gets the plain text; a browser gets the page, self-contained, with
// a policy that allows only its own script and this origin.
func TestIndexNegotiates(t *testing.T) {
	srv := server(t, &source{s: testSnapshot()})
	get := func(accept string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", srv.URL+"/", nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, body := get("*/*")
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") || body != "mirrornet mirror (plain)\n" {
		t.Errorf("curl got %q %q", resp.Header.Get("Content-Type"), body)
	}
	resp, body = get("text/html,*/*;q=0.8")
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(body, "<!doctype html>") {
		t.Fatalf("browser got %q", resp.Header.Get("Content-Type"))
	}
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'sha256-") || !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") {
		t.Errorf("CSP %q", csp)
	}
	for _, external := range []string{"http://", "https://", "//cdn", "<link"} {
		if strings.Contains(body, external) {
			t.Errorf("page refers to an external asset (%q)", external)
		}
	}
	if !strings.Contains(resp.Header.Get("Vary"), "Accept") {
		t.Error("no Vary: Accept")
	}
	// The API's lists are [] rather than null even when empty.
	srv2 := server(t, &source{})
	r2, err := http.Get(srv2.URL + APIPath)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Body.Close()
	var raw map[string]json.RawMessage
	if err := json.NewDecoder(r2.Body).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"mirrors", "bundles", "apps", "probes"} {
		if string(raw[k]) != "[]" {
			t.Errorf("%s = %s, want []", k, raw[k])
		}
	}
}

// TestDashboardInBrowser opens the page in headless Chromium: it renders
// the snapshot (mirrors grouped by failure domain, apps, bundles, probes),
// shows strangers' markup as text without running it, and refreshes from
// the API without a reload. Screenshots go to the test's artifact
// directory (go test -artifacts).
func TestDashboardInBrowser(t *testing.T) {
	b := browsertest.New(t, browsertest.Options{})
	src := &source{s: testSnapshot()}
	srv := server(t, src)
	ctx := b.Tab(t)
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second) // failure guard
	defer cancel()

	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS(`body[data-rendered]`))); err != nil {
		t.Fatalf("the dashboard did not render: %v", err)
	}
	b.Screenshot(t, ctx, "dashboard")
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	mirrors := text("#mirrors")
	for _, want := range []string{"12D3KooWAlpha", "12D3KooWBravo", "12D3KooWCharlie", "net:192.0.2.0/24", "net:198.51.100.0/24", "verified", evilLabel} {
		if !strings.Contains(mirrors, want) {
			t.Errorf("mirrors section lacks %q:\n%s", want, mirrors)
		}
	}
	if c := text("#mirror-counts"); !strings.Contains(c, "alive 1") || !strings.Contains(c, "suspect 1") || !strings.Contains(c, "dead 1") {
		t.Errorf("counts by state: %q", c)
	}
	apps := text("#apps")
	for _, want := range []string{"app1example", evilName, "current", "verified"} {
		if !strings.Contains(apps, want) {
			t.Errorf("apps section lacks %q:\n%s", want, apps)
		}
	}
	if !strings.Contains(text("#bundles"), "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi") {
		t.Error("bundles section lacks the bundle")
	}
	if p := text("#probes"); !strings.Contains(p, "pass") || !strings.Contains(p, "12 ms") {
		t.Errorf("probes section: %q", p)
	}
	// Nothing a stranger wrote became markup or ran.
	xss, err := chromedp.Run(ctx, chromedp.Evaluate[any](`[window.__xss === undefined, document.scripts.length, document.images.length]`))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := json.Marshal(xss); string(got) != "[true,1,0]" {
		t.Errorf("[no injected script ran, scripts, images] = %s, want [true,1,0]", got)
	}

	// A mirror that joins shows up on the next refresh, without a reload.
	src.mu.Lock()
	src.s.Mirrors = append(src.s.Mirrors, Mirror{PeerID: "12D3KooWDelta", State: "alive", Domain: "net:203.0.113.0/24", LastSeen: src.s.Generated})
	src.mu.Unlock()
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.Search(`//td[contains(., "12D3KooWDelta")]`))); err != nil {
		t.Fatalf("the dashboard did not refresh: %v", err)
	}
	b.Screenshot(t, ctx, "dashboard-refreshed")
}
