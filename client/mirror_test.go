package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	chunker "github.com/ipfs/boxo/chunker"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	"github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	uio "github.com/ipfs/boxo/ipld/unixfs/io"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	car "github.com/ipld/go-car/v2"
	"github.com/ipld/go-car/v2/storage"
	"golang.org/x/time/rate"

	"github.com/mirrornet/mirrornet/protocol"
)

// storeDAG is a writable in-memory DAG for building test bundles.
type storeDAG struct {
	memDAG
	mu    sync.Mutex
	order []cid.Cid
}

func (s *storeDAG) Add(_ context.Context, n ipld.Node) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.memDAG[n.Cid()]; !ok {
		s.order = append(s.order, n.Cid())
	}
	s.memDAG[n.Cid()] = n.RawData()
	return nil
}

func (s *storeDAG) AddMany(ctx context.Context, ns []ipld.Node) error {
	for _, n := range ns {
		s.Add(ctx, n)
	}
	return nil
}

// bundle is a test app: its blocks and its files.
type bundle struct {
	root   cid.Cid
	blocks map[cid.Cid][]byte
	cids   []cid.Cid
	files  map[string][]byte // path -> content
	size   int64             // sum of block sizes
}

// buildBundle imports files (path -> content, one level of subdirectory)
// with the unixfs-v1-2025 settings (CIDv1, raw leaves, 1 MiB chunks).
func buildBundle(t testing.TB, files map[string][]byte) *bundle {
	t.Helper()
	ctx := context.Background()
	ds := &storeDAG{memDAG: memDAG{}}
	prof := uio.UnixFS_v1_2025
	dirs := map[string]uio.Directory{}
	mkdir := func(name string) uio.Directory {
		if d, ok := dirs[name]; ok {
			return d
		}
		d, err := uio.NewDirectory(ds, uio.WithCidBuilder(prof.CidBuilder()))
		if err != nil {
			t.Fatal(err)
		}
		dirs[name] = d
		return d
	}
	root := mkdir("")
	for p, content := range files {
		params := helpers.DagBuilderParams{Maxlinks: prof.FileDAGWidth, RawLeaves: true, CidBuilder: prof.CidBuilder(), Dagserv: ds}
		db, err := params.New(chunker.NewSizeSplitter(bytes.NewReader(content), prof.ChunkSize))
		if err != nil {
			t.Fatal(err)
		}
		nd, err := balanced.Layout(db)
		if err != nil {
			t.Fatal(err)
		}
		dir, name := "", p
		if i := strings.IndexByte(p, '/'); i >= 0 {
			dir, name = p[:i], p[i+1:]
		}
		if err := mkdir(dir).AddChild(ctx, name, nd); err != nil {
			t.Fatal(err)
		}
	}
	for name, d := range dirs {
		if name == "" {
			continue
		}
		nd, err := d.GetNode()
		if err != nil {
			t.Fatal(err)
		}
		ds.Add(ctx, nd)
		if err := root.AddChild(ctx, name, nd); err != nil {
			t.Fatal(err)
		}
	}
	nd, err := root.GetNode()
	if err != nil {
		t.Fatal(err)
	}
	ds.Add(ctx, nd)
	b := &bundle{root: nd.Cid(), blocks: map[cid.Cid][]byte{}, files: files}
	// Keep only blocks reachable from the root (intermediate directory
	// states are garbage).
	var walk func(c cid.Cid)
	walk = func(c cid.Cid) {
		if _, ok := b.blocks[c]; ok {
			return
		}
		data := ds.memDAG[c]
		b.blocks[c] = data
		b.cids = append(b.cids, c)
		b.size += int64(len(data))
		ls, err := linksOf(c, data)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range ls {
			walk(l.c)
		}
	}
	walk(b.root)
	return b
}

