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

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
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
	waitFor(t, 2*time.Minute, "both alive", func() (bool, string) { return allSee(c.nodes, alive(c.nodes)) })

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
	waitFor(t, 2*time.Minute, "the fund reaches the other mirror", func() (bool, string) {
		_, err := payoutsOf(t, b).k.FundOf(app)
		return err == nil, fmt.Sprint(err)
	})
	waitFor(t, 2*time.Minute, "the operator's payout address reaches the other mirror", func() (bool, string) {
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
	msg, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict || !bytes.Contains(msg, []byte("epoch has not closed yet")) || bytes.Count(bytes.TrimSpace(msg), []byte("\n")) != 0 {
		t.Fatalf("ledger of the open epoch: %s %q, want 409 and one line", resp.Status, msg)
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

// Bad payout statements on the fund topic are refused and counted in
// mirrornet_statements_total{kind="payouts"} by reason: a fund signed by
// one of its two required maintainers (below threshold), a fund of an app
// the mirror does not follow, a payout address older than the one held.
func TestPayoutStatementsRefusedByReason(t *testing.T) {
	c := newProbeCluster(t, 2, nil)
	a, b := c.nodes[0], c.nodes[1]
	keys, set := maintainers(t, 2, 2)
	relRaw := signRelease(t, release.Params{Name: "demo", Version: 1, CID: "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", Maintainers: set, Time: time.Now()}, keys...)
	if _, err := releasesOf(t, b).addRelease(relRaw, false); err != nil {
		t.Fatal(err)
	}
	rel, _ := attest.VerifyRelease(relRaw, time.Now())
	now := time.Now()
	fund := protocol.Fund{App: rel.Record.App, Version: 1, Unit: "STX", Budget: 100, Start: now.UnixMilli(), EpochMS: 60_000,
		MinVerified: 500, RedundancyTarget: 3, Weights: protocol.FundWeights{Uptime: 1, Diversity: 1, Traffic: 1},
		KeyCap: 1 << 30, NetworkCap: 1 << 32, Time: now.UnixMilli()}
	one, err := attest.SignFund(fund, set, keys[0])
	if err != nil {
		t.Fatal(err)
	}
	otherKeys, otherSet := maintainers(t, 1, 1)
	stranger := fund
	stranger.App = protocol.DeriveAppID("unfollowed", otherSet)
	unknown, err := attest.SignFund(stranger, otherSet, otherKeys...)
	if err != nil {
		t.Fatal(err)
	}
	newer, err := attest.SignPayout(a.key, protocol.PayoutAddress{Peer: a.ID().String(), Seq: 2, Time: now.UnixMilli(), Addresses: map[string]string{"STX": "SP2J6ZY48GV1EZ5V2V5RB9MP66SW86PYKKNRV9EJ7"}})
	if err != nil {
		t.Fatal(err)
	}
	older, err := attest.SignPayout(a.key, protocol.PayoutAddress{Peer: a.ID().String(), Seq: 1, Time: now.UnixMilli(), Addresses: map[string]string{"STX": "SP000"}})
	if err != nil {
		t.Fatal(err)
	}
	f := payoutsOf(t, b)
	deliver := func(raw []byte) pubsub.ValidationResult {
		return f.validate(context.Background(), a.ID(), &pubsub.Message{Message: &pb.Message{Data: raw}})
	}
	if v := deliver(newer); v != pubsub.ValidationAccept {
		t.Fatalf("a payout address: %v", v)
	}
	for _, bad := range []struct {
		what, verdict, reason string
		raw                   []byte
		want                  pubsub.ValidationResult
	}{
		{"a fund below threshold", "reject", "below_threshold", one, pubsub.ValidationReject},
		{"a fund of an app not followed", "ignore", "unknown_app", unknown, pubsub.ValidationIgnore},
		{"an older payout address", "ignore", "not_newer", older, pubsub.ValidationIgnore},
	} {
		if v := deliver(bad.raw); v != bad.want {
			t.Errorf("%s: %v, want %v", bad.what, v, bad.want)
		}
		if n := probeCounter(t, b, "mirrornet_statements_total", map[string]string{"kind": "payouts", "verdict": bad.verdict, "reason": bad.reason}); n != 1 {
			t.Errorf("%s: counted %v times as %s/%s", bad.what, n, bad.verdict, bad.reason)
		}
	}
	if _, err := f.k.FundOf(rel.Record.App); err == nil {
		t.Error("the fund below threshold was kept")
	}
	for _, raw := range f.k.Statements() {
		if st, err := attest.Verify(raw, time.Now()); err == nil && st.Kind == attest.KindPayout && st.Signer == a.ID() && st.Seq != 2 {
			t.Errorf("payout address rolled back to seq %d", st.Seq)
		}
	}
}
