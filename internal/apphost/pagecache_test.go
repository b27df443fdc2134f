package apphost

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
)

// countingGW answers ServeRoot like a gateway (ETag, Content-Length) and
// counts the calls.
type countingGW struct {
	fakeGW
	calls atomic.Int64
	big   string // a path answered with more than MaxCachedFile bytes
}

func (g *countingGW) ServeRoot(w http.ResponseWriter, r *http.Request, root cid.Cid) {
	g.calls.Add(1)
	body := "root " + root.String() + " " + r.URL.Path + " accept " + r.Header.Get("Accept")
	if r.URL.Path == g.big {
		body = strings.Repeat("x", MaxCachedFile+1)
	}
	if r.URL.Path == "/missing" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Etag", `"`+root.String()+r.URL.Path+`"`)
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Server-Timing", fmt.Sprintf("call;desc=%d", g.calls.Load()))
	http.ServeContent(w, r, "", time.Time{}, strings.NewReader(body))
}

// An app host answers a file's second request from the page cache, byte
// for byte, headers included (but not headers set before the gateway ran,
// nor per-request timings); conditional requests get 304 from the cached
// ETag; ranges, queries, errors and large files always reach the gateway;
// a new release is never answered from the old one's pages.
func TestPageCache(t *testing.T) {
	gw := &countingGW{big: "/big.bin"}
	rel := &fakeReleases{}
	b, _ := ParseBinding("app.example.org=" + appID())
	rt, err := New(Config{Hosts: []string{"mirror.example.org"}, Apps: []Binding{b}, Strict: true}, gw, rel, http.NotFoundHandler(), nil)
	if err != nil {
		t.Fatal(err)
	}
	c1, c2 := testCID("v1"), testCID("v2")
	rel.cur.Store(&c1)
	get := func(path string, hdr ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "http://app.example.org"+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		w := httptest.NewRecorder()
		// An outer handler's header, set before the router runs.
		w.Header().Set("X-Outer", fmt.Sprint(gw.calls.Load()))
		rt.ServeHTTP(w, r)
		return w
	}
	first := get("/app.js", "Accept", "*/*")
	second := get("/app.js", "Accept", "*/*")
	if n := gw.calls.Load(); n != 1 {
		t.Fatalf("two requests of one file reached the gateway %d times, want 1", n)
	}
	if second.Code != 200 || second.Body.String() != first.Body.String() || second.Header().Get("Etag") != first.Header().Get("Etag") ||
		second.Header().Get("Content-Type") != "text/plain" || second.Header().Get("Cache-Control") != "no-cache" {
		t.Fatalf("cached answer differs: %d %q %v, first %q %v", second.Code, second.Body, second.Header(), first.Body, first.Header())
	}
	if second.Header().Get("Server-Timing") != "" || second.Header().Get("X-Outer") != "1" {
		t.Fatalf("cached answer replays per-request headers: %v", second.Header())
	}
	if w := get("/app.js", "Accept", "*/*", "If-None-Match", first.Header().Get("Etag")); w.Code != http.StatusNotModified || w.Body.Len() != 0 {
		t.Fatalf("conditional request: %d %q, want 304", w.Code, w.Body)
	}
	if w := get("/app.js", "Accept", "text/html"); !strings.Contains(w.Body.String(), "accept text/html") {
		t.Fatalf("another Accept got the cached answer: %q", w.Body)
	}
	before := gw.calls.Load()
	for _, h := range [][]string{{"Range", "bytes=0-3"}, {"If-Modified-Since", "Mon, 01 Jan 2024 00:00:00 GMT"}} {
		get("/app.js", append([]string{"Accept", "*/*"}, h...)...)
	}
	get("/app.js?filename=x", "Accept", "*/*")
	for range 2 {
		get("/big.bin")
		get("/missing")
	}
	if n := gw.calls.Load() - before; n != 7 {
		t.Fatalf("ranges, conditions, queries, large files and errors reached the gateway %d times, want 7", n)
	}
	// A new release: its own pages, never the old one's.
	rel.cur.Store(&c2)
	if w := get("/app.js", "Accept", "*/*"); !strings.Contains(w.Body.String(), c2.String()) {
		t.Fatalf("after the release changed: %q", w.Body)
	}
	body, _ := io.ReadAll(get("/app.js", "Accept", "*/*").Body)
	if !strings.Contains(string(body), c2.String()) {
		t.Fatalf("after the release changed, from the cache: %q", body)
	}
}
