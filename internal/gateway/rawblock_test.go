package gateway

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/go-cid"
)

// TestRawBlockFromRecycledBuffer: a raw block request answered from a
// recycled buffer (a blockstore with GetInto, as internal/store is) gets
// exactly the response boxo gives from its own read (status, headers,
// body), for GET, HEAD, ranges, conditional requests, paths and missing
// blocks; and many concurrent requests each get their own block's bytes.
func TestRawBlockFromRecycledBuffer(t *testing.T) {
	bs := newBlockstore()
	data := randomBytes(3*chunkSize+chunkSize/2, 5)
	file := importFile(t, bs, data)
	app := importDir(t, bs, map[string][]byte{"index.html": []byte("<h1>x</h1>")})
	var leaves []cid.Cid
	for _, l := range file.Links() {
		leaves = append(leaves, l.Cid)
	}
	held := newHeld(file.Cid(), app)
	heldBlock := func(c cid.Cid) bool { return true }
	into := &intoStore{Blockstore: bs}
	serve := func(bs blockstore.Blockstore) *httptest.Server {
		gw, err := New(DefaultConfig(), bs, held.Held, WithHeldBlock(heldBlock))
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(gw.Handler(nil))
		t.Cleanup(srv.Close)
		return srv
	}
	plain, pooled := serve(bs), serve(into)
	get := func(srv *httptest.Server, method, target string, hdr ...string) (int, http.Header, []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, method, srv.URL+target, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		resp.Header.Del("Date")
		return resp.StatusCode, resp.Header, body
	}
	leaf := "/ipfs/" + leaves[1].String()
	etag := `"` + leaves[1].String() + `.raw"`
	missing := importFile(t, newBlockstore(), []byte("not in this store")).Cid()
	for _, tc := range []struct {
		name, method, target string
		hdr                  []string
	}{
		{"format", "GET", leaf + "?format=raw", nil},
		{"accept", "GET", leaf, []string{"Accept", "application/vnd.ipld.raw"}},
		{"head", "HEAD", leaf + "?format=raw", nil},
		{"range", "GET", leaf + "?format=raw", []string{"Range", "bytes=1000-"}},
		{"bad range", "GET", leaf + "?format=raw", []string{"Range", "bytes=99999999-"}},
		{"if-none-match", "GET", leaf + "?format=raw", []string{"If-None-Match", etag}},
		{"filename", "GET", leaf + "?format=raw&filename=x.bin", nil},
		{"file root", "GET", "/ipfs/" + file.Cid().String() + "?format=raw", nil},
		{"path", "GET", "/ipfs/" + app.String() + "/index.html?format=raw", nil},
		{"missing", "GET", "/ipfs/" + missing.String() + "?format=raw", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws, wh, wb := get(plain, tc.method, tc.target, tc.hdr...)
			gs, gh, gb := get(pooled, tc.method, tc.target, tc.hdr...)
			if gs != ws || string(gb) != string(wb) {
				t.Fatalf("status %d, %d bytes; boxo: %d, %d bytes", gs, len(gb), ws, len(wb))
			}
			for k := range wh {
				if gh.Get(k) != wh.Get(k) {
					t.Errorf("header %s: %q, boxo %q", k, gh.Get(k), wh.Get(k))
				}
			}
			if len(gh) != len(wh) {
				t.Errorf("headers %v, boxo %v", gh, wh)
			}
		})
	}
	if into.calls.Load() == 0 {
		t.Fatal("GetInto never used")
	}
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			c := leaves[i%len(leaves)]
			_, _, body := get(pooled, "GET", "/ipfs/"+c.String()+"?format=raw")
			if got, err := c.Prefix().Sum(body); err != nil || !got.Equals(c) {
				t.Errorf("request %d: %d bytes that do not hash to %s", i, len(body), c)
			}
		})
	}
	wg.Wait()
}
