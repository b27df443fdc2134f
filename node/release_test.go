package node

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"

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
	ac, err := DialAdmin(n.cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	var res ReleaseResult
	err = ac.Post(context.Background(), "/admin/v1/release", ReleaseRequest{Release: raw}, &res)
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

func TestFollowerPicksUpNewReleases(t *testing.T) {
	c := newCluster(t, 2)
	c.connectRing(1)
	a, b := c.nodes[0], c.nodes[1]
	waitFor(t, 20*time.Second, "all alive", func() (bool, string) { return allSee(c.nodes, alive(c.nodes)) })
	keys, set := maintainers(t, 2, 2)

	// The follower follows the app before any release exists.
	ac, err := DialAdmin(b.cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	p1 := release.Params{Name: "demo", Version: 1, Maintainers: set, Time: time.Now()}
	app := protocol.DeriveAppID("demo", set)
	if err := ac.Follow(context.Background(), app); err != nil {
		t.Fatal(err)
	}
	// It must keep v1 until v2 is held: record what holds when it drops.
	fb := releasesOf(t, b)
	var droppedEarly, dropped atomic.Bool
	hook := func(old, cur cid.Cid) {
		dropped.Store(true)
		if !b.store.Held(cur) {
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
