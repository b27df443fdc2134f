package attest

import (
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/protocol"
)

func testFund(app string) protocol.Fund {
	return protocol.Fund{
		App: app, Version: 1, Unit: "STX", Budget: 100, Start: t0.UnixMilli(), EpochMS: 24 * 3600 * 1000,
		MinVerified: 500, RedundancyTarget: 5, Weights: protocol.FundWeights{Uptime: 4, Diversity: 4, Traffic: 2},
		KeyCap: 1 << 30, NetworkCap: 4 << 30, Time: t0.UnixMilli(),
	}
}

func TestFundThresholdAndSigners(t *testing.T) {
	keys, names := testKeys(t, 7, 3)
	set := protocol.MaintainerSet{Keys: names, Threshold: 2}
	f := testFund(protocol.DeriveAppID("demo", set))

	one, err := SignFund(f, set, keys[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyFund(one, set, t0); !errors.Is(err, ErrThreshold) || Classify(err) != Reject {
		t.Fatalf("fund below threshold: %v, want Reject-class ErrThreshold", err)
	}
	two, err := CosignRecord(one, KindFund, set, keys[1])
	if err != nil {
		t.Fatal(err)
	}
	got, err := VerifyFund(two, set, t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Signers) != 2 || got.Record.Budget != 100 || got.Record.ID() != protocol.DeriveFundID(f.App, nil) {
		t.Fatalf("verified fund: %+v", got)
	}
	// A key outside the set cannot sign, nor slip a signature in.
	others, _ := testKeys(t, 8, 1)
	if _, err := SignFund(f, set, others[0]); !errors.Is(err, ErrNotSigner) {
		t.Fatalf("outsider signed a fund: %v", err)
	}
	// The same bytes signed as an approval do not verify as a fund.
	if _, err := VerifyApproval(two, set); err == nil {
		t.Fatal("a fund verified as an approval")
	}
	// Future-dated records are Ignore-class.
	if _, err := VerifyFund(two, set, t0.Add(-time.Minute)); !errors.Is(err, ErrFuture) {
		t.Fatalf("future fund: %v", err)
	}
}

func TestBountySignedByFunders(t *testing.T) {
	mkeys, mnames := testKeys(t, 9, 2)
	fkeys, fnames := testKeys(t, 10, 2)
	maint := protocol.MaintainerSet{Keys: mnames, Threshold: 1}
	funders := protocol.MaintainerSet{Keys: fnames, Threshold: 2}
	f := testFund(protocol.DeriveAppID("demo", maint))
	f.Funders = &funders
	if _, err := SignFund(f, maint, mkeys[0]); !errors.Is(err, ErrNotSigner) {
		t.Fatalf("maintainers signed a bounty: %v", err)
	}
	raw, err := SignFund(f, funders, fkeys...)
	if err != nil {
		t.Fatal(err)
	}
	got, err := VerifyFund(raw, maint, t0)
	if err != nil {
		t.Fatal(err)
	}
	if got.Record.ID() == protocol.DeriveFundID(f.App, nil) {
		t.Fatal("a bounty has the maintainers' fund ID")
	}
}

func TestPayoutAndReceiptSubjects(t *testing.T) {
	keys, names := testKeys(t, 11, 2)
	k1 := keys[0]
	id1, id2 := mustID(t, names[0]), mustID(t, names[1])
	p := protocol.PayoutAddress{Peer: id2.String(), Seq: 1, Time: t0.UnixMilli(), Addresses: map[string]string{"STX": "SP2J6ZY48GV1EZ5V2V5RB9MP66SW86PYKKNRV9EJ7"}}
	if _, err := SignPayout(k1, p); err == nil {
		t.Fatal("signed a payout address for another peer")
	}
	p.Peer = id1.String()
	raw, err := SignPayout(k1, p)
	if err != nil {
		t.Fatal(err)
	}
	st, err := Verify(raw, t0)
	if err != nil || st.Kind != KindPayout || st.Payout.Addresses["STX"] == "" {
		t.Fatalf("payout: %v %+v", err, st)
	}
	r := protocol.Receipt{Client: id1.String(), Seq: 1, Time: t0.UnixMilli(), Mirror: id2.String(), CID: "bafyx", Bytes: 1024}
	raw, err = SignReceipt(k1, r)
	if err != nil {
		t.Fatal(err)
	}
	st, err = Verify(raw, t0)
	if err != nil || st.Receipt.Bytes != 1024 || st.Signer != id1 {
		t.Fatalf("receipt: %v %+v", err, st)
	}
	r.Mirror = id1.String()
	if _, err := SignReceipt(k1, r); err == nil {
		t.Fatal("a mirror signed a receipt for itself")
	}
}

func mustID(t *testing.T, s string) peer.ID {
	t.Helper()
	id, err := peer.Decode(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
