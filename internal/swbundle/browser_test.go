package swbundle_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	sampledapp "github.com/mirrornet/mirrornet/examples/sample-dapp"
	"github.com/mirrornet/mirrornet/internal/browsertest"
	"github.com/mirrornet/mirrornet/internal/swbundle"
	"github.com/mirrornet/mirrornet/node"
	"github.com/mirrornet/mirrornet/protocol"
)

// mirror is one in-process mirror behind a fault-injecting proxy: the
// proxy's URL is what the mirror announces and what the browser uses, so
// the test can make the mirror vanish (connection refused), lie (flip a
// byte of one file in every block or CAR it serves) or go slow.
type mirror struct {
	name    string
	dataDir string
	node    *node.Node
	url     string // the proxy: what it announces
	direct  string // the mirror itself, behind the proxy
	port    string
	delay   atomic.Int64 // ns added before every gateway response
	lie     atomic.Bool  // flip a byte of tamperMarker in gateway responses
	lieRaw  atomic.Bool  // flip the middle byte of every block (?format=raw) it serves
	raws    atomic.Int64 // block requests (?format=raw) the browser made (mirrors' probes not counted)
	// seeds, if set, replace the seeds in the worker config it serves.
	seeds atomic.Pointer[[]string]
	// config, if set, rewrites the worker config it serves (a mirror
	// lying about the app's release).
	config atomic.Pointer[func(*swbundle.WorkerConfig)]
	// stripReleases drops the signed release records from its statements
	// stream (a mirror hiding the app's releases).
	stripReleases atomic.Bool

	handler  http.Handler
	mu       sync.Mutex
	srv      *http.Server
	wg       sync.WaitGroup
	killOnce sync.Once
}

// tamperMarker is a piece of style.css: a lying mirror flips a byte in it
// wherever it sends it (the raw leaf or the CAR that holds it).
var tamperMarker = func() []byte {
	b, err := fs.ReadFile(sampledapp.FS, "style.css")
	if err != nil || len(b) < 40 {
		panic("sample dapp has no style.css")
	}
	return b[10:40]
}()

func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startMirror(t testing.TB, name string, bootstrap []string, opts ...func(*node.Config)) *mirror {
	t.Helper()
	m := &mirror{name: name}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.url = "http://" + ln.Addr().String()
	_, m.port, _ = net.SplitHostPort(ln.Addr().String())

	cfg := node.DefaultConfig()
	cfg.DataDir = t.TempDir()
	m.dataDir = cfg.DataDir
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.HTTPAddr = freePort(t)
	cfg.AnnounceHTTP = m.url
	cfg.MDNS = false
	cfg.DHT = false
	cfg.Profile = "local"
	cfg.Bootstrap = bootstrap
	for _, o := range opts {
		o(&cfg)
	}
	var log *slog.Logger
	if os.Getenv("MIRRORNET_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("mirror", name)
	}
	n, err := node.New(cfg, node.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	m.node = n
	m.direct = "http://" + cfg.HTTPAddr
	target, _ := url.Parse(m.direct)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = m.modify
	m.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seeds, rewrite := m.seeds.Load(), m.config.Load()
		if (seeds != nil || rewrite != nil) && r.URL.Path == swbundle.ConfigPath {
			rec := httptest.NewRecorder()
			rp.ServeHTTP(rec, r)
			var cfg swbundle.WorkerConfig
			if err := json.Unmarshal(rec.Body.Bytes(), &cfg); err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			if seeds != nil {
				cfg.Seeds = *seeds
			}
			if rewrite != nil {
				(*rewrite)(&cfg)
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(cfg)
			return
		}
		if m.stripReleases.Load() && r.URL.Path == protocol.HTTPStatementsPath {
			rec := httptest.NewRecorder()
			rp.ServeHTTP(rec, r)
			br := bufio.NewReader(rec.Body)
			var out bytes.Buffer
			for {
				f, err := protocol.ReadFrame(br, protocol.MaxStatementSize)
				if err != nil || len(f) == 0 {
					break
				}
				if !protocol.IsSignedRelease(f) {
					protocol.WriteFrame(&out, f)
				}
			}
			protocol.WriteFrame(&out, nil)
			w.Header().Set("Access-Control-Allow-Origin", "*")
			w.Header().Set("Content-Type", protocol.StatementsContentType)
			w.Write(out.Bytes())
			return
		}
		if d := time.Duration(m.delay.Load()); d > 0 && strings.HasPrefix(r.URL.Path, "/ipfs/") {
			select {
			case <-time.After(d): // a slow mirror, not synchronisation
			case <-r.Context().Done():
				return
			}
		}
		rp.ServeHTTP(w, r)
	})
	m.serve(ln)
	t.Cleanup(m.kill)
	return m
}

