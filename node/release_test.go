package node

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	mh "github.com/multiformats/go-multihash"
	dto "github.com/prometheus/client_model/go"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/release"
	"github.com/mirrornet/mirrornet/protocol"
)

func releasesOf(t testing.TB, n *Node) *releaseFeature {
	t.Helper()
	for _, f := range n.features {
		if rf, ok := f.(*releaseFeature); ok {
			return rf
		}
	}
	t.Fatal("releases feature not registered")
	return nil
}

// maintainers makes k maintainer keys and their set with threshold th.
func maintainers(t testing.TB, k, th int) ([]crypto.PrivKey, protocol.MaintainerSet) {
	t.Helper()
	var keys []crypto.PrivKey
	var pubs []string
	for i := 0; i < k; i++ {
		sk, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := release.PublicKey(sk)
		if err != nil {
			t.Fatal(err)
		}
		keys, pubs = append(keys, sk), append(pubs, pub)
	}
	return keys, release.MaintainerSetOf(th, pubs...)
}

func signRelease(t testing.TB, p release.Params, keys ...crypto.PrivKey) []byte {
	t.Helper()
	raw, err := release.Sign(p, keys...)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// submitRelease posts a signed release to n's admin route.
func submitRelease(t testing.TB, n *Node, raw []byte) (ReleaseResult, error) {
	t.Helper()
	ac := adminClient(t, n)
	var res ReleaseResult
	err := ac.Post(context.Background(), "/admin/v1/release", ReleaseRequest{Release: raw}, &res)
	return res, err
}

func followed(n *Node, c cid.Cid) bool {
	for _, b := range n.Bundles() {
		if b.CID == c.String() {
			return true
		}
	}
	return false
}

func currentOf(n *Node, f *releaseFeature, app string) (protocol.Release, release.Status) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.book.Current(app, n.clock())
}

func TestFollowerPicksUpNewReleases(t *testing.T) { inBubble(t, testFollowerPicksUpNewReleases) }

