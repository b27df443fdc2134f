package gateway

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/boxo/files"
	"github.com/ipfs/boxo/ipld/merkledag"
	ufile "github.com/ipfs/boxo/ipld/unixfs/file"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
)

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	_, _ = r.Read(b)
	return b
}

// fixture is a gateway over one blockstore holding two bundles and a
// third, fully present bundle that is not (yet) held.
type fixture struct {
	srv      *httptest.Server
	port     string
	app      cid.Cid // directory bundle, held
	file     cid.Cid // 3.5 MiB single-file bundle, held
	fileData []byte
	partial  cid.Cid // all blocks in the store, but not held
	appFiles map[string][]byte
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	bs := newBlockstore()
	f := &fixture{
		appFiles: map[string][]byte{
			"index.html": []byte("<!doctype html><title>app</title><h1>hello from the app</h1>\n"),
			"style.css":  []byte("h1 { color: teal }\n"),
			"app.js":     []byte("console.log('app')\n"),
		},
		fileData: randomBytes(3*chunkSize+chunkSize/2, 1),
	}
	f.app = importDir(t, bs, f.appFiles)
	f.file = importFile(t, bs, f.fileData).Cid()
	f.partial = importDir(t, bs, map[string][]byte{"index.html": []byte("not yet verified")})
	held := newHeld(f.app, f.file)

	gw, err := New(cfg, bs, held.Held)
	if err != nil {
		t.Fatal(err)
	}
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "next handler")
	})
	f.srv = httptest.NewServer(gw.Handler(next))
	t.Cleanup(f.srv.Close)
	u, _ := url.Parse(f.srv.URL)
	f.port = u.Port()
	return f
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request to the fixture's server with the given Host header
// ("" for 127.0.0.1:PORT) and never follows redirects.
func (f *fixture) do(t *testing.T, method, target, host string, hdr ...string) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, f.srv.URL+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, body}
}

func TestRawBlockHashesToCID(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	for _, tc := range []struct {
		name, target string
		root         cid.Cid
		hdr          []string
	}{
		{"format", "/ipfs/" + f.file.String() + "?format=raw", f.file, nil},
		{"accept", "/ipfs/" + f.file.String(), f.file, []string{"Accept", "application/vnd.ipld.raw"}},
		{"dir", "/ipfs/" + f.app.String() + "?format=raw", f.app, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(t, "GET", tc.target, "", tc.hdr...)
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/vnd.ipld.raw" {
				t.Errorf("Content-Type %q", ct)
			}
			got, err := tc.root.Prefix().Sum(r.body)
			if err != nil || !got.Equals(tc.root) {
				t.Fatalf("body hashes to %v (%v), want %s", got, err, tc.root)
			}
		})
	}
}

func TestCARVerifiesAndReassembles(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	for _, tc := range []struct {
		name, target string
		hdr          []string
	}{
		{"format", "/ipfs/" + f.file.String() + "?format=car", nil},
		{"accept", "/ipfs/" + f.file.String(), []string{"Accept", "application/vnd.ipld.car"}},
		{"scope-all", "/ipfs/" + f.file.String() + "?format=car&dag-scope=all", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(t, "GET", tc.target, "", tc.hdr...)
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/vnd.ipld.car") {
				t.Errorf("Content-Type %q", ct)
			}
			got, err := readVerifiedFile(bytes.NewReader(r.body), f.file, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, f.fileData) {
				t.Fatalf("reassembled %d bytes differ from the %d imported", len(got), len(f.fileData))
			}
		})
	}
}

