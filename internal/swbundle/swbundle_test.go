package swbundle

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"
)

const testRoot = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"

func testServer(t *testing.T) http.Handler {
	t.Helper()
	s, err := New(DefaultConfig(), WithSeeds(func(root cid.Cid) []string {
		return []string{"http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3", "http://127.0.0.1:4", "http://127.0.0.1:5",
			"http://127.0.0.1:6", "http://127.0.0.1:7", "http://127.0.0.1:8", "http://127.0.0.1:9"}
	}))
	if err != nil {
		t.Fatal(err)
	}
	return s.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("next"))
	}))
}

func TestRoutes(t *testing.T) {
	h := testServer(t)
	app := testRoot + ".ipfs.localhost:8080"
	for _, tc := range []struct {
		name, host, path string
		hdr              map[string]string
		want             string // substring of the body
		wantHdr          map[string]string
	}{
		{name: "navigation gets the bootstrap page", host: app, path: "/", hdr: map[string]string{"Sec-Fetch-Mode": "navigate"}, want: "serviceWorker.register"},
		{name: "deep navigation too", host: app, path: "/a/b.html", hdr: map[string]string{"Sec-Fetch-Mode": "navigate"}, want: "serviceWorker.register"},
		{name: "status path before the worker", host: app, path: "/.mirrornet/", want: "serviceWorker.register"},
		{name: "subresource passes through", host: app, path: "/app.js", hdr: map[string]string{"Sec-Fetch-Mode": "no-cors"}, want: "next"},
		{name: "curl passes through", host: app, path: "/", want: "next"},
		{name: "direct cookie passes through", host: app, path: "/", hdr: map[string]string{"Sec-Fetch-Mode": "navigate", "Cookie": DirectCookie + "=1"}, want: "next"},
		{name: "worker script", host: app, path: WorkerPath, want: string(Bundle[:64]), wantHdr: map[string]string{"Service-Worker-Allowed": "/", "Content-Type": "text/javascript; charset=utf-8"}},
		{name: "config", host: app, path: ConfigPath, want: `"root":"` + testRoot + `"`},
		{name: "not an app origin", host: "localhost:8080", path: "/", hdr: map[string]string{"Sec-Fetch-Mode": "navigate"}, want: "next"},
		{name: "unknown subdomain host", host: testRoot + ".ipfs.example.org", path: "/", hdr: map[string]string{"Sec-Fetch-Mode": "navigate"}, want: "next"},
		{name: "worker only on app origins", host: "127.0.0.1:8080", path: WorkerPath, want: "next"},
		{name: "statements get CORS", host: "127.0.0.1:8080", path: "/mirrornet/v1/statements", want: "next", wantHdr: map[string]string{"Access-Control-Allow-Origin": "*"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "http://"+tc.host+tc.path, nil)
			for k, v := range tc.hdr {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if !strings.Contains(w.Body.String(), tc.want) {
				t.Fatalf("body %.200q does not contain %q", w.Body.String(), tc.want)
			}
			for k, v := range tc.wantHdr {
				if got := w.Header().Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestConfigCapsSeeds(t *testing.T) {
	h := testServer(t)
	r := httptest.NewRequest("GET", "http://"+testRoot+".ipfs.localhost"+ConfigPath, nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var cfg WorkerConfig
	if err := json.Unmarshal(w.Body.Bytes(), &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Seeds) != MaxSeeds || cfg.Seeds[0] != "http://127.0.0.1:1" || cfg.Root != testRoot || cfg.Worker != BundleHash {
		t.Fatalf("config %+v: want %d seeds, this mirror first, the root and the bundle hash", cfg, MaxSeeds)
	}
}

func TestPreflight(t *testing.T) {
	h := testServer(t)
	r := httptest.NewRequest("OPTIONS", "http://127.0.0.1:8080/mirrornet/v1/statements", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusNoContent || w.Header().Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("preflight: %d %v", w.Code, w.Header())
	}
}

func TestBundleEmbedded(t *testing.T) {
	// The bundle is the built worker, not a placeholder: it registers a
	// fetch handler and carries the statement domain it verifies.
	for _, want := range []string{"addEventListener(\"fetch\"", "mirrornet-liveness", "/mirrornet/liveness/2"} {
		if !strings.Contains(string(Bundle), want) {
			t.Errorf("bundle lacks %q", want)
		}
	}
}
