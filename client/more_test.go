package client

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mdag "github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs"
	uio "github.com/ipfs/boxo/ipld/unixfs/io"
	upb "github.com/ipfs/boxo/ipld/unixfs/pb"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	mh "github.com/multiformats/go-multihash"

	"github.com/mirrornet/mirrornet/protocol"
)

// TestP2PBootstrap: statements come over the libp2p sync protocol from a
// bootstrap given as a /p2p/ multiaddr; the mirror they name serves HTTP.
func TestP2PBootstrap(t *testing.T) {
	b := smallBundle(t)
	m := newFakeMirror(t, b, honest)
	key := newKey(t)
	stmt := signed(t, key, 1, time.Now(), protocol.StateUp, m.URL, b.root.String())

	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var mu sync.Mutex
	var kinds string
	h.SetStreamHandler(protocol.SyncProtocolID, func(s network.Stream) {
		defer s.Close()
		req, err := protocol.ReadFrame(bufio.NewReader(s), protocol.MaxSyncRequestSize)
		if err != nil {
			s.Reset()
			return
		}
		mu.Lock()
		kinds = string(req)
		mu.Unlock()
		protocol.WriteFrame(s, []byte("junk is ignored"))
		protocol.WriteFrame(s, stmt)
		protocol.WriteFrame(s, nil)
	})
	addr := h.Addrs()[0].String() + "/p2p/" + h.ID().String()
	if err := ParseBootstrap(addr); err != nil {
		t.Fatal(err)
	}
	// A real libp2p host, so real time: the statement request (a dial and
	// a Noise handshake under the race detector on a saturated machine)
	// gets a probe timeout far beyond testOptions' 2 s, and the context
	// is a failure guard only.
	o := testOptions(t, addr)
	o.ProbeTimeout, o.StallTimeout = time.Minute, time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := Get(ctx, b.root, o)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, b, res)
	if res.PerMirror[m.URL] != b.size {
		t.Fatalf("per mirror %v", res.PerMirror)
	}
	mu.Lock()
	defer mu.Unlock()
	if kinds != `{"kinds":["liveness"]}` {
		t.Fatalf("sync request %q", kinds)
	}
}

// TestHedgingBeatsStall: a mirror that trickles must not hold the download
// until the stall timeout: its requests are hedged on the honest mirror.
// The trickling mirror is the only bootstrap (its statements name the
// honest one), so it gets the first requests. Without hedging this Get
// would wait for the one-minute stall timeout and miss the deadline.
func TestHedgingBeatsStall(t *testing.T) { inBubble(t, testHedgingBeatsStall) }

func testHedgingBeatsStall(t *testing.T) {
	b := smallBundle(t)
	slow := newFakeMirror(t, b, trickle)
	good := newFakeMirror(t, b, honest)
	slow.statements = [][]byte{signed(t, newKey(t), 1, time.Now(), protocol.StateUp, good.URL, b.root.String())}
	o := testOptions(t, slow.URL)
	o.StallTimeout = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var last Progress
	calls := 0
	o.ProgressInterval = time.Millisecond
	o.Progress = func(p Progress) {
		if p.Bytes < last.Bytes {
			t.Errorf("progress went back: %d after %d", p.Bytes, last.Bytes)
		}
		last = p
		calls++
	}
	res, err := Get(ctx, b.root, o)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, b, res)
	if slow.blockGets.Load() == 0 || res.Hedges == 0 {
		t.Errorf("trickling mirror got %d block requests, %d hedges", slow.blockGets.Load(), res.Hedges)
	}
	if calls == 0 || last.Bytes != b.size || last.Blocks != len(b.blocks) {
		t.Errorf("last progress %+v after %d calls, want %d bytes", last, calls, b.size)
	}
	// The total the root declares (a bar's 100%) is known, and covers
	// what arrived.
	if last.Total < last.Bytes || last.Total == 0 {
		t.Errorf("progress total %d, bytes %d", last.Total, last.Bytes)
	}
}

func TestHandler(t *testing.T) { inBubble(t, testHandler) }

func testHandler(t *testing.T) {
	b := smallBundle(t)
	m := newFakeMirror(t, b, honest)
	res, err := Get(context.Background(), b.root, testOptions(t, m.URL))
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, res.Handler())
	hc := netOf(t).client(t)
	get := func(p string) (int, string, string) {
		resp, err := hc.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
	}
	if code, ct, body := get("/"); code != 200 || body != string(b.files["index.html"]) || !strings.HasPrefix(ct, "text/html") {
		t.Errorf("/: %d %q %q", code, ct, body)
	}
	if code, _, body := get("/assets/big"); code != 200 || body != string(b.files["assets/big"]) {
		t.Errorf("/assets/big: %d, %d bytes", code, len(body))
	}
	if code, _, body := get("/assets/"); code != 200 || !strings.Contains(body, `href="a.css"`) {
		t.Errorf("/assets/ listing: %d %q", code, body)
	}
	if code, _, _ := get("/nope"); code != 404 {
		t.Errorf("/nope: %d", code)
	}
	if code, _, _ := get("/../../etc/passwd"); code != 404 {
		t.Errorf("traversal: %d", code)
	}
}