func TestCARDagScope(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	// dag-scope=block: the root block only.
	r := f.do(t, "GET", "/ipfs/"+f.file.String()+"?format=car&dag-scope=block", "")
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	_, roots, n := readCARBlocks(t, bytes.NewReader(r.body))
	if len(roots) != 1 || !roots[0].Equals(f.file) || n != 1 {
		t.Fatalf("dag-scope=block: roots %v, %d blocks; want [%s], 1 block", roots, n, f.file)
	}

	// dag-scope=entity of a file path inside the app: that file, whole.
	r = f.do(t, "GET", "/ipfs/"+f.app.String()+"/index.html?format=car&dag-scope=entity", "")
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	bs, roots, n := readCARBlocks(t, bytes.NewReader(r.body))
	// The path's directory block (to verify the path) and the file's
	// single raw leaf; the root is the terminal element, as boxo does.
	if n != 2 {
		t.Fatalf("%d blocks, want 2 (directory, index.html)", n)
	}
	dir, err := dagService(bs).Get(context.Background(), f.app)
	if err != nil {
		t.Fatalf("path's directory block not in CAR: %v", err)
	}
	lnk, _, err := dir.ResolveLink([]string{"index.html"})
	if err != nil {
		t.Fatal(err)
	}
	if len(roots) != 1 || !roots[0].Equals(lnk.Cid) {
		t.Fatalf("roots %v, want [%s]", roots, lnk.Cid)
	}
	blk, err := bs.Get(context.Background(), lnk.Cid)
	if err != nil {
		t.Fatalf("index.html leaf not in CAR: %v", err)
	}
	if !bytes.Equal(blk.RawData(), f.appFiles["index.html"]) {
		t.Fatalf("index.html = %q", blk.RawData())
	}
}

func TestEntityBytes(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	size := int64(len(f.fileData))
	for _, tc := range []struct {
		rng      string
		from, to int64 // inclusive
		maxLeafs int
	}{
		{"0:0", 0, 0, 1},
		{"1500000:2500000", 1500000, 2500000, 2},
		{"1048575:1048576", chunkSize - 1, chunkSize, 2}, // straddles a chunk boundary
		{"3000000:*", 3000000, size - 1, 2},
		{"-100:*", size - 100, size - 1, 1},
	} {
		t.Run(tc.rng, func(t *testing.T) {
			r := f.do(t, "GET", "/ipfs/"+f.file.String()+"?format=car&dag-scope=entity&entity-bytes="+tc.rng, "")
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			bs, roots, n := readCARBlocks(t, bytes.NewReader(r.body))
			if len(roots) != 1 || !roots[0].Equals(f.file) {
				t.Fatalf("roots %v, want [%s]", roots, f.file)
			}
			if n > 1+tc.maxLeafs {
				t.Errorf("%d blocks for range %s, want at most root + %d leaves", n, tc.rng, tc.maxLeafs)
			}
			// Read the range back from only the blocks the CAR carried:
			// a missing block makes the read fail.
			ds := dagService(bs)
			nd, err := ds.Get(context.Background(), f.file)
			if err != nil {
				t.Fatal(err)
			}
			fn, err := ufile.NewUnixfsFile(context.Background(), ds, nd)
			if err != nil {
				t.Fatal(err)
			}
			file, ok := fn.(interface {
				files.File
				io.Seeker
			})
			if !ok {
				t.Fatalf("%T is not a seekable file", fn)
			}
			if _, err := file.Seek(tc.from, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, tc.to-tc.from+1)
			if _, err := io.ReadFull(file, got); err != nil {
				t.Fatalf("reading range from CAR blocks: %v", err)
			}
			if !bytes.Equal(got, f.fileData[tc.from:tc.to+1]) {
				t.Fatal("range bytes differ from the file")
			}
		})
	}
}

func TestOnlyIfCached(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	unknown := cid.NewCidV1(cid.Raw, f.file.Hash()) // right hash, wrong codec: never imported
	for _, tc := range []struct {
		name string
		root cid.Cid
		want int
	}{
		{"held file", f.file, 200},
		{"held app", f.app, 200},
		{"blocks present, not held", f.partial, 412},
		{"unknown", unknown, 412},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(t, "HEAD", "/ipfs/"+tc.root.String(), "", "Cache-Control", "only-if-cached")
			if r.status != tc.want {
				t.Fatalf("HEAD only-if-cached: status %d, want %d", r.status, tc.want)
			}
		})
	}
}