// dfs lists the blocks under c in depth-first order without duplicates,
// as a gateway sends dag-scope=all.
func (b *bundle) dfs(c cid.Cid) []cid.Cid {
	var out []cid.Cid
	seen := map[cid.Cid]bool{}
	var walk func(c cid.Cid)
	walk = func(c cid.Cid) {
		if seen[c] {
			return
		}
		seen[c] = true
		out = append(out, c)
		ls, _ := linksOf(c, b.blocks[c])
		for _, l := range ls {
			walk(l.c)
		}
	}
	walk(c)
	return out
}

func randomBytes(seed uint64, n int) []byte {
	r := mrand.New(mrand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// smallBundle: a few files, a small directory (fetched as one subtree CAR)
// and a multi-chunk file (2.5 MiB, 3 leaves).
func smallBundle(t testing.TB) *bundle {
	return buildBundle(t, map[string][]byte{
		"index.html":   []byte("<h1>app</h1>"),
		"app.js":       []byte("console.log('hi')"),
		"assets/a.css": []byte("body{}"),
		"lib/a.js":     []byte("export const a = 1"),
		"lib/b.js":     randomBytes(8, 40<<10),
		"assets/big":   randomBytes(7, 2<<20+1<<19),
	})
}

// behaviour is how a fake mirror answers block requests.
type behaviour string

const (
	honest     behaviour = "honest"
	randomData behaviour = "random-bytes"
	flipBit    behaviour = "flipped-bit"
	truncate   behaviour = "truncated"
	garbageCut behaviour = "garbage-then-cut" // random half a block, then the connection dies
	extraBlock behaviour = "extra-block"
	outOfOrder behaviour = "out-of-order"
	otherBlock behaviour = "other-block"
	wrongRoot  behaviour = "wrong-root"
	endless    behaviour = "endless"
	trickle    behaviour = "trickle"
	blackhole  behaviour = "blackhole"
)

var malicious = []behaviour{randomData, flipBit, truncate, garbageCut, extraBlock, outOfOrder, otherBlock, wrongRoot, endless, trickle, blackhole}

// fakeMirror serves a bundle over the trustless gateway with a behaviour.
type fakeMirror struct {
	URL        string
	b          *bundle
	how        behaviour
	statements [][]byte
	holdings   []byte // served at protocol.HTTPHoldingsPath, if set
	// holdingsBusy: this many reads of the holdings statement are
	// answered 503 first (a mirror that has not signed its list yet).
	holdingsBusy  atomic.Int64
	holdingsReads atomic.Int64
	limiter       *rate.Limiter // shared uplink, or nil
	killAfter     int64         // abort everything once this many body bytes were served (0: never)
	holds         bool          // answers HEAD only-if-cached with 200
	// receipts, if set, takes the body of a receipts post (answered 202).
	receipts func([]byte)

	served    atomic.Int64
	requests  atomic.Int64
	blockGets atomic.Int64 // GET /ipfs/...
	dead      atomic.Bool
	srv       *httptest.Server
	ln        net.Listener // blackhole
	stop      chan struct{}
	conns     []net.Conn
	mu        sync.Mutex
}

func newFakeMirror(t testing.TB, b *bundle, how behaviour) *fakeMirror {
	m := &fakeMirror{b: b, how: how, holds: true, stop: make(chan struct{})}
	var ln net.Listener
	if n := netOf(t); n != nil {
		ln = n.listen()
	}
	if how == blackhole {
		if ln == nil {
			var err error
			if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
				t.Fatal(err)
			}
		}
		m.ln = ln
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				m.mu.Lock()
				m.conns = append(m.conns, c)
				m.mu.Unlock()
			}
		}()
		m.URL = "http://" + ln.Addr().String()
	} else {
		m.srv = httptest.NewUnstartedServer(m)
		if ln != nil {
			m.srv.Listener.Close()
			m.srv.Listener = ln
		}
		m.srv.Start()
		m.URL = m.srv.URL
	}
	t.Cleanup(m.close)
	return m
}