func testFollowerPicksUpNewReleases(t *testing.T) {
	c := newCluster(t, 2)
	defer closeAtEnd(c)()
	c.connectRing(1)
	a, b := c.nodes[0], c.nodes[1]
	waitFor(t, 20*time.Second, "all alive", func() (bool, string) { return allSee(c.nodes, alive(c.nodes)) })
	keys, set := maintainers(t, 2, 2)

	// The follower follows the app before any release exists.
	ac := adminClient(t, b)
	p1 := release.Params{Name: "demo", Version: 1, Maintainers: set, Time: time.Now()}
	app := protocol.DeriveAppID("demo", set)
	if err := ac.Follow(context.Background(), app); err != nil {
		t.Fatal(err)
	}
	// It must keep a held v1 until v2 is held: record what holds when it
	// drops it.
	fb := releasesOf(t, b)
	var droppedEarly, dropped atomic.Bool
	hook := func(old, cur cid.Cid) {
		dropped.Store(true)
		if b.store.Held(old) && !b.store.Held(cur) {
			droppedEarly.Store(true)
		}
	}
	fb.beforeUnfollow.Store(&hook)

	dir1 := writeTree(t)
	v1 := publish(t, a, dir1)
	root1, _ := cid.Decode(v1.CID)
	p1.CID = v1.CID
	res, err := submitRelease(t, a, signRelease(t, p1, keys...))
	if err != nil {
		t.Fatal(err)
	}
	if res.App != app || res.Version != 1 || res.CID != v1.CID {
		t.Fatalf("release result %+v, want %s@1 %s", res, app, v1.CID)
	}
	waitFor(t, 30*time.Second, "follower holds v1 by itself", func() (bool, string) { return holds(b, root1) })

	// v2: a changed page.
	dir2 := writeTree(t)
	if err := os.WriteFile(filepath.Join(dir2, "index.html"), []byte("<!doctype html><title>app v2</title>"), 0o644); err != nil {
		t.Fatal(err)
	}
	v2 := publish(t, a, dir2)
	root2, _ := cid.Decode(v2.CID)
	p2 := release.NextParams(p2rec(t, p1), v2.CID, time.Now())
	p2.App = app
	if _, err := submitRelease(t, a, signRelease(t, p2, keys...)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "follower holds v2", func() (bool, string) { return holds(b, root2) })
	waitFor(t, 10*time.Second, "follower drops v1", func() (bool, string) { return !followed(b, root1), "still follows v1" })
	if !dropped.Load() || droppedEarly.Load() {
		t.Fatalf("v1 dropped=%v, dropped before v2 was held=%v", dropped.Load(), droppedEarly.Load())
	}
	// The publishing mirror also moves on to v2.
	waitFor(t, 10*time.Second, "origin drops v1", func() (bool, string) { return !followed(a, root1), "still follows v1" })

	// A rollback record (version 1 again, another CID, properly signed) is
	// ignored and Current stays v2.
	rb := p1
	rb.CID = v2.CID
	rb.Time = time.Now()
	rbRaw := signRelease(t, rb, keys...)
	if got := fb.validateRelease(context.Background(), a.ID(), &pubsub.Message{Message: &pb.Message{Data: rbRaw}}); got != pubsub.ValidationIgnore {
		t.Fatalf("rollback record: validator says %v, want ignore", got)
	}
	var m dto.Metric
	if err := b.metrics.statements.WithLabelValues("release", "ignore", "rollback").Write(&m); err != nil || m.GetCounter().GetValue() < 1 {
		t.Fatalf("rollback not counted in mirrornet_statements_total (%v)", err)
	}
	if _, err := submitRelease(t, a, rbRaw); err == nil || !strings.Contains(err.Error(), "rollback") {
		t.Fatalf("admin route on a rollback: %v, want a rollback error", err)
	}
	// A record signed by one of two required maintainers is rejected.
	p3 := release.NextParams(p2rec(t, p2), v2.CID, time.Now())
	if got := fb.validateRelease(context.Background(), a.ID(), &pubsub.Message{Message: &pb.Message{Data: signRelease(t, p3, keys[0])}}); got != pubsub.ValidationReject {
		t.Fatalf("under-signed record: validator says %v, want reject", got)
	}
	for _, n := range []*Node{a, b} {
		if cur, st := currentOf(n, releasesOf(t, n), app); cur.Version != 2 || st != release.StatusCurrent {
			t.Fatalf("%s: current %d %s, want 2 current", n.ID().ShortString(), cur.Version, st)
		}
	}

	// Persisted: the book and the followed apps survive in the data dir.
	book, _, err := release.LoadFile(filepath.Join(b.cfg.DataDir, releaseBookFile), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if cur, _ := book.Current(app, time.Now()); cur.Version != 2 {
		t.Fatalf("saved book has version %d, want 2", cur.Version)
	}
	if raw, err := os.ReadFile(filepath.Join(b.cfg.DataDir, appsFile)); err != nil || !strings.Contains(string(raw), app) {
		t.Fatalf("apps.json: %v %s", err, raw)
	}

	// The app route reports the release, its holders and no builders yet.
	fa := releasesOf(t, a)
	st, err := fa.status(app, 0)
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != 2 || st.CID != v2.CID || st.Status != "current" || st.Integrity != "unverified" || !st.Held {
		t.Fatalf("status %+v", st)
	}
	waitFor(t, 10*time.Second, "both mirrors listed as holders", func() (bool, string) {
		st, _ := fa.status(app, 0)
		return len(st.Holders) == 2, strings.Join(st.Holders, " ")
	})
	if _, err := fa.status(protocol.DeriveAppID("nope", set), 0); !errors.Is(err, ErrUnknownApp) || statusCode(err) != http.StatusNotFound {
		t.Fatalf("unknown app: %v", err)
	}
}

func p2rec(t testing.TB, p release.Params) protocol.Release {
	t.Helper()
	r, err := p.Record()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// closeAtEnd closes the cluster's nodes when the test function returns,
// before t.TempDir's cleanup removes their data directories.
func closeAtEnd(c *cluster) func() {
	return func() {
		for _, n := range c.nodes {
			n.Close()
		}
	}
}

func msgOf(raw []byte) *pubsub.Message { return &pubsub.Message{Message: &pb.Message{Data: raw}} }

// TestLateJoinerSyncsReleasesAndBuilds: records and attestations reach a
// mirror that joins after they were gossiped, through sync alone, and the
// statements stream carries them for light clients.
func TestLateJoinerSyncsReleasesAndBuilds(t *testing.T) {
	inBubble(t, testLateJoinerSyncsReleasesAndBuilds)
}

func testLateJoinerSyncsReleasesAndBuilds(t *testing.T) {
	c := newCluster(t, 1)
	defer closeAtEnd(c)()
	a := c.nodes[0]
	keys, set := maintainers(t, 1, 1)
	res := publish(t, a, writeTree(t))
	// A build attestation by the builder the release declares, through
	// the admin route.
	bk, _, _ := crypto.GenerateEd25519Key(nil)
	bid, _ := release.PublicKey(bk)
	p := release.Params{Name: "late", Version: 1, CID: res.CID, Maintainers: set, Time: time.Now(),
		Builders: &protocol.MaintainerSet{Keys: []string{bid}, Threshold: 1}}
	relRaw := signRelease(t, p, keys...)
	if _, err := submitRelease(t, a, relRaw); err != nil {
		t.Fatal(err)
	}
	app := protocol.DeriveAppID("late", set)
	now := time.Now()
	buildRaw, err := attest.SignBuild(bk, protocol.BuildAttestation{Builder: bid, Seq: uint64(now.UnixMilli()), Time: now.UnixMilli(),
		App: app, Version: 1, Build: "make", CID: res.CID})
	if err != nil {
		t.Fatal(err)
	}
	ac := adminClient(t, a)
	if err := ac.Post(context.Background(), "/admin/v1/build", map[string][]byte{"attestation": buildRaw}, nil); err != nil {
		t.Fatal(err)
	}
	// An attestation of a release nobody knows is refused.
	stray, _ := attest.SignBuild(bk, protocol.BuildAttestation{Builder: bid, Seq: uint64(now.UnixMilli()) + 1, Time: now.UnixMilli(),
		App: protocol.DeriveAppID("ghost", set), Version: 1, Build: "make", CID: res.CID})
	if err := ac.Post(context.Background(), "/admin/v1/build", map[string][]byte{"attestation": stray}, nil); err == nil {
		t.Fatal("admin route took an attestation of an unknown release")
	}
	fa := releasesOf(t, a)
	if got := fa.validateBuild(context.Background(), a.ID(), msgOf(stray)); got != pubsub.ValidationIgnore {
		t.Fatalf("stray attestation: %v, want ignore", got)
	}
	if st, _ := fa.status(app, 0); st.Integrity != "verified" || len(st.Builders) != 1 {
		t.Fatalf("origin status after attestation: %+v", st)
	}
	sts := a.statements()
	var haveRel, haveBuild bool
	for _, s := range sts {
		haveRel = haveRel || string(s) == string(relRaw)
		haveBuild = haveBuild || string(s) == string(buildRaw)
	}
	if !haveRel || !haveBuild {
		t.Fatalf("statements carry release %v, build %v", haveRel, haveBuild)
	}

	late := c.add()
	c.connect(late, a)
	fl := releasesOf(t, late)
	waitFor(t, 10*time.Second, "late joiner has the release and the attestation", func() (bool, string) {
		st, err := fl.status(app, 0)
		if err != nil {
			return false, err.Error()
		}
		return st.Integrity == "verified", st.Summary
	})
	// It does not follow the app, so it holds nothing.
	if len(late.Bundles()) != 0 {
		t.Fatalf("a mirror that does not follow the app keeps %v", late.Bundles())
	}
}

// TestReleaseBookIsBounded: records of apps the mirror does not follow stop
// being admitted at MaxUnfollowedApps; followed apps always are.
func TestReleaseBookIsBounded(t *testing.T) {
	c := newCluster(t, 1)
	defer closeAtEnd(c)()
	f := releasesOf(t, c.nodes[0])
	f.mu.Lock()
	f.maxApps, f.maxVersions = 16, 3
	f.mu.Unlock()
	keys, set := maintainers(t, 1, 1)
	cidStr := testRootCID(t)
	signV := func(name string, v uint64) []byte {
		p := release.Params{Name: name, Version: v, CID: cidStr, Maintainers: set, Time: time.Now()}
		if v > 1 {
			p.App = protocol.DeriveAppID(name, set)
		}
		return signRelease(t, p, keys...)
	}
	sign := func(name string) []byte { return signV(name, 1) }
	// Versions of one unfollowed app are bounded too.
	for v := uint64(1); v <= 3; v++ {
		if _, err := f.addRelease(signV("app0", v), false); err != nil {
			t.Fatalf("app0 v%d: %v", v, err)
		}
	}
	if _, err := f.addRelease(signV("app0", 4), false); !errors.Is(err, ErrBookFull) {
		t.Fatalf("version over the limit: %v, want ErrBookFull", err)
	}
	for i := 1; i < 16; i++ {
		if _, err := f.addRelease(sign("app"+strconv.Itoa(i)), false); err != nil {
			t.Fatalf("app %d: %v", i, err)
		}
	}
	over := sign("one-too-many")
	if got := f.validateRelease(context.Background(), c.nodes[0].ID(), msgOf(over)); got != pubsub.ValidationIgnore {
		t.Fatalf("app over the limit: %v, want ignore", got)
	}
	if _, err := f.addRelease(over, false); !errors.Is(err, ErrBookFull) {
		t.Fatalf("app over the limit: %v, want ErrBookFull", err)
	}
	if err := f.followApp(protocol.DeriveAppID("followed", set)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.addRelease(sign("followed"), false); err != nil {
		t.Fatalf("followed app refused: %v", err)
	}
	// The byte bound: with no bytes to spare, a new version is refused.
	f.mu.Lock()
	f.maxApps, f.maxVersions, f.maxBytes = 100, 100, f.unfollowedBytes
	f.mu.Unlock()
	if _, err := f.addRelease(signV("app1", 2), false); !errors.Is(err, ErrBookFull) {
		t.Fatalf("record over the byte limit: %v, want ErrBookFull", err)
	}
}

func testRootCID(t testing.TB) string {
	t.Helper()
	c, err := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}.Sum([]byte("root"))
	if err != nil {
		t.Fatal(err)
	}
	return c.String()
}

// TestReleasesSurviveRestart: the book and the followed apps come back from
// the data directory; unfollow-app drops the app's bundle.
func TestReleasesSurviveRestart(t *testing.T) {
	c := newCluster(t, 1)
	defer closeAtEnd(c)()
	a := c.nodes[0]
	keys, set := maintainers(t, 1, 1)
	res := publish(t, a, writeTree(t))
	root, _ := cid.Decode(res.CID)
	if _, err := submitRelease(t, a, signRelease(t, release.Params{Name: "keep", Version: 1, CID: res.CID, Maintainers: set, Time: time.Now()}, keys...)); err != nil {
		t.Fatal(err)
	}
	app := protocol.DeriveAppID("keep", set)
	dataDir := a.cfg.DataDir
	a.Close()

	sk, _, _ := crypto.GenerateEd25519Key(nil)
	h, err := c.mn.AddPeer(sk, a.host.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.DataDir = dataDir
	b, err := New(cfg, WithHost(h, sk))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	fb := releasesOf(t, b)
	st, err := fb.status(app, 0)
	if err != nil || st.Version != 1 || !st.Followed || !st.Held {
		t.Fatalf("after restart: %+v %v", st, err)
	}
	ac, _ := DialAdmin(dataDir)
	if err := ac.Unfollow(context.Background(), app); err != nil {
		t.Fatal(err)
	}
	if followed(b, root) {
		t.Fatal("unfollow-app kept the app's bundle")
	}
	if st, _ := fb.status(app, 0); st.Followed {
		t.Fatal("app still followed")
	}
}