func TestNotHeldIsRefused(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	p := f.partial.String()
	for _, tc := range []struct {
		name, method, target, host string
		hdr                        []string
	}{
		{"car", "GET", "/ipfs/" + p + "?format=car", "", nil},
		{"raw", "GET", "/ipfs/" + p + "?format=raw", "", nil},
		{"raw accept", "GET", "/ipfs/" + p, "", []string{"Accept", "application/vnd.ipld.raw"}},
		{"subpath car", "GET", "/ipfs/" + p + "/index.html?format=car", "", nil},
		{"head", "HEAD", "/ipfs/" + p, "", nil},
		{"subdomain", "GET", "/", p + ".ipfs.localhost:" + f.port, nil},
		{"subdomain file", "GET", "/index.html", p + ".ipfs.localhost:" + f.port, nil},
		{"path on subdomain host", "GET", "/ipfs/" + p + "/", "localhost:" + f.port, nil},
		{"forwarded host", "GET", "/", "", []string{"X-Forwarded-Host", p + ".ipfs.localhost"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(t, tc.method, tc.target, tc.host, tc.hdr...)
			if r.status != http.StatusNotFound {
				t.Fatalf("status %d, want 404: %s", r.status, r.body)
			}
			if tc.method == "GET" && !strings.Contains(string(r.body), "not held by this mirror") {
				t.Fatalf("body %q does not say why", r.body)
			}
			if bytes.Contains(r.body, []byte("not yet verified")) {
				t.Fatal("body leaks the unheld bundle's content")
			}
		})
	}
}

// TestHeldChangesAreSeen: holding is asked per request, so a bundle that
// completes is served without restarting the gateway.
func TestHeldIsAskedPerRequest(t *testing.T) {
	bs := newBlockstore()
	root := importDir(t, bs, map[string][]byte{"index.html": []byte("hi")})
	held := newHeld()
	gw, err := New(DefaultConfig(), bs, held.Held)
	if err != nil {
		t.Fatal(err)
	}
	h := gw.Handler(nil)
	get := func() int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/ipfs/"+root.String()+"?format=raw", nil))
		return rec.Code
	}
	if c := get(); c != 404 {
		t.Fatalf("before held: %d, want 404", c)
	}
	held.mu.Lock()
	held.m[root] = true
	held.mu.Unlock()
	if c := get(); c != 200 {
		t.Fatalf("after held: %d, want 200", c)
	}
}

func TestCIDv0RootChecksV1(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	v0 := cid.NewCidV0(f.app.Hash())
	r := f.do(t, "GET", "/ipfs/"+v0.String()+"?format=raw", "")
	if r.status != 200 {
		t.Fatalf("CIDv0 of a held CIDv1 root: status %d: %s", r.status, r.body)
	}
}

func TestSubdomainServesApp(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	host := f.app.String() + ".ipfs.localhost:" + f.port
	for _, tc := range []struct {
		path, file, ctype string
	}{
		{"/", "index.html", "text/html"},
		{"/index.html", "index.html", "text/html"},
		{"/style.css", "style.css", "text/css"},
		{"/app.js", "app.js", "text/javascript"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			r := f.do(t, "GET", tc.path, host)
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, tc.ctype) {
				t.Errorf("Content-Type %q, want %s", ct, tc.ctype)
			}
			if !bytes.Equal(r.body, f.appFiles[tc.file]) {
				t.Errorf("body %q, want %q", r.body, f.appFiles[tc.file])
			}
		})
	}
	// A file the bundle does not have.
	if r := f.do(t, "GET", "/missing.png", host); r.status != 404 {
		t.Errorf("missing file: status %d, want 404", r.status)
	}
}

func TestPathOnSubdomainHostRedirects(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	r := f.do(t, "GET", "/ipfs/"+f.app.String()+"/style.css?x=1", "localhost:"+f.port)
	if r.status != http.StatusMovedPermanently {
		t.Fatalf("status %d, want 301: %s", r.status, r.body)
	}
	want := "http://" + f.app.String() + ".ipfs.localhost:" + f.port + "/style.css?x=1"
	if loc := r.header.Get("Location"); loc != want {
		t.Fatalf("Location %q, want %q", loc, want)
	}
	// CIDv0 paths go to the base32 CIDv1 origin, as kubo does.
	v0 := cid.NewCidV0(f.app.Hash())
	r = f.do(t, "GET", "/ipfs/"+v0.String()+"/", "localhost:"+f.port)
	want = "http://" + f.app.String() + ".ipfs.localhost:" + f.port + "/"
	if loc := r.header.Get("Location"); r.status != 301 || loc != want {
		t.Fatalf("CIDv0: %d Location %q, want 301 %q", r.status, loc, want)
	}
}

