package adversary_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/release"
	"github.com/mirrornet/mirrornet/node"
	"github.com/mirrornet/mirrornet/protocol"
)

// publishOn gossips raw on topic (joined on first use) once a peer is
// subscribed to it.
func (g *rawGossip) publishOn(t testing.TB, topic string, raw []byte) {
	t.Helper()
	g.mu.Lock()
	if g.extra == nil {
		g.extra = map[string]*pubsub.Topic{}
	}
	top := g.extra[topic]
	if top == nil {
		var err error
		if top, err = g.ps.Join(topic); err != nil {
			g.mu.Unlock()
			t.Fatal(err)
		}
		// Subscribed, so that a mesh forms and readiness can be met.
		sub, err := top.Subscribe()
		if err != nil {
			g.mu.Unlock()
			t.Fatal(err)
		}
		t.Cleanup(sub.Cancel)
		g.extra[topic] = top
	}
	g.mu.Unlock()
	if err := top.Publish(ctxFor(t, time.Minute), raw, pubsub.WithReadiness(g.ready)); err != nil {
		t.Fatal(err)
	}
}

func appStatus(t testing.TB, base, app string) (node.AppStatus, string) {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/app/" + app)
	if err != nil {
		return node.AppStatus{}, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var st node.AppStatus
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &st) != nil {
		return node.AppStatus{}, string(b)
	}
	return st, string(b)
}

func badgeMessage(t testing.TB, base, app string) string {
	t.Helper()
	resp, err := http.Get(base + "/badge/app/" + app + "/integrity.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b struct{ Message string }
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
		t.Fatal(err)
	}
	return b.Message
}

// waitUntil polls cond until it holds; the deadline only guards against a
// hang.
func waitUntil(t testing.TB, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %s", what, within, detail)
		}
		<-tick.C
	}
}

func signBuild(t testing.TB, key crypto.PrivKey, app string, version uint64, cid string, seq uint64) []byte {
	t.Helper()
	pub, _ := release.PublicKey(key)
	raw, err := attest.SignBuild(key, protocol.BuildAttestation{Builder: pub, Seq: seq, Time: time.Now().UnixMilli(),
		App: app, Version: version, Build: "make", CID: cid})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// Keys the release does not declare as builders — a hundred fresh ones, and
// the maintainer itself — can neither turn the integrity badge green nor
// red, take no slot, and are counted as unlisted; the declared builder's
// one attestation turns it green.
func TestBuildersOnlyDeclaredKeysMoveTheBadge(t *testing.T) {
	const (
		cidGood = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
		cidEvil = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
		flood   = 100
	)
	mn := mocknet.New()
	t.Cleanup(func() { mn.Close() })
	v := newVictim(t, mn, nil, "127.0.0.1:0", nil)
	ah, _ := newHost(t, mn)
	attacker := newRawGossip(t, ah)
	if _, err := mn.ConnectPeers(ah.ID(), v.ID()); err != nil {
		t.Fatal(err)
	}

	mk, _, _ := crypto.GenerateEd25519Key(nil)
	bk, _, _ := crypto.GenerateEd25519Key(nil)
	mpub, _ := release.PublicKey(mk)
	bpub, _ := release.PublicKey(bk)
	p := release.Params{Name: "guarded", Version: 1, CID: cidGood, Time: time.Now(),
		Maintainers: protocol.MaintainerSet{Keys: []string{mpub}, Threshold: 1},
		Builders:    &protocol.MaintainerSet{Keys: []string{bpub}, Threshold: 1}}
	relRaw, err := release.Sign(p, mk)
	if err != nil {
		t.Fatal(err)
	}
	app := protocol.DeriveAppID("guarded", p.Maintainers)
	attacker.publishOn(t, protocol.TopicRelease, relRaw)
	base := v.HTTPURL()
	waitUntil(t, 30*time.Second, "release known", func() (bool, string) {
		st, detail := appStatus(t, base, app)
		return st.App == app, detail
	})

	// Strangers attest the right CID (to turn it green) and a wrong one
	// (to turn it red); the maintainer, not a declared builder, too.
	// One at a time, each judged before the next: gossipsub drops what
	// overflows its queues, and every one should be judged.
	judged := func(n int) {
		t.Helper()
		waitUntil(t, time.Minute, fmt.Sprintf("%d unlisted attestations judged", n), func() (bool, string) {
			st, detail := appStatus(t, base, app)
			return st.Unlisted >= n, detail
		})
	}
	for i := range flood {
		sk, _, _ := crypto.GenerateEd25519Key(nil)
		cid := cidGood
		if i%2 == 1 {
			cid = cidEvil
		}
		attacker.publishOn(t, protocol.TopicBuild, signBuild(t, sk, app, 1, cid, 1))
		judged(i + 1)
	}
	attacker.publishOn(t, protocol.TopicBuild, signBuild(t, mk, app, 1, cidEvil, 1))
	judged(flood + 1)
	st, _ := appStatus(t, base, app)
	if st.Integrity != "unverified" || len(st.Builders) != 0 || len(st.Divergent) != 0 {
		t.Fatalf("after %d unlisted attestations: integrity %q, builders %v, divergent %v", flood+1, st.Integrity, st.Builders, st.Divergent)
	}
	if msg := badgeMessage(t, base, app); msg != "unverified" {
		t.Fatalf("badge after unlisted attestations: %q", msg)
	}
	// The refusal is counted after the attestation is recorded as
	// unlisted: wait for the count, do not race it.
	waitUntil(t, time.Minute, "unlisted-builder refusals counted", func() (bool, string) {
		got := v.refusals(t)["unlisted_builder"]
		return got >= flood+1, fmt.Sprintf("metrics count %v unlisted-builder refusals, want %d", got, flood+1)
	})

	// The declared builder's attestation is the one that counts.
	attacker.publishOn(t, protocol.TopicBuild, signBuild(t, bk, app, 1, cidGood, 1))
	waitUntil(t, 30*time.Second, "declared builder counted", func() (bool, string) {
		st, detail := appStatus(t, base, app)
		return st.Integrity == "verified", detail
	})
	// And a stranger still cannot turn it red.
	sk, _, _ := crypto.GenerateEd25519Key(nil)
	attacker.publishOn(t, protocol.TopicBuild, signBuild(t, sk, app, 1, cidEvil, 1))
	judged(flood + 2)
	if msg := badgeMessage(t, base, app); msg != "verified · 1 builder" {
		t.Fatalf("badge: %q, want %q", msg, "verified · 1 builder")
	}
	t.Logf("%d unlisted attestations ignored; the declared builder's one counted", flood+2)
}
