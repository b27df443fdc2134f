package node

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/mirrornet/mirrornet/internal/release"
	"github.com/mirrornet/mirrornet/protocol"
)

// hostGet GETs path on n's HTTP side with the given Host header.
func hostGet(t testing.TB, n *Node, host, path string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+n.httpLn.Addr().String()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	tr, done := transportFor(n.httpLn.Addr().String())
	defer done()
	c := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// An --app host serves the app's current release on its own origin and
// switches to a new release once it is held; other hosts are routed by
// name, and a host nobody configured gets 404.
func TestAppHostServesCurrentRelease(t *testing.T) {
	keys, set := maintainers(t, 1, 1)
	app := protocol.DeriveAppID("demo", set)
	cfg := testConfig(t)
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.PublicURL = "http://mirror.example.test"
	cfg.Apps = []string{"App.Example.Test=" + app}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()

	if code, h, body := hostGet(t, n, "app.example.test", "/"); code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
		t.Fatalf("before any release: %d %q, want 503 with Retry-After", code, body)
	}

	v1 := publish(t, n, writeTree(t))
	p1 := release.Params{Name: "demo", Version: 1, Maintainers: set, Time: time.Now(), CID: v1.CID}
	if _, err := submitRelease(t, n, signRelease(t, p1, keys...)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "app host serves v1", func() (bool, string) {
		code, _, body := hostGet(t, n, "app.example.test:80", "/")
		return code == 200 && strings.Contains(body, "<title>app</title>"), body
	})
	if code, _, body := hostGet(t, n, "app.example.test", "/app.js"); code != 200 || body != "console.log('mirrornet')" {
		t.Fatalf("app.js: %d %q", code, body)
	}
	// Directory redirects stay on the app's origin.
	if code, h, _ := hostGet(t, n, "app.example.test", "/assets"); code != http.StatusMovedPermanently || h.Get("Location") != "/assets/" {
		t.Fatalf("directory without slash: %d Location %q, want 301 /assets/", code, h.Get("Location"))
	}
	// Trustless requests work on the app origin, with CORS.
	code, h, _ := hostGet(t, n, "app.example.test", "/ipfs/"+v1.CID+"?format=raw")
	if code != 200 || h.Get("Access-Control-Allow-Origin") != "*" || h.Get("Content-Type") != "application/vnd.ipld.raw" {
		t.Fatalf("raw block on the app host: %d %v", code, h)
	}

	dir2 := writeTree(t)
	if err := os.WriteFile(filepath.Join(dir2, "index.html"), []byte("<!doctype html><title>app v2</title>"), 0o644); err != nil {
		t.Fatal(err)
	}
	v2 := publish(t, n, dir2)
	p2 := release.NextParams(p2rec(t, p1), v2.CID, time.Now())
	p2.App = app
	if _, err := submitRelease(t, n, signRelease(t, p2, keys...)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "app host serves v2", func() (bool, string) {
		code, _, body := hostGet(t, n, "app.example.test", "/")
		return code == 200 && strings.Contains(body, "app v2"), body
	})

	// The public host's subdomain gateway serves held bundles on their own
	// origin, and /ipfs/{cid}/ from a browser redirects there.
	c2, _ := cid.Decode(v2.CID)
	sub := c2.String() + ".ipfs.mirror.example.test"
	if code, _, body := hostGet(t, n, sub, "/"); code != 200 || !strings.Contains(body, "app v2") {
		t.Fatalf("subdomain: %d %q", code, body)
	}
	// (The redirector answers: this mirror holds it and is the best.)
	code, h, _ = hostGet(t, n, "mirror.example.test", "/ipfs/"+v2.CID+"/", "Accept", "text/html")
	if code != http.StatusFound || h.Get("Location") != "http://"+sub+"/" {
		t.Fatalf("path request from a browser: %d Location %q, want 302 to http://%s/", code, h.Get("Location"), sub)
	}
	// Trustless requests on the public host and on an IP carry CORS.
	for _, host := range []string{"mirror.example.test", n.httpLn.Addr().String()} {
		code, h, _ := hostGet(t, n, host, "/ipfs/"+v2.CID, "Accept", "application/vnd.ipld.car")
		if code != 200 || h.Get("Access-Control-Allow-Origin") != "*" {
			t.Fatalf("CAR on %s: %d ACAO %q", host, code, h.Get("Access-Control-Allow-Origin"))
		}
	}
	// Unknown names get 404, not another app or the mirror's pages.
	for _, host := range []string{"other.example.test", "app.example.test.evil.test", "x.y.mirror.example.test"} {
		if code, _, body := hostGet(t, n, host, "/"); code != http.StatusNotFound || strings.Contains(body, "app") && !strings.Contains(body, "unknown host") {
			t.Errorf("host %s: %d %q, want 404", host, code, body)
		}
	}
	if code, _, body := hostGet(t, n, "mirror.example.test", "/api/v1/status"); code != 200 || !strings.Contains(body, n.ID().String()) {
		t.Fatalf("status on the public host: %d", code)
	}
	_ = context.Background
}

func TestAppFlagErrors(t *testing.T) {
	_, set := maintainers(t, 1, 1)
	app := protocol.DeriveAppID("demo", set)
	for _, bad := range [][]string{
		{"app.example.org"}, {"=" + app}, {"app.example.org=nope"}, {"192.0.2.1=" + app},
		{"app.example.org=" + app, "APP.example.org=" + app}, {"http://app.example.org=" + app},
	} {
		cfg := testConfig(t)
		cfg.Apps = bad
		err := cfg.Validate()
		if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "app") {
			t.Errorf("--app %q: %v, want a one-line error", bad, err)
		}
	}
}