func TestPathGatewayByIP(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	// Trustless requests work on a plain host.
	r := f.do(t, "GET", "/ipfs/"+f.app.String()+"?format=car", "")
	if r.status != 200 {
		t.Fatalf("car by IP: %d: %s", r.status, r.body)
	}
	// Deserialised responses are for subdomain origins only, by default.
	r = f.do(t, "GET", "/ipfs/"+f.app.String()+"/index.html", "")
	if r.status != http.StatusNotAcceptable {
		t.Fatalf("deserialised by IP: %d, want 406", r.status)
	}
	// Unless configured.
	cfg := DefaultConfig()
	cfg.DeserializedPaths = true
	f2 := newFixture(t, cfg)
	r = f2.do(t, "GET", "/ipfs/"+f2.app.String()+"/index.html", "")
	if r.status != 200 || !bytes.Equal(r.body, f2.appFiles["index.html"]) {
		t.Fatalf("deserialised by IP with DeserializedPaths: %d %q", r.status, r.body)
	}
}

func TestOtherRequestsGoToNext(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	for _, tc := range []struct{ target, host string }{
		{"/", ""},
		{"/api/v1/status", ""},
		{"/ipfsx/foo", ""},
		{"/metrics", "localhost:" + f.port},
		{"/", "localhost:" + f.port},
		{"/", "example.ipfs.example.com"}, // not a subdomain host
		{"/", "a.b.localhost"},            // b is not a namespace
	} {
		r := f.do(t, "GET", tc.target, tc.host)
		if r.status != 200 || string(r.body) != "next handler" {
			t.Errorf("%s host %q: %d %q, want the next handler", tc.target, tc.host, r.status, r.body)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"default", DefaultConfig(), true},
		{"two hosts", Config{SubdomainHosts: []string{"localhost", "mirror.example.org"}}, true},
		{"empty", Config{}, false},
		{"empty host", Config{SubdomainHosts: []string{""}}, false},
		{"port", Config{SubdomainHosts: []string{"localhost:8080"}}, false},
		{"scheme", Config{SubdomainHosts: []string{"http://localhost"}}, false},
		{"wildcard", Config{SubdomainHosts: []string{"*.example.org"}}, false},
		{"ip", Config{SubdomainHosts: []string{"127.0.0.1"}}, false},
		{"leading dot", Config{SubdomainHosts: []string{".example.org"}}, false},
	} {
		err := tc.cfg.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if _, nerr := New(tc.cfg, newBlockstore(), newHeld().Held); (nerr == nil) != tc.ok {
			t.Errorf("%s: New() = %v, want ok=%v", tc.name, nerr, tc.ok)
		}
	}
	if _, err := New(DefaultConfig(), nil, newHeld().Held); err == nil {
		t.Error("New with nil blockstore succeeded")
	}
	if _, err := New(DefaultConfig(), newBlockstore(), nil); err == nil {
		t.Error("New with nil HeldFunc succeeded")
	}
}

// TestCARUsesDirectPath: a whole-bundle CAR request is served by the
// direct path (see fastcar.go), and an entity-bytes request by boxo.
func TestCARUsesDirectPath(t *testing.T) {
	bs := newBlockstore()
	root := importFile(t, bs, randomBytes(2*chunkSize+1, 3)).Cid()
	gw, err := New(DefaultConfig(), bs, newHeld(root).Held)
	if err != nil {
		t.Fatal(err)
	}
	h := gw.Handler(nil)
	get := func(q string) {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/ipfs/"+root.String()+q, nil))
		if rec.Code != 200 {
			t.Fatalf("%s: %d %s", q, rec.Code, rec.Body)
		}
		if _, err := readVerifiedFile(rec.Body, root, nil); err != nil && !strings.Contains(q, "entity-bytes") {
			t.Fatalf("%s: %v", q, err)
		}
	}
	get("?format=car")
	get("?format=car&dag-scope=all&dups=n")
	if n := gw.backend.direct.Load(); n != 2 {
		t.Fatalf("direct path served %d of 2 whole-DAG CARs", n)
	}
	get("?format=car&dag-scope=entity&entity-bytes=0:10")
	if n := gw.backend.direct.Load(); n != 2 {
		t.Fatalf("direct path served an entity-bytes request")
	}
}