// TestResumeFromLyingPrefix: a mirror sends half a block of garbage and
// cuts the connection. The block resumes from that prefix on the honest
// mirror, fails to verify, and is fetched again whole without blaming the
// honest mirror.
func TestResumeFromLyingPrefix(t *testing.T) { inBubble(t, testResumeFromLyingPrefix) }

func testResumeFromLyingPrefix(t *testing.T) {
	b := smallBundle(t)
	liar := newFakeMirror(t, b, garbageCut)
	good := newFakeMirror(t, b, honest)
	o := testOptions(t, liar.URL, good.URL)
	o.PerMirror = 1
	res, err := Get(context.Background(), b.root, o)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, b, res)
	for _, d := range res.Dropped {
		if d.Mirror == good.URL {
			t.Fatalf("honest mirror dropped: %+v", res.Dropped)
		}
	}
	if res.resumeFailures == 0 {
		t.Fatalf("no resumption from the garbage prefix was tried (liar got %d block requests)", liar.blockGets.Load())
	}
}

// TestNewestStatementWins: one bootstrap still says mirror M is up, another
// has M's newer "leaving" statement. The client judges the union, so M is
// never asked for anything, and mirror H (named by the first) serves.
func TestNewestStatementWins(t *testing.T) { inBubble(t, testNewestStatementWins) }

func testNewestStatementWins(t *testing.T) {
	b := smallBundle(t)
	now := time.Now()
	root := b.root.String()
	b1 := newFakeMirror(t, b, honest)
	b2 := newFakeMirror(t, b, honest)
	b1.holds, b2.holds = false, false
	m := newFakeMirror(t, b, honest)
	h := newFakeMirror(t, b, honest)
	km, kh := newKey(t), newKey(t)
	b1.statements = [][]byte{
		signed(t, km, 1, now, protocol.StateUp, m.URL, root),
		signed(t, kh, 1, now, protocol.StateUp, h.URL, root),
	}
	b2.statements = [][]byte{signed(t, km, 2, now, protocol.StateLeaving, m.URL, root)}
	res, err := Get(context.Background(), b.root, testOptions(t, b1.URL, b2.URL))
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, b, res)
	if n := m.requests.Load(); n != 0 {
		t.Errorf("leaving mirror got %d requests", n)
	}
	if res.PerMirror[h.URL] != b.size {
		t.Errorf("per mirror %v", res.PerMirror)
	}
}

// TestHAMTDirectory: a directory big enough to be sharded (HAMT) is walked,
// written and served.
func TestHAMTDirectory(t *testing.T) { inBubble(t, testHAMTDirectory) }

func testHAMTDirectory(t *testing.T) {
	files := map[string][]byte{}
	for i := range 1000 {
		name := fmt.Sprintf("%04d-%s", i, strings.Repeat("n", 240))
		files[name] = []byte(name[:4])
	}
	b := buildBundle(t, files)
	e, err := memDAG(b.blocks).entry(context.Background(), b.root)
	if err != nil || e.kind != upb.Data_HAMTShard {
		t.Fatalf("root is %v (%v), want a HAMT shard: make the test directory bigger", e.kind, err)
	}
	m := newFakeMirror(t, b, honest)
	res, err := Get(context.Background(), b.root, testOptions(t, m.URL))
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, b, res)
	// Shards below the root are small subtrees: each comes in one CAR.
	// (Files linked straight from the root shard are a request each.)
	if res.Requests*3 > res.Blocks {
		t.Errorf("%d requests for %d blocks: subtrees were not fetched whole", res.Requests, res.Blocks)
	}
	t.Logf("%d requests for %d blocks", res.Requests, res.Blocks)
	out := filepath.Join(t.TempDir(), "app")
	if err := res.WriteDir(out); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(out)
	if err != nil || len(ents) != len(files) {
		t.Fatalf("%d entries (%v), want %d", len(ents), err, len(files))
	}
	for name, want := range files {
		if got, err := os.ReadFile(filepath.Join(out, name)); err != nil || string(got) != string(want) {
			t.Fatalf("%s: %q %v", name, got, err)
		}
	}
	srv := newServer(t, res.Handler())
	name := fmt.Sprintf("%04d-%s", 987, strings.Repeat("n", 240))
	resp, err := netOf(t).client(t).Get(srv.URL + "/" + name)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "0987" {
		t.Fatalf("GET /%s: %d %q", name[:8], resp.StatusCode, body)
	}
}

