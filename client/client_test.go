package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	car "github.com/ipld/go-car/v2"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/protocol"
)

// TestMaliciousTrials: six mirrors, five malicious with different
// behaviours; the seed picks the behaviours and which mirror is honest.
// Every trial must end with exactly the right bytes, every verified byte
// credited to a mirror that sent it, and none to a mirror that never sent a
// right byte. Which of the mirrors that do send right bytes (the honest one,
// or one that sends an honest prefix and is resumed elsewhere) wins a race
// is up to the scheduler and not asserted here; that the honest mirror is
// used when the others fail is TestHonestMirrorCarries.
func TestMaliciousTrials(t *testing.T) { inBubble(t, testMaliciousTrials) }

func testMaliciousTrials(t *testing.T) {
	b := smallBundle(t)
	good := newFakeMirror(t, b, honest)
	bad := map[behaviour]*fakeMirror{}
	for _, how := range malicious {
		bad[how] = newFakeMirror(t, b, how)
	}
	trials := 200
	if testing.Short() {
		trials = 40
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	errs := make(chan error, 4*trials)
	for seed := range trials {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r := mrand.New(mrand.NewPCG(uint64(seed), 42))
			hows := append([]behaviour(nil), malicious...)
			r.Shuffle(len(hows), func(i, j int) { hows[i], hows[j] = hows[j], hows[i] })
			boot := []string{}
			for _, how := range hows[:5] {
				boot = append(boot, bad[how].URL)
			}
			at := r.IntN(6)
			boot = append(boot[:at], append([]string{good.URL}, boot[at:]...)...)
			o := testOptions(t, boot...)
			o.Seed = uint64(seed) + 1
			// A failure guard only: a trial that does not finish is hung.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			res, err := Get(ctx, b.root, o)
			if err != nil {
				errs <- fmt.Errorf("seed %d (%v, honest at %d): %v", seed, hows[:5], at, err)
				return
			}
			if err := checkCredit(res, b, bad[randomData], bad[endless], bad[blackhole]); err != nil {
				errs <- fmt.Errorf("seed %d (%v, honest at %d): %v", seed, hows[:5], at, err)
			}
			if len(res.blocks) != len(b.blocks) {
				errs <- fmt.Errorf("seed %d: %d blocks", seed, len(res.blocks))
				return
			}
			for c, want := range b.blocks {
				if !bytes.Equal(res.blocks[c], want) {
					errs <- fmt.Errorf("seed %d: block %s differs", seed, c)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// checkCredit checks a download's accounting: the verified bytes are the
// bundle's, each is credited to exactly one mirror, and mirrors in never
// (which never send a right byte) get no credit. A subtree CAR's blocks that
// verify before its bad part, and an honest prefix that is resumed
// elsewhere, are credited to the mirror that sent them.
func checkCredit(res *Result, b *bundle, never ...*fakeMirror) error {
	if res.Bytes != b.size {
		return fmt.Errorf("%d verified bytes, want %d", res.Bytes, b.size)
	}
	var sum int64
	for _, n := range res.PerMirror {
		sum += n
	}
	if sum != res.Bytes {
		return fmt.Errorf("credits add up to %d bytes, not the %d verified: %v", sum, res.Bytes, res.PerMirror)
	}
	for _, m := range never {
		if n := res.PerMirror[m.URL]; n > 0 {
			return fmt.Errorf("%d bytes credited to the %s mirror, which never sent a right byte: %v", n, m.how, res.PerMirror)
		}
	}
	return nil
}

// TestHonestMirrorCarries: when every other mirror fails (two of each kind
// that never sends a right byte), the honest mirror delivers the whole
// bundle, wherever it stands in the bootstrap list.
func TestHonestMirrorCarries(t *testing.T) { inBubble(t, testHonestMirrorCarries) }

func testHonestMirrorCarries(t *testing.T) {
	b := smallBundle(t)
	good := newFakeMirror(t, b, honest)
	var bad []*fakeMirror
	for _, how := range []behaviour{randomData, endless, blackhole, randomData, endless} {
		bad = append(bad, newFakeMirror(t, b, how))
	}
	for at := range len(bad) + 1 {
		var boot []string
		for _, m := range bad {
			boot = append(boot, m.URL)
		}
		boot = append(boot[:at], append([]string{good.URL}, boot[at:]...)...)
		o := testOptions(t, boot...)
		o.Seed = uint64(at) + 1
		res, err := Get(context.Background(), b.root, o)
		if err != nil {
			t.Fatalf("honest mirror at %d: %v", at, err)
		}
		checkResult(t, b, res)
		if err := checkCredit(res, b, bad...); err != nil {
			t.Fatalf("honest mirror at %d: %v", at, err)
		}
		if res.PerMirror[good.URL] != b.size {
			t.Fatalf("honest mirror at %d delivered %d of %d bytes: %v", at, res.PerMirror[good.URL], b.size, res.PerMirror)
		}
	}
}

func TestAllMaliciousFailsClosed(t *testing.T) { inBubble(t, testAllMaliciousFailsClosed) }

func testAllMaliciousFailsClosed(t *testing.T) {
	b := smallBundle(t)
	hows := []behaviour{randomData, flipBit, wrongRoot, otherBlock, trickle, blackhole}
	var boot []string
	for _, how := range hows {
		boot = append(boot, newFakeMirror(t, b, how).URL)
	}
	res, err := Get(context.Background(), b.root, testOptions(t, boot...))
	if err == nil {
		t.Fatalf("Get succeeded with only malicious mirrors: %+v", res)
	}
	if !errors.Is(err, ErrNoMirror) {
		t.Fatalf("error %v does not wrap ErrNoMirror", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, b.root.String()) {
		t.Errorf("error does not name the root: %s", msg)
	}
	for i, u := range boot {
		if !strings.Contains(msg, u+": ") {
			t.Errorf("error does not name %s mirror %s: %s", hows[i], u, msg)
		}
	}
	for _, want := range []string{"hash mismatch", "wrong CAR root", "stalled"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not say %q: %s", want, msg)
		}
	}
}

func TestMirrorKilledMidDownload(t *testing.T) { inBubble(t, testMirrorKilledMidDownload) }

func testMirrorKilledMidDownload(t *testing.T) {
	b := buildBundle(t, map[string][]byte{
		"index.html": []byte("hi"),
		"big":        randomBytes(9, 24<<20),
	})
	var ms []*fakeMirror
	var boot []string
	for range 3 {
		m := newFakeMirror(t, b, honest)
		ms = append(ms, m)
		boot = append(boot, m.URL)
	}
	ms[0].killAfter = 700 << 10 // dies in its first leaf
	o := testOptions(t, boot...)
	// Hedges that lose count as duplicates; keep them to real stragglers
	// on a loaded machine.
	o.HedgeDelay, o.HedgeFactor = 2*time.Second, 10
	if testing.Verbose() {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	res, err := Get(context.Background(), b.root, o)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, b, res)
	if !ms[0].dead.Load() {
		t.Fatalf("mirror 0 was never killed (served %d)", ms[0].served.Load())
	}
	if len(res.Dropped) == 0 || res.Dropped[0].Mirror != ms[0].URL {
		t.Errorf("killed mirror not recorded as dropped: %+v", res.Dropped)
	}
	if limit := res.Bytes / 20; res.Duplicate >= limit {
		t.Errorf("duplicate bytes %d >= 5%% of %d", res.Duplicate, res.Bytes)
	}
	t.Logf("duplicate %d of %d bytes, %d requests, per mirror %v", res.Duplicate, res.Bytes, res.Requests, res.PerMirror)
}

// signed makes a liveness statement for key.
func signed(t testing.TB, key crypto.PrivKey, seq uint64, at time.Time, state, url string, bundles ...string) []byte {
	t.Helper()
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := attest.SignLiveness(key, protocol.Liveness{
		Peer: id.String(), State: state, Seq: seq, Time: at.UnixMilli(), HTTP: url,
		Bundles: protocol.SortUnique(bundles), Version: "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func newKey(t testing.TB) crypto.PrivKey {
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestLyingBootstrap: bootstrap L hides the honest mirror H2 and adds
// unsigned and forged statements; bootstrap H1 is honest but does not hold
// the bundle, and its statements name H2. The client must find H2 through
// H1 and never contact the forged mirrors.
func TestLyingBootstrap(t *testing.T) { inBubble(t, testLyingBootstrap) }

func testLyingBootstrap(t *testing.T) {
	b := smallBundle(t)
	now := time.Now()
	root := b.root.String()
	liar := newFakeMirror(t, b, randomData)
	h1 := newFakeMirror(t, b, honest)
	h1.holds = false
	h2 := newFakeMirror(t, b, honest)
	evil := newFakeMirror(t, b, honest) // must never be asked for blocks
	kL, k1, k2, kEvil := newKey(t), newKey(t), newKey(t), newKey(t)

	good2 := signed(t, k2, 10, now, protocol.StateUp, h2.URL, root)
	// The liar's view: itself, an old "leaving" from H2 would be a lie it
	// cannot sign; it can only omit H2. It adds a forged statement (H2's
	// payload re-signed by another key can't verify), a tampered one and
	// an unsigned blob.
	tampered := bytes.Replace(signed(t, kEvil, 5, now, protocol.StateUp, evil.URL+"/x", root), []byte("/x"), []byte("/y"), 1)
	liar.statements = [][]byte{
		signed(t, kL, 3, now, protocol.StateUp, liar.URL, root),
		tampered,
		[]byte("not a statement"),
		forgedAs(t, kEvil, k2, now, evil.URL, root),
	}
	h1.statements = [][]byte{signed(t, k1, 7, now, protocol.StateUp, h1.URL), good2}
	h2.statements = [][]byte{good2}

	res, err := Get(context.Background(), b.root, testOptions(t, liar.URL, h1.URL))
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, b, res)
	if res.PerMirror[h2.URL] != b.size {
		t.Errorf("H2 delivered %d of %d bytes: %v", res.PerMirror[h2.URL], b.size, res.PerMirror)
	}
	if n := evil.requests.Load(); n != 0 {
		t.Errorf("forged mirror got %d requests", n)
	}

	// Without H1 the liar hides H2: fail closed.
	if _, err := Get(context.Background(), b.root, testOptions(t, liar.URL)); !errors.Is(err, ErrNoMirror) {
		t.Fatalf("liar alone: %v", err)
	}
}

// forgedAs builds an envelope signed by signer whose payload claims to be
// from victim.
func forgedAs(t testing.TB, signer, victim crypto.PrivKey, now time.Time, url, root string) []byte {
	t.Helper()
	vid, _ := peer.IDFromPrivateKey(victim)
	if _, err := attest.SignLiveness(signer, protocol.Liveness{Peer: vid.String(), State: protocol.StateUp, Seq: 99, Time: now.UnixMilli(), HTTP: url, Bundles: []string{root}}); err == nil {
		t.Fatal("SignLiveness signed a statement for another peer")
	}
	// attest refuses to sign it; hand-build the closest thing: a valid
	// statement from signer, with the victim's ID spliced into the payload.
	raw := signed(t, signer, 99, now, protocol.StateUp, url, root)
	sid, _ := peer.IDFromPrivateKey(signer)
	return bytes.Replace(raw, []byte(sid.String()), []byte(vid.String()), 1)
}

func TestHealthView(t *testing.T) {
	now := time.Now()
	k1, k2, k3, k4 := newKey(t), newKey(t), newKey(t), newKey(t)
	root := "bafyroot"
	v := newHealthView(0)
	// Highest Seq wins whatever the order of arrival.
	v.add("a", signed(t, k1, 5, now, protocol.StateUp, "http://m1", root), now)
	v.add("b", signed(t, k1, 4, now, protocol.StateLeaving, "http://m1", root), now)
	v.add("a", signed(t, k2, 5, now, protocol.StateUp, "http://m2", root), now)
	v.add("b", signed(t, k2, 6, now, protocol.StateLeaving, "http://m2", root), now)
	// Too old (dead), stale for MaxAge, not listing the root, from the future.
	v.add("a", signed(t, k3, 1, now.Add(-2*time.Minute), protocol.StateUp, "http://m3", root), now)
	v.add("a", signed(t, k4, 1, now.Add(-40*time.Second), protocol.StateUp, "http://m4", root), now)
	v.add("a", signed(t, newKey(t), 1, now, protocol.StateUp, "http://m5", "other"), now)
	if v.add("a", signed(t, newKey(t), 1, now.Add(time.Minute), protocol.StateUp, "http://m6", root), now) {
		t.Error("future statement kept")
	}
	if v.add("a", []byte("junk"), now) || v.rejected["a"] != 2 {
		t.Errorf("rejected = %v", v.rejected)
	}
	var got []string
	for _, c := range v.usable(root, now, 30*time.Second) {
		got = append(got, c.url)
	}
	if want := []string{"http://m1"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("usable = %v, want %v", got, want)
	}
	if s := v.statusOf("http://m2", root, now, 30*time.Second); s != "mirror is leaving" {
		t.Errorf("status m2 = %q", s)
	}
}

func TestWriteDirAndCAR(t *testing.T) {
	b := smallBundle(t)
	m := newFakeMirror(t, b, honest)
	res, err := Get(context.Background(), b.root, testOptions(t, m.URL))
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, b, res)
	tmp := t.TempDir()
	out := filepath.Join(tmp, "app")
	if err := res.WriteDir(out); err != nil {
		t.Fatal(err)
	}
	for p, want := range b.files {
		got, err := os.ReadFile(filepath.Join(out, p))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: %v (%d bytes, want %d)", p, err, len(got), len(want))
		}
	}
	if err := res.WriteDir(out); !errors.Is(err, ErrExists) {
		t.Fatalf("second WriteDir: %v", err)
	}
	// Atomic: a failure midway leaves nothing.
	broken := &Result{Root: res.Root, blocks: map[cid.Cid][]byte{}}
	for c, d := range res.blocks {
		broken.blocks[c] = d
	}
	for c := range broken.blocks {
		if c.Type() == cid.Raw && len(broken.blocks[c]) == 1<<20 {
			delete(broken.blocks, c)
			break
		}
	}
	out2 := filepath.Join(tmp, "partial")
	if err := broken.WriteDir(out2); err == nil {
		t.Fatal("WriteDir with a missing block succeeded")
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 1 {
		t.Fatalf("failed WriteDir left %v", ents)
	}

	carPath := filepath.Join(tmp, "app.car")
	if err := res.WriteCAR(carPath); err != nil {
		t.Fatal(err)
	}
	if err := res.WriteCAR(carPath); !errors.Is(err, ErrExists) {
		t.Fatalf("second WriteCAR: %v", err)
	}
	f, err := os.Open(carPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br, err := car.NewBlockReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if br.Version != 1 || len(br.Roots) != 1 || !br.Roots[0].Equals(b.root) {
		t.Fatalf("CAR v%d roots %v, want v1 [%s]", br.Version, br.Roots, b.root)
	}
	n := 0
	for {
		blk, err := br.Next()
		if err != nil {
			break
		}
		if n == 0 && !blk.Cid().Equals(b.root) {
			t.Fatalf("first block %s is not the root", blk.Cid())
		}
		if !bytes.Equal(blk.RawData(), b.blocks[blk.Cid()]) {
			t.Fatalf("block %s differs", blk.Cid())
		}
		n++
	}
	if n != len(b.blocks) {
		t.Fatalf("CAR holds %d blocks, want %d", n, len(b.blocks))
	}
}

// TestCARFailures checks each verifiedcar failure class on the one-block
// CAR reader.
func TestCARFailures(t *testing.T) {
	b := smallBundle(t)
	m := &fakeMirror{b: b}
	c := b.root
	other := m.otherThan(c)
	good := m.car([]cid.Cid{c}, []cid.Cid{c})
	v2 := append([]byte{0x0a, 0xa1, 0x67, 0x76, 0x65, 0x72, 0x73, 0x69, 0x6f, 0x6e, 0x02}, good...) // CARv2 pragma
	flipped := append([]byte{}, good...)
	flipped[len(flipped)-1] ^= 1
	for _, tc := range []struct {
		name, want string
		body       []byte
	}{
		{"good", "", good},
		{"wrong root", "wrong CAR root", m.car([]cid.Cid{other}, []cid.Cid{c})},
		{"two roots", "roots", m.car([]cid.Cid{c, other}, []cid.Cid{c})},
		{"carv2", "CARv2", v2},
		{"out of order", "unexpected block", m.car([]cid.Cid{c}, []cid.Cid{other, c})},
		{"missing", "missing block", m.car([]cid.Cid{c}, nil)},
		{"extraneous", "extraneous block", m.car([]cid.Cid{c}, []cid.Cid{c, other})},
		{"hash", "hash mismatch", flipped},
		{"truncated", "truncated", good[:len(good)-3]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := readOneBlockCAR(context.Background(), bytes.NewReader(tc.body), c)
			if tc.want == "" {
				if err != nil || !bytes.Equal(data, b.blocks[c]) {
					t.Fatalf("good CAR: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestParseBootstrap(t *testing.T) {
	for _, s := range []string{"http://127.0.0.1:8080", "https://mirror.example/base/", "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf"} {
		if err := ParseBootstrap(s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	for _, s := range []string{"", "127.0.0.1:8080", "ftp://x", "http://", "/ip4/127.0.0.1/tcp/4001", "/bogus", "http://x/?q=1"} {
		if err := ParseBootstrap(s); !errors.Is(err, ErrBootstrap) {
			t.Errorf("%q: %v, want ErrBootstrap", s, err)
		}
	}
}

func TestOptions(t *testing.T) {
	if err := DefaultOptions().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, o := range []Options{{Parallel: -1}, {HedgeFactor: 0.5}, {StallTimeout: -time.Second}} {
		o.Bootstrap = []string{"http://127.0.0.1:1"}
		if _, err := Get(context.Background(), cid.Undef, o); err == nil {
			t.Errorf("%+v: no error", o)
		}
		if err := o.Validate(); !errors.Is(err, ErrOptions) {
			t.Errorf("%+v: %v", o, err)
		}
	}
	if _, err := Get(context.Background(), smallBundle(t).root, Options{}); !errors.Is(err, ErrNoBootstrap) {
		t.Errorf("no bootstrap: %v", err)
	}
}

// TestSubtreeCARFailures: the dag-scope=all reader checks traversal order,
// completeness and extraneous blocks, and keeps what verified before a
// failure.
func TestSubtreeCARFailures(t *testing.T) {
	b := smallBundle(t)
	m := &fakeMirror{b: b}
	var lib cid.Cid
	for c, d := range b.blocks {
		if ls, _ := linksOf(c, d); len(ls) == 2 && c.Type() == cid.DagProtobuf && ls[0].tsize+ls[1].tsize < 100<<10 {
			if e, _ := memDAG(b.blocks).entry(context.Background(), c); e.isDir() {
				lib = c
			}
		}
	}
	if !lib.Defined() {
		t.Fatal("no two-entry directory in the bundle")
	}
	order := b.dfs(lib)
	if len(order) < 3 {
		t.Fatalf("lib/ subtree has %d blocks", len(order))
	}
	other := b.root
	swapped := append([]cid.Cid{}, order...)
	swapped[1], swapped[2] = swapped[2], swapped[1]
	for _, tc := range []struct {
		name, want string
		body       []byte
		good       int // blocks that must come back verified
	}{
		{"good", "", m.car([]cid.Cid{lib}, order), len(order)},
		{"out of order", "unexpected block", m.car([]cid.Cid{lib}, swapped), 1},
		{"missing", "missing block", m.car([]cid.Cid{lib}, order[:len(order)-1]), len(order) - 1},
		{"extraneous", "extraneous block", m.car([]cid.Cid{lib}, append(append([]cid.Cid{}, order...), other)), len(order)},
		{"duplicate", "extraneous block", m.car([]cid.Cid{lib}, append(append([]cid.Cid{}, order...), order[1])), len(order)},
		{"wrong root", "wrong CAR root", m.car([]cid.Cid{other}, order), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			blks, err := readSubtreeCAR(context.Background(), bytes.NewReader(tc.body), lib, 1<<20)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if len(blks) != tc.good {
				t.Fatalf("%d verified blocks, want %d", len(blks), tc.good)
			}
			for i, blk := range blks {
				if !blk.c.Equals(order[i]) || !bytes.Equal(blk.data, b.blocks[blk.c]) {
					t.Fatalf("block %d wrong", i)
				}
			}
		})
	}
	// Over budget: a CAR longer than the subtree it claims.
	if _, err := readSubtreeCAR(context.Background(), bytes.NewReader(m.car([]cid.Cid{lib}, order)), lib, 200); err == nil {
		t.Fatal("CAR over its byte budget accepted")
	}
}

// A mirror refreshes its signed statement at an interval that grows with
// the network and says so in its TTL: the client uses it while the
// signature is within TTL plus MaxAge, and not after, nor a statement
// without a TTL as old.
func TestHealthViewHonoursStatementTTL(t *testing.T) {
	now := time.Now()
	root := "bafyroot"
	ttlSigned := func(k crypto.PrivKey, age, ttl time.Duration, url string) []byte {
		id, _ := peer.IDFromPrivateKey(k)
		raw, err := attest.SignLiveness(k, protocol.Liveness{Peer: id.String(), State: protocol.StateUp, Seq: 1,
			Time: now.Add(-age).UnixMilli(), HTTP: url, Bundles: []string{root}, TTL: ttl.Milliseconds()})
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	v := newHealthView(0)
	v.add("a", ttlSigned(newKey(t), 3*time.Minute, 5*time.Minute, "http://within-ttl"), now)
	v.add("a", ttlSigned(newKey(t), 6*time.Minute, 5*time.Minute, "http://past-ttl"), now)
	v.add("a", ttlSigned(newKey(t), 3*time.Minute, 0, "http://no-ttl"), now)
	var got []string
	for _, c := range v.usable(root, now, 30*time.Second) {
		got = append(got, c.url)
	}
	if want := []string{"http://within-ttl"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("usable = %v, want %v", got, want)
	}
	if s := v.statusOf("http://past-ttl", root, now, 30*time.Second); !strings.Contains(s, "old") {
		t.Errorf("status of a statement past its TTL = %q", s)
	}
}
