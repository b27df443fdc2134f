package evidence

import (
	"errors"
	"math/rand"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/evidence/evidencetest"
	"github.com/mirrornet/mirrornet/internal/ledger"
	"github.com/mirrornet/mirrornet/protocol"
)

// forged is a statement sealed by hand, as a forger would: any payload
// under any key.
type forged struct {
	domain, typ string
	payload     []byte
}

func (r *forged) Domain() string                 { return r.domain }
func (r *forged) Codec() []byte                  { return []byte(r.typ) }
func (r *forged) MarshalRecord() ([]byte, error) { return r.payload, nil }
func (r *forged) UnmarshalRecord(b []byte) error { r.payload = b; return nil }

func sealForged(t *testing.T, key crypto.PrivKey, domain, typ string, payload any) []byte {
	t.Helper()
	b, err := protocol.Encode(payload)
	if err != nil {
		t.Fatal(err)
	}
	env, err := record.Seal(&forged{domain, typ, b}, key)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// lines are a table's payouts without its evidence root (which names the
// set, so any added item changes it).
func lines(tab *ledger.Table) string {
	t := *tab
	t.Root = ""
	return t.Hash()
}

// Bad input never changes the ledger, and each rejected item is counted by
// why: a fund of a higher version signed below its threshold (here by a
// key outside the maintainers), a payout address for one mirror signed by
// another's key, receipts for bytes never served (a CID outside the app's
// releases; a peer that was never a mirror). The epoch not yet closed is
// refused by the keeper (package payouts) and the node (409, one line).
func TestBadInputNeverChangesTheLedger(t *testing.T) {
	sc := build(t, 5, nil)
	base := sc.set(allOf(sc.items))
	want := table(t, base, sc.params)
	r := rand.New(rand.NewSource(99))
	other, _, _ := crypto.GenerateEd25519Key(r)
	otherPub, _ := attest.KeyString(other.GetPublic())

	richer := sc.Fund
	richer.Version, richer.Budget = 2, 1_000_000
	belowThreshold, err := attest.SignFund(richer, protocol.MaintainerSet{Keys: []string{otherPub}, Threshold: 1}, other)
	if err != nil {
		t.Fatal(err)
	}
	m0, m1 := sc.mirrors[0], sc.mirrors[1]
	stolen := sealForged(t, sc.Keys[m1], protocol.DomainPayout, protocol.PayloadPayout,
		protocol.PayoutAddress{Peer: m0.String(), Seq: 99, Time: evidencetest.Epoch0, Addresses: map[string]string{"STX": "SPTHIEF"}})
	client, _, _ := crypto.GenerateEd25519Key(r)
	cid, _ := peer.IDFromPrivateKey(client)
	ghost, _, _ := crypto.GenerateEd25519Key(r)
	gid, _ := peer.IDFromPrivateKey(ghost)
	receipt := func(mirror peer.ID, c string) []byte {
		raw, err := attest.SignReceipt(client, protocol.Receipt{Client: cid.String(), Seq: 1, Time: evidencetest.Epoch0 + 60_000, Mirror: mirror.String(), CID: c, Bytes: 1 << 30})
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	witness, err := attest.SignWitness(sc.Keys[m1], protocol.ReceiptWitness{Witness: m1.String(), Seq: 7, Time: evidencetest.Epoch0 + 61_000, Network: "192.0.2.0/24",
		Receipts: [][]byte{receipt(sc.mirrors[2], "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"), receipt(gid, evidencetest.AppCID)}})
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		name, reason string
		raw          []byte
	}{
		{"fund below threshold", DropFundMismatch, belowThreshold},
		{"payout address signed by another key", DropInvalid, stolen},
		{"receipts for bytes never served", DropOtherApp, witness},
	} {
		s := sc.set(allOf(sc.items))
		s.Add(bad.raw)
		in, rep, err := Derive(s, sc.params)
		if err != nil {
			t.Fatalf("%s: %v", bad.name, err)
		}
		got, err := ledger.Compute(in)
		if err != nil {
			t.Fatal(err)
		}
		if lines(got) != lines(want) {
			t.Errorf("%s changed the ledger", bad.name)
		}
		if rep.Dropped[bad.reason] == 0 {
			t.Errorf("%s: not counted as %q: %+v", bad.name, bad.reason, rep.Dropped)
		}
	}
	// Without the checks the same items would matter: the stolen address
	// and the richer fund are well formed, and the ghost's receipt names
	// the app's CID.
	if st, err := attest.Verify(stolen, farFuture); !errors.Is(err, attest.ErrSubject) {
		t.Errorf("stolen payout address: %v %+v", err, st)
	}
}

// At the level of signed evidence (judged by the probe committees): a
// mirror that attests holding the app every round but fails every probe
// earns 0, and one whose liveness and probes stop halfway through the
// epoch earns about half of an equal peer.
func TestServesNothingAndHalfDownThroughEvidence(t *testing.T) {
	sc := build(t, 6, nil)
	liar, half := sc.mirrors[4].String(), sc.mirrors[5].String()
	mid := evidencetest.Epoch0 + 6*evidencetest.RoundMS
	var items [][]byte
	for _, raw := range sc.items {
		st, err := verifyAny(raw)
		if err != nil {
			items = append(items, raw) // releases and the fund
			continue
		}
		switch {
		case st.Kind == attest.KindProbe && st.Probe.Target == liar:
			pr := *st.Probe
			pr.Outcome, pr.Receipts = protocol.OutcomeFail, nil
			if raw, err = attest.SignProbe(sc.Keys[st.Signer], pr); err != nil {
				t.Fatal(err)
			}
		case st.Time.UnixMilli() >= mid && (st.Kind == attest.KindLiveness && st.Liveness.Peer == half || st.Kind == attest.KindProbe && st.Probe.Target == half):
			continue // down: no liveness, nobody reached it
		}
		items = append(items, raw)
	}
	s := NewSet()
	for _, raw := range items {
		s.Add(raw)
	}
	tab := table(t, s, sc.params)
	by := map[string]ledger.Payout{}
	for _, l := range tab.Payouts {
		by[l.PeerID] = l
	}
	if l := by[liar]; l.Amount != 0 || l.Reason != ledger.ReasonNoEvidence {
		t.Errorf("a mirror that serves nothing: %+v", l)
	}
	full := by[sc.mirrors[3].String()]
	ratio := float64(by[half].Amount) / float64(full.Amount)
	if by[half].VerifiedRounds != 6 || ratio < 0.4 || ratio > 0.6 {
		t.Errorf("down half the epoch: %d rounds, %d against an equal peer's %d (ratio %.2f), want about half", by[half].VerifiedRounds, by[half].Amount, full.Amount, ratio)
	}
}

func allOf(items [][]byte) []int {
	out := make([]int, len(items))
	for i := range out {
		out[i] = i
	}
	return out
}