// TestVerifierRejectsBadCARs: the test client's verifier, used above and
// in the benchmark, does fail on a tampered, truncated or wrong CAR.
func TestVerifierRejectsBadCARs(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	r := f.do(t, "GET", "/ipfs/"+f.file.String()+"?format=car", "")
	good := r.body
	if _, err := readVerifiedFile(bytes.NewReader(good), f.file, nil); err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(good)
	flipped[len(flipped)-100] ^= 1
	other := f.do(t, "GET", "/ipfs/"+f.app.String()+"?format=car", "").body
	for name, body := range map[string][]byte{
		"flipped leaf byte":  flipped,
		"truncated":          good[:len(good)/2],
		"missing last block": good[:len(good)-(len(f.fileData)%chunkSize)-40],
		"other root":         other,
	} {
		if _, err := readVerifiedFile(bytes.NewReader(body), f.file, nil); err == nil {
			t.Errorf("%s: verified", name)
		}
	}
}

// dagBlocks lists every block CID of the DAG under root.
func dagBlocks(t *testing.T, bs blockstoreGetter, root cid.Cid) []cid.Cid {
	t.Helper()
	var out []cid.Cid
	stack := []cid.Cid{root}
	for len(stack) > 0 {
		c := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		out = append(out, c)
		if c.Type() != cid.DagProtobuf {
			continue
		}
		blk, err := bs.Get(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		nd, err := merkledag.DecodeProtobuf(blk.RawData())
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range nd.Links() {
			stack = append(stack, l.Cid)
		}
	}
	return out
}

type blockstoreGetter interface {
	Get(context.Context, cid.Cid) (blocks.Block, error)
}

// TestHeldBlocks: block-at-a-time clients and probes ask for blocks of a
// held bundle by their own CIDs; WithHeldBlock serves them, and blocks of
// bundles not held stay refused.
func TestHeldBlocks(t *testing.T) {
	bs := newBlockstore()
	data := randomBytes(3*chunkSize+100, 4)
	root := importFile(t, bs, data).Cid()
	partial := importFile(t, bs, randomBytes(2*chunkSize+7, 5)).Cid()
	blocksOf := newHeld()
	held := dagBlocks(t, bs, root)
	for _, c := range held {
		blocksOf.m[c] = true
	}
	leaf := held[len(held)-1]
	if leaf.Type() != cid.Raw {
		t.Fatalf("%s is not a leaf", leaf)
	}
	partialLeaf := dagBlocks(t, bs, partial)[1]

	for _, withOpt := range []bool{false, true} {
		var opts []Option
		if withOpt {
			opts = append(opts, WithHeldBlock(blocksOf.Held))
		}
		gw, err := New(DefaultConfig(), bs, newHeld(root).Held, opts...)
		if err != nil {
			t.Fatal(err)
		}
		h := gw.Handler(nil)
		do := func(method, target string, hdr ...string) *httptest.ResponseRecorder {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(method, target, nil)
			for i := 0; i+1 < len(hdr); i += 2 {
				req.Header.Set(hdr[i], hdr[i+1])
			}
			h.ServeHTTP(rec, req)
			return rec
		}
		want := map[bool]int{false: 404, true: 200}[withOpt]
		rec := do("GET", "/ipfs/"+leaf.String()+"?format=raw")
		if rec.Code != want {
			t.Fatalf("option %v: leaf raw: %d, want %d", withOpt, rec.Code, want)
		}
		if withOpt {
			if got, _ := leaf.Prefix().Sum(rec.Body.Bytes()); !got.Equals(leaf) {
				t.Fatal("leaf body does not hash to its CID")
			}
		}
		if rec := do("GET", "/ipfs/"+leaf.String()+"?format=car&dag-scope=block"); rec.Code != want {
			t.Fatalf("option %v: leaf car: %d, want %d", withOpt, rec.Code, want)
		}
		wantHead := map[bool]int{false: 412, true: 200}[withOpt]
		if rec := do("HEAD", "/ipfs/"+leaf.String(), "Cache-Control", "only-if-cached"); rec.Code != wantHead {
			t.Fatalf("option %v: leaf HEAD only-if-cached: %d, want %d", withOpt, rec.Code, wantHead)
		}
		if rec := do("GET", "/ipfs/"+partialLeaf.String()+"?format=raw"); rec.Code != 404 {
			t.Fatalf("option %v: leaf of an unheld bundle: %d, want 404", withOpt, rec.Code)
		}
		if rec := do("GET", "/ipfs/"+partial.String()+"?format=car"); rec.Code != 404 {
			t.Fatalf("option %v: unheld root: %d, want 404", withOpt, rec.Code)
		}
	}
}
