package node

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/client"
	"github.com/mirrornet/mirrornet/internal/evidence"
	"github.com/mirrornet/mirrornet/internal/ledger"
	"github.com/mirrornet/mirrornet/internal/payouts"
	"github.com/mirrornet/mirrornet/internal/release"
	"github.com/mirrornet/mirrornet/protocol"
)

// TestLedgerThroughRealFetches runs the whole payout path on three mirrors
// whose HTTP sides are in three /24s (127.0.1.1, 127.0.2.1, 127.0.3.1): they
// hold an app's release and probe each other; the light client fetches the
// release from them (a real Get, blocks verified against their CIDs) and
// posts its signed receipts; the epoch closes, every mirror signs a ledger
// root and all three agree. The table credits each mirror with the bytes
// the client verified from it, places each in the /24 its observers signed
// they reached it at, and pays everyone; the evidence exported over HTTP
// recomputes the same table offline, and the three signed roots name it.
func TestLedgerThroughRealFetches(t *testing.T) { inBubble(t, testLedgerThroughRealFetches) }

func testLedgerThroughRealFetches(t *testing.T) {
	const payTo = "SP2J6ZY48GV1EZ5V2V5RB9MP66SW86PYKKNRV9EJ7"
	c := newProbeCluster(t, 3, func(i int, _ []peer.ID, cfg *Config) {
		cfg.HTTPAddr = fmt.Sprintf("127.0.%d.1:0", i+1)
		cfg.Payout = map[string]string{"STX": payTo}
	})
	c.connectRing(1)
	a, b, d := c.nodes[0], c.nodes[1], c.nodes[2]
	waitFor(t, 20*time.Second, "all alive", func() (bool, string) { return allSee(c.nodes, alive(c.nodes)) })
	root := publishAndReplicate(t, c, a, b, d)
	waitFor(t, 60*time.Second, "every mirror verified by every mirror", func() (bool, string) { return allVerified(t, c.nodes, c.nodes) })

	keys, set := maintainers(t, 1, 1)
	relRaw := signRelease(t, release.Params{Name: "demo", Version: 1, CID: root.String(), Maintainers: set, Time: time.Now()}, keys...)
	for _, n := range c.nodes {
		if _, err := releasesOf(t, n).addRelease(relRaw, false); err != nil {
			t.Fatal(err)
		}
	}
	rel, _ := attest.VerifyRelease(relRaw, time.Now())
	app := rel.Record.App

	// Epochs of three probe rounds (a minute, the shortest a fund may
	// have: the bubble simulates every second of it), the first starting
	// at the next round.
	roundMS := payoutsOf(t, a).k.Config().ProbeEpoch.Milliseconds()
	now := time.Now()
	start := (now.UnixMilli()/roundMS + 1) * roundMS
	fund := protocol.Fund{App: app, Version: 1, Unit: "STX", Budget: 1000, Start: start, EpochMS: 3 * roundMS,
		MinVerified: 500, RedundancyTarget: 3, Weights: protocol.FundWeights{Uptime: 1, Diversity: 1, Traffic: 1},
		KeyCap: 1 << 30, NetworkCap: 1 << 32, Time: now.UnixMilli()}
	fundRaw, err := attest.SignFund(fund, set, keys...)
	if err != nil {
		t.Fatal(err)
	}
	if err := adminClient(t, a).Post(context.Background(), "/admin/v1/fund", map[string][]byte{"fund": fundRaw}, nil); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.nodes {
		waitFor(t, 30*time.Second, "the fund reaches every mirror", func() (bool, string) {
			_, err := payoutsOf(t, n).k.FundOf(app)
			return err == nil, fmt.Sprint(err)
		})
	}
	waitFor(t, 5*time.Minute, "epoch 0 under way", func() (bool, string) {
		return time.Now().UnixMilli() >= start, "not yet"
	})

	// The light client fetches the release from the mirrors and posts its
	// receipts, as `mirrornet get` does.
	tr := memHTTP.transport()
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	res, err := client.Get(context.Background(), root, client.Options{Bootstrap: []string{a.HTTPURL()}, HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	key, err := client.LoadClientKey(filepath.Join(t.TempDir(), "client.key"))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := client.SendReceipts(context.Background(), res, client.ReceiptOptions{Key: key, HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Receipts) == 0 || len(rep.Witnesses) < 2 {
		t.Fatalf("%d receipts, witnessed by %v (refused %v)", len(rep.Receipts), rep.Witnesses, rep.Refused)
	}
	served := map[string]uint64{} // peer ID → verified bytes
	var total uint64
	for url, n := range res.PerMirror {
		if n > 0 {
			served[res.Peers[url]] += uint64(n)
			total += uint64(n)
		}
	}
	if total != uint64(res.Bytes) || len(served) == 0 {
		t.Fatalf("fetch credited %v of %d bytes", res.PerMirror, res.Bytes)
	}
	t.Logf("fetched %d bytes from %d mirror(s), receipts witnessed by %d", res.Bytes, len(served), len(rep.Witnesses))

	// After the epoch and its grace, every mirror signs a ledger root, and
	// all three sign the same table over the same evidence.
	var tab *ledger.Table
	waitFor(t, 10*time.Minute, "three mirrors agree on epoch 0", func() (bool, string) {
		ag := payoutsOf(t, a).k.Agreements(fund.ID(), 0)
		if len(ag) != 1 || ag[0].Mirrors != 3 {
			return false, fmt.Sprintf("agreements %+v", ag)
		}
		tab = payoutsOf(t, a).k.LastTable(fund.ID())
		return tab != nil && tab.Hash() == ag[0].Table, "table not computed yet"
	})
	// The signers are counted in the domains the evidence places them in
	// (the mirror's own placer sees one /24: mocknet's 127.0.0.1).
	if ag := payoutsOf(t, a).k.Agreements(fund.ID(), 0); ag[0].Domains != 3 {
		t.Errorf("agreement %+v: want 3 mirrors in 3 domains", ag[0])
	}
	var paid uint64
	for i, n := range c.nodes {
		var line *ledger.Payout
		for j := range tab.Payouts {
			if tab.Payouts[j].PeerID == n.ID().String() {
				line = &tab.Payouts[j]
			}
		}
		if line == nil {
			t.Fatalf("mirror %d has no line: %+v", i, tab.Payouts)
		}
		if want := fmt.Sprintf("net:127.0.%d.0/24", i+1); line.Domain != want {
			t.Errorf("mirror %d placed in %q, observed in %s", i, line.Domain, want)
		}
		if line.TrafficBytes != served[n.ID().String()] {
			t.Errorf("mirror %d: %d traffic bytes counted, the client verified %d from it", i, line.TrafficBytes, served[n.ID().String()])
		}
		if line.Amount == 0 || line.Address != payTo {
			t.Errorf("mirror %d: %+v", i, *line)
		}
		paid += line.Amount
	}
	if paid != fund.Budget {
		t.Errorf("paid %d of %d", paid, fund.Budget)
	}

	// Anyone with the exported evidence recomputes the table the mirrors
	// signed.
	url := fmt.Sprintf("%s%s/%s/0", b.HTTPURL(), protocol.HTTPEvidencePath, fund.ID())
	resp, body := probeGet(t, url, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	m, s, roots, err := evidence.ReadCAR(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	out, _, _, err := payouts.Compute(*m, s)
	if err != nil {
		t.Fatal(err)
	}
	if out.Hash() != tab.Hash() {
		t.Fatalf("the exported evidence gives table %s, the mirrors signed %s", out.Hash(), tab.Hash())
	}
	signed := 0
	for _, raw := range roots {
		st, err := attest.Verify(raw, time.Now())
		if err != nil || st.Kind != attest.KindLedgerRoot {
			t.Fatalf("ledger root in the CAR: %v", err)
		}
		if st.LedgerRoot.Table == out.Hash() && st.LedgerRoot.Evidence == s.Root() {
			signed++
		}
	}
	if signed != 3 {
		t.Errorf("%d of the CAR's %d ledger roots name the recomputed table", signed, len(roots))
	}
}
