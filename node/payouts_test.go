package node

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/evidence"
	"github.com/mirrornet/mirrornet/internal/release"
	"github.com/mirrornet/mirrornet/protocol"
)

func payoutsOf(t testing.TB, n *Node) *payoutsFeature {
	t.Helper()
	for _, f := range n.features {
		if pf, ok := f.(*payoutsFeature); ok {
			return pf
		}
	}
	t.Fatal("payouts feature not registered")
	return nil
}

// Two mirrors: a fund handed to one reaches the other; an operator's payout
// address reaches both; a client's receipts are witnessed; closed epochs
// export as evidence CARs; bad input is refused with one line.
func TestPayoutsFeature(t *testing.T) {
	c := newProbeCluster(t, 2, func(i int, _ []peer.ID, cfg *Config) {
		if i == 1 {
			cfg.Payout = map[string]string{"STX": "SP2J6ZY48GV1EZ5V2V5RB9MP66SW86PYKKNRV9EJ7"}
		}
	})
	a, b := c.nodes[0], c.nodes[1]
	c.connect(a, b)
	waitFor(t, 20*time.Second, "both alive", func() (bool, string) { return allSee(c.nodes, alive(c.nodes)) })

	keys, set := maintainers(t, 1, 1)
	relRaw := signRelease(t, release.Params{Name: "demo", Version: 1, CID: "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", Maintainers: set, Time: time.Now()}, keys...)
	for _, n := range c.nodes {
		if _, err := releasesOf(t, n).addRelease(relRaw, false); err != nil {
			t.Fatal(err)
		}
	}
	rel, _ := attest.VerifyRelease(relRaw, time.Now())
	app := rel.Record.App

	now := time.Now()
	fund := protocol.Fund{App: app, Version: 1, Unit: "STX", Budget: 100, Start: now.Add(-150 * time.Second).UnixMilli(), EpochMS: 60_000,
		MinVerified: 500, RedundancyTarget: 3, Weights: protocol.FundWeights{Uptime: 1, Diversity: 1, Traffic: 1},
		KeyCap: 1 << 30, NetworkCap: 1 << 32, Time: now.UnixMilli()}
	fundRaw, err := attest.SignFund(fund, set, keys...)
	if err != nil {
		t.Fatal(err)
	}
	ac, err := DialAdmin(a.cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	// A fund signed by someone else is refused with the reason.
	outsider, _, _ := crypto.GenerateEd25519Key(nil)
	outPub, _ := release.PublicKey(outsider)
	bad, err := attest.SignFund(fund, protocol.MaintainerSet{Keys: []string{outPub}, Threshold: 1}, outsider)
	if err != nil {
		t.Fatal(err)
	}
	if err := ac.Post(context.Background(), "/admin/v1/fund", map[string][]byte{"fund": bad}, nil); err == nil || !strings.Contains(err.Error(), "not a maintainer") {
		t.Fatalf("fund signed by a non-maintainer: %v", err)
	}
	if err := ac.Post(context.Background(), "/admin/v1/fund", map[string][]byte{"fund": fundRaw}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the fund reaches the other mirror", func() (bool, string) {
		_, err := payoutsOf(t, b).k.FundOf(app)
		return err == nil, fmt.Sprint(err)
	})
	waitFor(t, 30*time.Second, "the operator's payout address reaches the other mirror", func() (bool, string) {
		for _, raw := range payoutsOf(t, a).k.Statements() {
			if st, err := attest.Verify(raw, time.Now()); err == nil && st.Kind == attest.KindPayout && st.Signer == b.ID() {
				return true, ""
			}
		}
		return false, "no payout statement from b"
	})

	// A client posts a receipt for b to a: a witnesses it with the
	// client's network and gossips the witness.
	ck, _, _ := crypto.GenerateEd25519Key(nil)
	cid, _ := peer.IDFromPrivateKey(ck)
	rc, err := attest.SignReceipt(ck, protocol.Receipt{Client: cid.String(), Seq: 1, Time: time.Now().UnixMilli(), Mirror: b.ID().String(), CID: rel.Record.CID, Bytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	_ = protocol.WriteFrame(&body, rc)
	_ = protocol.WriteFrame(&body, nil)
	resp, err := http.Post(a.HTTPURL()+protocol.HTTPReceiptsPath, "application/octet-stream", &body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("receipts: %s", resp.Status)
	}
	resp, err = http.Post(a.HTTPURL()+protocol.HTTPReceiptsPath, "application/octet-stream", strings.NewReader("\x05junk!\x00"))
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || bytes.Count(bytes.TrimSpace(msg), []byte("\n")) != 0 {
		t.Fatalf("junk receipts: %s %q", resp.Status, msg)
	}

	// Epoch 0 has closed: its evidence exports and reads back; the open
	// epoch does not export.
	resp, err = http.Get(fmt.Sprintf("%s%s/%s/0", b.HTTPURL(), protocol.HTTPEvidencePath, fund.ID()))
	if err != nil {
		t.Fatal(err)
	}
	m, s, _, err := evidence.ReadCAR(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("evidence CAR: %v", err)
	}
	if m.Fund != fund.ID() || s.Len() < 2 {
		t.Fatalf("evidence of epoch 0: fund %s, %d items", m.Fund, s.Len())
	}
	cur := fund.EpochOf(time.Now().UnixMilli())
	resp, err = http.Get(fmt.Sprintf("%s/api/v1/ledger/%s?epoch=%d", b.HTTPURL(), app, cur))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("ledger of the open epoch: %s, want 409", resp.Status)
	}
	resp, err = http.Get(b.HTTPURL() + "/badge/app/" + app + "/fund.svg")
	if err != nil {
		t.Fatal(err)
	}
	svg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(svg, []byte("100 STX/epoch")) {
		t.Fatalf("fund badge: %s", svg)
	}
}
