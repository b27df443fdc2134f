package evidence

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/evidence/evidencetest"
	"github.com/mirrornet/mirrornet/internal/ledger"
	"github.com/mirrornet/mirrornet/protocol"
)

// byDigest is evidencetest.ByDigest for a scenario of this package.
func byDigest(t *testing.T, sc *scenario, without map[int]bool) [][]byte {
	return evidencetest.ByDigest(t, sc.Scenario, without)
}

func deriveItems(t *testing.T, items [][]byte, p Params) (ledger.Input, *Report) {
	t.Helper()
	s := NewSet()
	for _, b := range items {
		s.Add(b)
	}
	in, rep, err := Derive(s, p)
	if err != nil {
		t.Fatal(err)
	}
	return in, rep
}

// TestHoldingsByDigest: liveness samples that name their holdings by
// digest hold what the signed holdings statement in the set lists: the
// ledger pays as it does for samples that list them inline. Without the
// statement (or with a list signed by another key) the mirror holds
// nothing, and the report says why.
func TestHoldingsByDigest(t *testing.T) {
	sc := build(t, 5, nil)
	inline, _ := deriveItems(t, sc.items, sc.params)
	digested, rep := deriveItems(t, byDigest(t, sc, nil), sc.params)
	for i := range inline.Mirrors {
		a, b := inline.Mirrors[i], digested.Mirrors[i]
		if a.Peer != b.Peer || a.HeldRelease != b.HeldRelease || !a.HeldRelease {
			t.Fatalf("mirror %s: inline held %v, by digest %v", a.Peer, a.HeldRelease, b.HeldRelease)
		}
	}
	if rep.Used["holdings"] != 5 || rep.Dropped[DropNoHoldings] != 0 {
		t.Fatalf("report %+v", rep)
	}
	ta, _ := ledger.Compute(inline)
	tb, _ := ledger.Compute(digested)
	for i := range ta.Payouts {
		if ta.Payouts[i].Amount != tb.Payouts[i].Amount {
			ja, _ := json.Marshal(ta.Payouts)
			jb, _ := json.Marshal(tb.Payouts)
			t.Fatalf("payouts differ:\n%s\n%s", ja, jb)
		}
	}

	// Mirror 0's holdings statement missing; another mirror's key signing
	// mirror 0's list does not stand in for it.
	items := byDigest(t, sc, map[int]bool{0: true})
	forged, err := attest.SignHoldings(sc.Keys[sc.mirrors[1]], protocol.Holdings{Peer: sc.mirrors[1].String(), Seq: 2, Time: evidencetest.Epoch0, Bundles: []string{evidencetest.AppCID, "bafyother"}})
	if err != nil {
		t.Fatal(err)
	}
	items = append(items, forged)
	in, rep := deriveItems(t, items, sc.params)
	for _, m := range in.Mirrors {
		if want := m.Peer != sc.mirrors[0].String(); m.HeldRelease != want {
			t.Fatalf("mirror %s held the release: %v, want %v", m.Peer, m.HeldRelease, want)
		}
	}
	if rep.Dropped[DropNoHoldings] == 0 || rep.Dropped[DropUnreferenced] != 1 {
		t.Fatalf("report %+v", rep.Dropped)
	}
	// Deterministic: the same set, another order, the same ledger.
	rev := make([][]byte, len(items))
	for i, b := range items {
		rev[len(items)-1-i] = b
	}
	in2, _ := deriveItems(t, rev, sc.params)
	j1, _ := json.Marshal(in)
	j2, _ := json.Marshal(in2)
	if !bytes.Equal(j1, j2) {
		t.Fatal("ledger input depends on the order of the set")
	}
}
