package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzHandlerNever5xx: whatever the path, query and host, the gateway
// answers below 500 and never serves a bundle it does not hold.
func FuzzHandlerNever5xx(f *testing.F) {
	bs := newBlockstore()
	app := importDir(f, bs, map[string][]byte{"index.html": []byte("<h1>held</h1>"), "a.txt": []byte("a")})
	notHeld := importDir(f, bs, map[string][]byte{"index.html": []byte("SECRET-NOT-HELD")})
	gw, err := New(DefaultConfig(), bs, newHeld(app).Held)
	if err != nil {
		f.Fatal(err)
	}
	h := gw.Handler(nil)

	a, n := app.String(), notHeld.String()
	for _, s := range []struct{ path, query, host string }{
		{"/ipfs/" + a, "format=car", ""},
		{"/ipfs/" + a, "format=raw", ""},
		{"/ipfs/" + a + "/index.html", "format=car&dag-scope=entity&entity-bytes=0:3", ""},
		{"/ipfs/" + a + "/missing", "format=car", ""},
		{"/ipfs/" + a + "/index.html", "", "localhost"},
		{"/", "", a + ".ipfs.localhost:8080"},
		{"/a.txt", "format=raw", a + ".ipfs.localhost"},
		{"/missing", "", a + ".ipfs.localhost"},
		{"/", "", n + ".ipfs.localhost"},
		{"/ipfs/" + n, "format=car", ""},
		{"/ipfs/" + n, "", "localhost"},
		{"/ipfs/../ipfs/" + n, "format=car", ""},
		{"/ipns/" + a, "", ""},
		{"/ipfs/" + a + "%2F..", "", ""},
		{"/ipfs/Qm", "format=car", ""},
		{"/", "", "x.y.ipfs.localhost"},
		{"/ipfs/" + a, "format=car&dag-scope=block&dups=y", ""},
		{"/ipfs/" + a, "format=tar", ""},
		{"/ipfs/" + a, "format=dag-json", "localhost"},
		{"/ipfs/" + a + "/", "filename=x.car&download=true&format=car", ""},
	} {
		f.Add(s.path, s.query, s.host)
	}
	f.Fuzz(func(t *testing.T, p, q, host string) {
		u := &url.URL{Path: p, RawQuery: q}
		// net/http only hands handlers requests whose URI parses.
		if _, err := url.ParseRequestURI(u.RequestURI()); err != nil {
			t.Skip()
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		r := (&http.Request{
			Method:     "GET",
			URL:        u,
			RequestURI: u.RequestURI(),
			Host:       host,
			Header:     http.Header{},
		}).WithContext(ctx)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code >= 500 {
			t.Fatalf("GET path %q query %q host %q: %d %s", p, q, host, rec.Code, rec.Body)
		}
		if strings.Contains(rec.Body.String(), "SECRET-NOT-HELD") {
			t.Fatalf("GET path %q query %q host %q served the unheld bundle", p, q, host)
		}
	})
}