func (m *fakeMirror) close() {
	select {
	case <-m.stop:
		return
	default:
	}
	close(m.stop)
	if m.ln != nil {
		m.ln.Close()
		m.mu.Lock()
		for _, c := range m.conns {
			c.Close()
		}
		m.mu.Unlock()
		return
	}
	m.srv.CloseClientConnections()
	m.srv.Close()
}

func (m *fakeMirror) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.requests.Add(1)
	if m.dead.Load() {
		panic(http.ErrAbortHandler)
	}
	if r.URL.Path == protocol.HTTPStatementsPath {
		w.Header().Set("Content-Type", protocol.StatementsContentType)
		for _, s := range m.statements {
			protocol.WriteFrame(w, s)
		}
		protocol.WriteFrame(w, nil)
		return
	}
	if r.URL.Path == protocol.HTTPHoldingsPath {
		m.holdingsReads.Add(1)
		if m.holdingsBusy.Add(-1) >= 0 {
			http.Error(w, "no holdings statement yet", http.StatusServiceUnavailable)
			return
		}
	}
	if r.URL.Path == protocol.HTTPHoldingsPath && m.holdings != nil {
		w.Header().Set("Content-Type", protocol.HoldingsContentType)
		w.Write(m.holdings)
		return
	}
	if r.URL.Path == protocol.HTTPReceiptsPath && m.receipts != nil {
		b, _ := io.ReadAll(r.Body)
		m.receipts(b)
		w.WriteHeader(http.StatusAccepted)
		return
	}
	s, ok := strings.CutPrefix(r.URL.Path, "/ipfs/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	c, err := cid.Decode(s)
	if err != nil {
		http.Error(w, "bad cid", http.StatusBadRequest)
		return
	}
	data, ok := m.b.blocks[c]
	if r.Method == http.MethodHead {
		if !m.holds || (!ok && r.Header.Get("Cache-Control") == "only-if-cached") {
			w.WriteHeader(http.StatusPreconditionFailed)
		}
		return
	}
	if !ok || !m.holds {
		http.NotFound(w, r)
		return
	}
	m.blockGets.Add(1)
	isCAR := r.URL.Query().Get("format") == "car"
	ww := &meter{w: w, m: m, ctx: r.Context()}
	switch m.how {
	case endless:
		buf := make([]byte, 32<<10)
		for {
			rand.Read(buf)
			if _, err := ww.Write(buf); err != nil {
				return
			}
		}
	case trickle:
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		tk := time.NewTicker(time.Second)
		defer tk.Stop()
		for i := 0; ; i++ {
			if _, err := ww.Write(data[i%len(data) : i%len(data)+1]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-tk.C:
			case <-r.Context().Done():
				return
			case <-m.stop:
				return
			}
		}
	}
	other := m.otherThan(c)
	body := data
	if isCAR {
		roots, blks := []cid.Cid{c}, []cid.Cid{c}
		if r.URL.Query().Get("dag-scope") == "all" {
			blks = m.b.dfs(c)
		}
		switch m.how {
		case extraBlock:
			blks = append(blks, other)
		case outOfOrder:
			if len(blks) > 2 {
				blks[1], blks[2] = blks[2], blks[1]
			} else {
				blks = append([]cid.Cid{other}, blks...)
			}
		case otherBlock:
			blks[len(blks)-1] = other
		case wrongRoot:
			roots = []cid.Cid{other}
		}
		body = m.car(roots, blks)
	} else {
		switch m.how {
		case extraBlock:
			body = append(append([]byte{}, data...), m.b.blocks[other]...)
		case outOfOrder, otherBlock:
			body = m.b.blocks[other]
		}
	}
	switch m.how {
	case randomData:
		body = make([]byte, len(body))
		rand.Read(body)
	case flipBit:
		body = append([]byte{}, body...)
		body[len(body)-1] ^= 1 << (len(body) % 8)
	case garbageCut:
		if isCAR {
			break // cuts only raw blocks, so that resumption is tried
		}
		fallthrough
	case truncate:
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		half := body[:len(body)/2]
		if m.how == garbageCut {
			half = make([]byte, len(body)/2)
			rand.Read(half)
		}
		ww.Write(half)
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	if isCAR {
		w.Header().Set("Content-Type", "application/vnd.ipld.car; version=1")
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		ww.Write(body)
		return
	}
	w.Header().Set("Content-Type", "application/vnd.ipld.raw")
	http.ServeContent(ww, r, "", time.Time{}, bytes.NewReader(body))
}

func (m *fakeMirror) otherThan(c cid.Cid) cid.Cid {
	for _, o := range m.b.cids {
		if !o.Equals(c) {
			return o
		}
	}
	return c
}

func (m *fakeMirror) car(roots, blks []cid.Cid) []byte {
	var buf bytes.Buffer
	sc, err := storage.NewWritable(&buf, roots, car.WriteAsCarV1(true), car.AllowDuplicatePuts(true))
	if err != nil {
		panic(err)
	}
	for _, c := range blks {
		sc.Put(context.Background(), c.KeyString(), m.b.blocks[c])
	}
	sc.Finalize()
	return buf.Bytes()
}

// meter counts served bytes, applies the mirror's bandwidth cap and kills
// the mirror after killAfter bytes.
type meter struct {
	w   http.ResponseWriter
	m   *fakeMirror
	ctx context.Context
}

func (mw *meter) Header() http.Header { return mw.w.Header() }
func (mw *meter) WriteHeader(s int)   { mw.w.WriteHeader(s) }
func (mw *meter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := min(len(p), 16<<10)
		if mw.m.limiter != nil {
			if err := mw.m.limiter.WaitN(mw.ctx, n); err != nil {
				return written, err
			}
		}
		if k := mw.m.killAfter; k > 0 && mw.m.served.Load()+int64(n) > k {
			n = int(max(0, k-mw.m.served.Load()))
			mw.w.Write(p[:n])
			mw.m.served.Add(int64(n))
			mw.m.kill()
			panic(http.ErrAbortHandler)
		}
		k, err := mw.w.Write(p[:n])
		mw.m.served.Add(int64(k))
		written += k
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

// kill makes the mirror die: every later request is cut and new
// connections are refused.
func (m *fakeMirror) kill() {
	if m.dead.Swap(true) {
		return
	}
	m.srv.Listener.Close()
	go m.srv.CloseClientConnections()
}

// testOptions are short timeouts for in-process mirrors (in a bubble: an
// HTTP client on the bubble's in-memory network).
func testOptions(t testing.TB, boot ...string) Options {
	var hc *http.Client
	if n := netOf(t); n != nil {
		hc = n.client(t)
	}
	return Options{
		HTTPClient: hc,
		Bootstrap:  boot,
		HedgeDelay: 100 * time.Millisecond,
		// Generous for a loaded 2-core machine under -race: stalls and
		// probes only decide how fast a hopeless download fails; hedging
		// (100 ms) is what routes around slow mirrors.
		StallTimeout: 2 * time.Second,
		ProbeTimeout: 2 * time.Second,
		MinRate:      16 << 10,
	}
}

func checkResult(t testing.TB, b *bundle, res *Result) {
	t.Helper()
	if !res.Root.Equals(b.root) {
		t.Fatalf("root %s, want %s", res.Root, b.root)
	}
	if len(res.blocks) != len(b.blocks) {
		t.Fatalf("%d blocks, want %d", len(res.blocks), len(b.blocks))
	}
	for c, want := range b.blocks {
		if got := res.blocks[c]; !bytes.Equal(got, want) {
			t.Fatalf("block %s differs", c)
		}
	}
	if res.Bytes != b.size {
		t.Fatalf("Bytes %d, want %d", res.Bytes, b.size)
	}
}

var _ io.Writer = (*meter)(nil)