func (m *mirror) serve(ln net.Listener) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.srv = &http.Server{Handler: m.handler}
	srv := m.srv
	m.wg.Go(func() { srv.Serve(ln) })
}

// down makes the mirror unreachable (connection refused) while its node
// keeps running; up brings it back on the same address.
func (m *mirror) down() {
	m.mu.Lock()
	srv := m.srv
	m.mu.Unlock()
	srv.Close()
	m.wg.Wait()
}

func (m *mirror) up(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", strings.TrimPrefix(m.url, "http://"))
	if err != nil {
		t.Fatalf("mirror %s back up: %v", m.name, err)
	}
	m.serve(ln)
}

// modify makes a lying mirror's gateway answers carry one wrong byte.
func (m *mirror) modify(resp *http.Response) error {
	if !strings.HasPrefix(resp.Request.URL.Path, "/ipfs/") || resp.StatusCode != http.StatusOK {
		return nil
	}
	raw := resp.Request.URL.Query().Get("format") == "raw"
	if raw && strings.Contains(resp.Request.UserAgent(), "Mozilla") {
		m.raws.Add(1)
	}
	lieRaw := raw && m.lieRaw.Load()
	if !m.lie.Load() && !lieRaw {
		return nil
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if i := bytes.Index(body, tamperMarker); i >= 0 && m.lie.Load() {
		body[i+5] ^= 0x01
	}
	if lieRaw && len(body) > 0 {
		body[len(body)/2] ^= 0x01
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", fmt.Sprint(len(body)))
	return nil
}

// kill stops the mirror and its proxy: its port refuses connections.
func (m *mirror) kill() {
	m.killOnce.Do(func() {
		m.down()
		m.node.Close()
	})
}

func publishSample(t testing.TB, dataDir, dir string) string {
	t.Helper()
	ac, err := node.DialAdmin(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := ac.Import(context.Background(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res.CID
}

// waitUntil polls cond until it holds; within is only a failure guard.
func waitUntil(t testing.TB, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	last := ""
	for {
		ok, detail := cond()
		if ok {
			return
		}
		last = detail
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %s", within, what, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// threeMirrors starts A, B and C, each holding the sample dapp, and waits
// until every one's statements name all three holding it.
func threeMirrors(t testing.TB) (a, b, c *mirror, root string) {
	t.Helper()
	dir := t.TempDir()
	if err := sampledapp.WriteTo(dir); err != nil {
		t.Fatal(err)
	}
	return threeMirrorsOf(t, dir)
}

// threeMirrorsOf is threeMirrors for the app in dir.
func threeMirrorsOf(t testing.TB, dir string) (a, b, c *mirror, root string) {
	t.Helper()
	a = startMirror(t, "A", nil)
	b = startMirror(t, "B", a.node.Addrs())
	c = startMirror(t, "C", a.node.Addrs())
	for _, m := range []*mirror{a, b, c} {
		root = publishSample(t, m.dataDir, dir)
	}
	ms := []*mirror{a, b, c}
	// A failure guard, not a timing: a holdings change that gossip lost
	// waits for the holder's next refresh (see health.Profile), and on a
	// saturated machine three mirrors plus a browser take their time.
	waitUntil(t, 3*time.Minute, "every mirror sees all three holding the app", func() (bool, string) {
		for _, m := range ms {
			if holders, seen := holdersSeen(m, root); holders < 3 {
				return false, fmt.Sprintf("%s sees %d holders: %v", m.name, holders, seen)
			}
		}
		return true, ""
	})
	return a, b, c, root
}

// holdersSeen says which mirrors m sees holding root and in what state,
// and how many of them are alive holders.
func holdersSeen(m *mirror, root string) (alive int, seen []string) {
	for _, s := range m.node.Status().Mirrors {
		holds := slices.Contains(s.Bundles, root)
		if s.State == "alive" && holds {
			alive++
		}
		seen = append(seen, fmt.Sprintf("%.8s %s holds=%v", s.PeerID, s.State, holds))
	}
	return alive, seen
}

// appBook says what m's release book holds of app (its public app status:
// version, CID, status, holders), for failure messages.
func appBook(m *mirror, app string) string {
	resp, err := http.Get(m.direct + "/api/v1/app/" + app)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var st node.AppStatus
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &st) != nil {
		return fmt.Sprintf("app status HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return fmt.Sprintf("book has v%d %s (%s, held %v, %d holders)", st.Version, st.CID, st.Status, st.Held, len(st.Holders))
}

// waitServesRelease waits until every mirror in ms answers host with the
// app's release at version and root (its worker config) and sees every one
// of ms alive and holding root. The guard is generous: a record gossip
// missed arrives at a mirror's next release sync pull (seconds on the
// local profile), a holdings change gossip missed at the holder's next
// refresh, and on a saturated machine mirrors and a browser take their
// time. A failure names, per mirror, what it serves, what its release book
// holds of the app, and which peers it sees holding root, so that "never
// got the record" and "does not see the holder alive" read differently.
func waitServesRelease(t testing.TB, ms []*mirror, host, app string, version uint64, root string) {
	t.Helper()
	waitUntil(t, 3*time.Minute, fmt.Sprintf("every mirror serves %s release %d and sees all %d holding it", host, version, len(ms)), func() (bool, string) {
		for _, m := range ms {
			cfg, err := configOf(m, host)
			if err != nil || cfg.Version != version || cfg.Root != root {
				_, seen := holdersSeen(m, root)
				return false, fmt.Sprintf("%s serves %s as version %d root %q (%v); %s; holders seen: %v",
					m.name, host, cfg.Version, cfg.Root, err, appBook(m, app), seen)
			}
			if n, seen := holdersSeen(m, root); n < len(ms) {
				return false, fmt.Sprintf("%s sees %d alive holders: %v", m.name, n, seen)
			}
		}
		return true, ""
	})
}

func appURL(root string, m *mirror) string {
	return fmt.Sprintf("http://%s.ipfs.localhost:%s/", root, m.port)
}

// eval runs expr in the tab (awaiting a promise) and decodes its result.
func eval[T any](ctx context.Context, expr string) (T, error) {
	ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return chromedp.Run(ectx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// pageState is what the sample dapp shows, or the worker's error page.
type pageState struct {
	Visits     string `json:"visits"`
	Heading    string `json:"heading"`
	Error      string `json:"error"`
	Controlled bool   `json:"controlled"`
	Body       string `json:"body"`
	CSS        string `json:"css"`
}

const pageStateJS = `(() => {
  const t = id => { const e = document.getElementById(id); return e ? e.textContent : "" };
  const main = document.querySelector("main");
  return {
    visits: t("visits"),
    heading: document.querySelector("h1") ? document.querySelector("h1").textContent : "",
    error: t("mirrornet-error"),
    controlled: !!(navigator.serviceWorker && navigator.serviceWorker.controller),
    body: document.body ? document.body.innerText.slice(0, 2000) : "",
    css: main ? getComputedStyle(main).maxWidth : ""
  };
})()`

func readPage(ctx context.Context) (pageState, error) {
	return eval[pageState](ctx, pageStateJS)
}

// waitPage waits until the tab shows the app (visits set) or the error
// page, and returns what it shows.
func waitPage(t testing.TB, ctx context.Context) pageState {
	t.Helper()
	var s pageState
	waitUntil(t, 2*time.Minute, "the page to load", func() (bool, string) {
		var err error
		s, err = readPage(ctx)
		if err != nil {
			return false, err.Error()
		}
		return (s.Visits != "" && s.Visits != "-" && s.Controlled) || s.Error != "", fmt.Sprintf("%+v", s)
	})
	return s
}

// workerStatus is the worker's status JSON (/.mirrornet/?format=json).
type workerStatus struct {
	Root     string `json:"root"`
	Verified bool   `json:"verified"`
	Mirrors  []struct {
		URL          string `json:"url"`
		Usable       bool   `json:"usable"`
		ServedBlocks int    `json:"served_blocks"`
		Dropped      string `json:"dropped"`
	} `json:"mirrors"`
	Sources []struct {
		URL      string `json:"url"`
		Rejected int    `json:"rejected"`
		Error    string `json:"error"`
	} `json:"sources"`
	Events []struct {
		What string `json:"what"`
	} `json:"events"`
}

func readStatus(t testing.TB, ctx context.Context) workerStatus {
	t.Helper()
	raw, err := eval[string](ctx, `fetch("/.mirrornet/?format=json").then(r => r.text())`)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	var st workerStatus
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		t.Fatalf("status JSON %q: %v", raw, err)
	}
	return st
}

func (s workerStatus) mirror(u string) (served int, dropped string, found bool) {
	for _, m := range s.Mirrors {
		if m.URL == u {
			return m.ServedBlocks, m.Dropped, true
		}
	}
	return 0, "", false
}

func reload(t testing.TB, ctx context.Context) time.Duration {
	t.Helper()
	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(rctx, chromedp.Reload()); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Logf("reload: %v", err)
	}
	return time.Since(start)
}

// The app survives its mirror: opened through A, it keeps working (same
// origin, same localStorage) through B or C when A dies and when the
// mirror serving it stalls, rejects a block B tampers with, and shows the
// error page, never stale or partial content, when every mirror is gone.
func TestBrowserFailover(t *testing.T) {
	br := browsertest.New(t, browsertest.Options{HostRules: []string{"MAP *.localhost 127.0.0.1"}})
	a, b, c, root := threeMirrors(t)
	ctx := br.Tab(t)

	// 1. First visit through A: the bootstrap page installs the worker,
	// which then serves the app; the app writes localStorage.
	nctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	if err := chromedp.Do(nctx, chromedp.Navigate(appURL(root, a))); err != nil {
		t.Fatalf("navigate: %v", err)
	}
	cancel()
	s := waitPage(t, ctx)
	// The worker's status lives in its memory, and chromium stops a
	// worker idle for 30 s: read it right after the page it served, not
	// after a screenshot that a saturated machine may take long over.
	var st workerStatus
	if s.Error == "" && s.Controlled {
		st = readStatus(t, ctx)
	}
	br.Screenshot(t, ctx, "01-opened-through-A")
	if s.Error != "" || s.Visits != "1" || !s.Controlled || !strings.Contains(s.Heading, "Still here") {
		t.Fatalf("first visit: %+v; want the app, served by the worker, visits 1", s)
	}
	if st.Root != root || !st.Verified {
		t.Fatalf("status after first visit: %+v", st)
	}

	// 2. A dies. The reload is answered by the worker from B or C; the
	// origin (and so localStorage) is A's, unchanged.
	a.kill()
	took := reload(t, ctx)
	s = waitPage(t, ctx)
	if s.Error == "" {
		st = readStatus(t, ctx)
	}
	br.Screenshot(t, ctx, "02-reloaded-after-A-died")
	if s.Error != "" || s.Visits != "2" {
		t.Fatalf("after A died: %+v; want the app with visits 2 (localStorage kept)", s)
	}
	servedB, _, _ := st.mirror(b.url)
	servedC, _, _ := st.mirror(c.url)
	if servedB+servedC == 0 {
		t.Fatalf("after A died nothing was served by B or C: %+v", st)
	}
	t.Logf("reload after A died took %s (B served %d blocks, C %d)", took, servedB, servedC)

	// 2b. The mirror that served that reload (the fastest the worker
	// knows, so it is asked first) now stalls: no byte, no error. The
	// worker hedges to the other and the page loads from it.
	staller, other := b, c
	if servedC > servedB {
		staller, other = c, b
	}
	otherBefore, _, _ := st.mirror(other.url)
	staller.delay.Store(int64(time.Hour))
	reload(t, ctx)
	s = waitPage(t, ctx)
	if s.Error == "" {
		st = readStatus(t, ctx)
	}
	br.Screenshot(t, ctx, "02b-"+staller.name+"-stalls")
	if s.Error != "" || s.Visits != "3" {
		t.Fatalf("with %s stalling: %+v; want the app, visits 3", staller.name, s)
	}
	if otherAfter, _, _ := st.mirror(other.url); otherAfter <= otherBefore {
		t.Fatalf("with %s stalling, %s served nothing more (%d): %+v", staller.name, other.name, otherAfter, st)
	}
	staller.delay.Store(0)

	// 3. B lies about style.css and C is slow, so B is asked: its
	// blocks are rejected, C's verified ones make the page.
	b.lie.Store(true)
	c.delay.Store(int64(2 * time.Second))
	reload(t, ctx)
	s = waitPage(t, ctx)
	if s.Error == "" {
		st = readStatus(t, ctx)
	}
	br.Screenshot(t, ctx, "03-B-tampered-C-served")
	if s.Error != "" || s.Visits != "4" || s.CSS != "576px" {
		t.Fatalf("with B lying: %+v; want the app with its stylesheet (main max-width 36rem = 576px), visits 4", s)
	}
	if _, dropped, _ := st.mirror(b.url); !strings.Contains(dropped, "does not match its CID") {
		t.Fatalf("B served a tampered block but was not dropped for it: %+v", st)
	}
	c.delay.Store(0)

	// The status page names what happened.
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	err := chromedp.Do(sctx, chromedp.Navigate(strings.TrimSuffix(appURL(root, a), "/")+"/.mirrornet/"))
	var statusText string
	if err == nil {
		statusText, err = chromedp.Run(sctx, chromedp.Text(chromedp.CSS("body")))
	}
	cancel()
	if err != nil {
		t.Fatalf("status page: %v", err)
	}
	br.Screenshot(t, ctx, "04-status-page")
	for _, want := range []string{root, b.url, "does not match its CID", c.url} {
		if !strings.Contains(statusText, want) {
			t.Errorf("status page does not show %q:\n%s", want, statusText)
		}
	}

	// 4. Every mirror gone: the error page, naming the mirrors tried.
	b.kill()
	c.kill()
	nctx, cancel = context.WithTimeout(ctx, 30*time.Second)
	if err := chromedp.Do(nctx, chromedp.Navigate(appURL(root, a))); err != nil {
		t.Logf("navigate: %v", err)
	}
	cancel()
	s = waitPage(t, ctx)
	br.Screenshot(t, ctx, "05-all-mirrors-down")
	if s.Error == "" || strings.Contains(s.Body, "Still here") || s.Visits != "" {
		t.Fatalf("all mirrors down: %+v; want the error page and nothing of the app", s)
	}
	for _, m := range []*mirror{b, c} {
		if !strings.Contains(s.Body, m.url) {
			t.Errorf("error page does not name %s:\n%s", m.url, s.Body)
		}
	}
}
