package node

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/release"
	"github.com/mirrornet/mirrornet/protocol"
)

// TestReleaseMissedByGossipArrives: a release record and a build
// attestation that gossip never brought to a connected mirror (here: kept
// by the publisher without publishing, as when the publish went out before
// the publisher knew the peer's subscription) reach it by release
// anti-entropy within two pull intervals; afterwards the two exchange only
// a digest per pull. Without anti-entropy nothing would ever send them
// again: the connection is up, so no sync on connect follows.
func TestReleaseMissedByGossipArrives(t *testing.T) { inBubble(t, testReleaseMissedByGossipArrives) }

func testReleaseMissedByGossipArrives(t *testing.T) {
	c := newCluster(t, 2)
	defer closeAtEnd(c)()
	a, b := c.nodes[0], c.nodes[1]
	c.connect(a, b)
	waitFor(t, 20*time.Second, "both alive", func() (bool, string) { return allSee(c.nodes, alive(c.nodes)) })
	interval := c.prof.RefreshMin
	// Each mirror syncs once more when it is first grafted into the
	// other's liveness mesh (internal/catchup), and a sync carries release
	// records: let those syncs finish first, so that only anti-entropy is
	// left to bring what gossip missed.
	waitFor(t, 5*time.Second, "both catch-up syncs queued", func() (bool, string) {
		ca, cb := probeCounter(t, a, "mirrornet_catchup_syncs_total", nil), probeCounter(t, b, "mirrornet_catchup_syncs_total", nil)
		return ca >= 1 && cb >= 1, fmt.Sprintf("A %v, B %v", ca, cb)
	})
	synctest.Wait()

	keys, set := maintainers(t, 1, 1)
	bk, _, _ := crypto.GenerateEd25519Key(nil)
	bid, _ := release.PublicKey(bk)
	root := testRootCID(t)
	relRaw := signRelease(t, release.Params{Name: "missed", Version: 1, CID: root, Maintainers: set, Time: time.Now(),
		Builders: &protocol.MaintainerSet{Keys: []string{bid}, Threshold: 1}}, keys...)
	app := protocol.DeriveAppID("missed", set)
	now := time.Now()
	buildRaw, err := attest.SignBuild(bk, protocol.BuildAttestation{Builder: bid, Seq: uint64(now.UnixMilli()), Time: now.UnixMilli(),
		App: app, Version: 1, Build: "make", CID: root})
	if err != nil {
		t.Fatal(err)
	}
	fa, fb := releasesOf(t, a), releasesOf(t, b)
	if _, err := fa.addRelease(relRaw, false); err != nil {
		t.Fatal(err)
	}
	if err := fa.addBuild(buildRaw, false); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// Each pull waits at most 1.25 intervals; two intervals is the bound
	// with one peer to pull from (virtual time: this is the property, not a
	// timing of it).
	waitFor(t, 2*interval, "B learns the release and the attestation it missed", func() (bool, string) {
		st, err := fb.status(app, 0)
		if err != nil {
			return false, err.Error()
		}
		return st.Integrity == "verified", st.Summary
	})
	t.Logf("learnt after %s (interval %s)", time.Since(start), interval)
	if got := probeCounter(t, b, "mirrornet_release_sync_records_total", nil); got != 2 {
		t.Fatalf("B counts %v records learnt through release sync, want 2", got)
	}
	if got := probeCounter(t, b, "mirrornet_release_sync_pulls_total", map[string]string{"outcome": "learned"}); got < 1 {
		t.Fatalf("B counts %v pulls that learnt something", got)
	}

	// In sync, a pull is one digest each way.
	sameBefore := probeCounter(t, b, "mirrornet_release_sync_pulls_total", map[string]string{"outcome": "same"})
	sentBefore, recvBefore := fb.sync.BytesSent(), fb.sync.BytesReceived()
	waitFor(t, 3*interval, "B pulls again", func() (bool, string) {
		got := probeCounter(t, b, "mirrornet_release_sync_pulls_total", map[string]string{"outcome": "same"})
		return got > sameBefore, fmt.Sprint(got)
	})
	sent, recv := fb.sync.BytesSent()-sentBefore, fb.sync.BytesReceived()-recvBefore
	// B answered A's pulls too (A's digest, an empty frame back).
	if sent > 400 || recv > 400 {
		t.Fatalf("in sync, B sent %d and received %d bytes of release sync over one pull; want about a digest each way", sent, recv)
	}
}

// TestReleasePublishedDuringCutArrives: the real publish path. B drops
// every gossip message from A while A publishes a release (the partition
// is healed at once, so the two never stop seeing each other alive, and
// no new connection, hence no sync on connect, follows). Gossip marks
// the dropped message seen and never offers it again; B gets the record
// at its next release sync pull.
func TestReleasePublishedDuringCutArrives(t *testing.T) {
	inBubble(t, testReleasePublishedDuringCutArrives)
}

func testReleasePublishedDuringCutArrives(t *testing.T) {
	c := newCluster(t, 2)
	defer closeAtEnd(c)()
	a, b := c.nodes[0], c.nodes[1]
	c.connect(a, b)
	waitFor(t, 20*time.Second, "both alive", func() (bool, string) { return allSee(c.nodes, alive(c.nodes)) })
	keys, set := maintainers(t, 1, 1)
	res := publish(t, a, writeTree(t))
	app := protocol.DeriveAppID("cut", set)
	c.setPartition([]*Node{a}, []*Node{b})
	if _, err := submitRelease(t, a, signRelease(t, release.Params{Name: "cut", Version: 1, CID: res.CID, Maintainers: set, Time: time.Now()}, keys...)); err != nil {
		t.Fatal(err)
	}
	// Let gossip deliver (and B drop) the message before healing.
	synctest.Wait()
	c.setPartition()
	fb := releasesOf(t, b)
	waitFor(t, 2*c.prof.RefreshMin, "B learns the release gossip brought it during the cut", func() (bool, string) {
		st, err := fb.status(app, 0)
		if err != nil {
			return false, err.Error()
		}
		return st.Version == 1, st.Summary
	})
}