// TestDeadBootstrapDoesNotHoldUp: with one bootstrap blackholed, mirrors
// named by the other are used after a grace period, long before the
// blackholed bootstrap's statement request times out.
func TestDeadBootstrapDoesNotHoldUp(t *testing.T) { inBubble(t, testDeadBootstrapDoesNotHoldUp) }

func testDeadBootstrapDoesNotHoldUp(t *testing.T) {
	b := smallBundle(t)
	dead := newFakeMirror(t, b, blackhole)
	b1 := newFakeMirror(t, b, honest)
	b1.holds = false
	h := newFakeMirror(t, b, honest)
	b1.statements = [][]byte{signed(t, newKey(t), 1, time.Now(), protocol.StateUp, h.URL, b.root.String())}
	o := testOptions(t, dead.URL, b1.URL)
	o.ProbeTimeout = 10 * time.Second // grace: 2 s
	// Without the grace this Get waits 10 s for the dead bootstrap.
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	res, err := Get(ctx, b.root, o)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, b, res)
}

// TestUnderstatedTsize: a DAG whose links understate their subtrees' size
// (another tool's bug, not a mirror's lie) still downloads: the subtree CAR
// runs over its budget, and the blocks are fetched one by one without
// blaming the mirror.
func TestUnderstatedTsize(t *testing.T) { inBubble(t, testUnderstatedTsize) }

func testUnderstatedTsize(t *testing.T) {
	ctx := context.Background()
	ds := &storeDAG{memDAG: memDAG{}}
	lib := unixfs.EmptyDirNode()
	lib.SetCidBuilder(uio.UnixFS_v1_2025.CidBuilder())
	files := map[string][]byte{}
	for i := range 3 {
		data := randomBytes(uint64(20+i), 100<<10)
		leaf, err := mdag.NewRawNodeWPrefix(data, cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1})
		if err != nil {
			t.Fatal(err)
		}
		ds.Add(ctx, leaf)
		name := fmt.Sprintf("f%d.js", i)
		files["lib/"+name] = data
		if err := lib.AddRawLink(name, &ipld.Link{Cid: leaf.Cid(), Size: 1}); err != nil {
			t.Fatal(err)
		}
	}
	ds.Add(ctx, lib)
	root, err := uio.NewDirectory(ds, uio.WithCidBuilder(uio.UnixFS_v1_2025.CidBuilder()))
	if err != nil {
		t.Fatal(err)
	}
	if err := root.AddChild(ctx, "lib", lib); err != nil {
		t.Fatal(err)
	}
	rn, _ := root.GetNode()
	ds.Add(ctx, rn)
	b := &bundle{root: rn.Cid(), blocks: map[cid.Cid][]byte{}, files: files}
	for _, c := range []cid.Cid{rn.Cid(), lib.Cid()} {
		b.blocks[c] = ds.memDAG[c]
	}
	for _, l := range lib.Links() {
		b.blocks[l.Cid] = ds.memDAG[l.Cid]
	}
	for c, d := range b.blocks {
		b.cids = append(b.cids, c)
		b.size += int64(len(d))
	}
	m := newFakeMirror(t, b, honest)
	res, err := Get(ctx, b.root, testOptions(t, m.URL))
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, b, res)
	if len(res.Dropped) != 0 {
		t.Fatalf("dropped %+v", res.Dropped)
	}
}

// readBody reads a declared length into memory of that size and still
// returns what a longer or shorter body really holds.
func TestReadBody(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 1000)
	for _, tc := range []struct {
		name            string
		declared, limit int64
		want            int
		short           bool
	}{
		{"exact", 1000, 2001, 1000, false},
		{"unknown", -1, 2001, 1000, false},
		{"declared short", 600, 2001, 1000, false},
		{"declared long", 1500, 2001, 1000, true},
		{"over limit", 1000, 800, 800, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readBody(bytes.NewReader(body), tc.declared, tc.limit)
			if len(got) != tc.want || !bytes.Equal(got, body[:len(got)]) {
				t.Errorf("%d bytes, want %d", len(got), tc.want)
			}
			if short := errors.Is(err, io.ErrUnexpectedEOF); short != tc.short || (err != nil && !short) {
				t.Errorf("error %v", err)
			}
		})
	}
}
