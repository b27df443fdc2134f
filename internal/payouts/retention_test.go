package payouts

import (
	"fmt"
	"math/rand"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/evidence/evidencetest"
	"github.com/mirrornet/mirrornet/protocol"
)

// strangerFlood signs, for each of the scenario's 12 probe rounds, one
// liveness statement of each of n throwaway keys (up, claiming the app's
// bundle and an HTTP side): strangers no probe result names. It returns
// them by round (relative to the epoch's first), and the largest.
func strangerFlood(t *testing.T, n int) ([][]*attest.Statement, int) {
	t.Helper()
	r := rand.New(rand.NewSource(7))
	keys := make([]crypto.PrivKey, n)
	ids := make([]peer.ID, n)
	for i := range keys {
		k, _, err := crypto.GenerateEd25519Key(r)
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = k
		ids[i], _ = peer.IDFromPrivateKey(k)
	}
	out := make([][]*attest.Statement, 12)
	biggest := 0
	for round := range 12 {
		at := evidencetest.Epoch0 + int64(round)*evidencetest.RoundMS + 3000
		for i, k := range keys {
			raw, err := attest.SignLiveness(k, protocol.Liveness{Peer: ids[i].String(), State: protocol.StateUp, Seq: uint64(at + int64(i)),
				Time: at + int64(i), Addrs: []string{}, HTTP: fmt.Sprintf("http://198.51.100.%d:8080", i%250+1),
				Bundles: []string{evidencetest.AppCID}, Version: "throwaway"})
			if err != nil {
				t.Fatal(err)
			}
			st, err := attest.Verify(raw, time.UnixMilli(at))
			if err != nil {
				t.Fatal(err)
			}
			out[round] = append(out[round], st)
			biggest = max(biggest, len(raw))
		}
	}
	return out, biggest
}

// A slow, sustained flood of liveness statements from throwaway keys,
// round after round: a keeper keeps strangers' samples only while the
// rounds they cover settle, so what it retains is bounded by the mirrors
// that take part in probes (and a window of a few rounds), not by the
// signers; and keepers fed the same gossip in different orders, with or
// without the flood, close the same evidence root and table.
func TestStrangerLivenessFloodStaysBounded(t *testing.T) {
	const strangers = 300
	sc := evidencetest.Build(t, 5, nil)
	flood, biggest := strangerFlood(t, strangers)

	// The scenario's statements by round (-1: before the epoch).
	byRound := map[int][]*attest.Statement{}
	var setup [][]byte
	for _, raw := range sc.Items {
		if protocol.IsSignedRelease(raw) || protocol.IsSignedRecord(raw) {
			setup = append(setup, raw)
			continue
		}
		st, err := attest.Verify(raw, time.UnixMilli(evidencetest.Epoch0))
		if st == nil {
			t.Fatal(err)
		}
		r := -1
		if at := st.Time.UnixMilli(); at >= evidencetest.Epoch0 {
			r = int((at - evidencetest.Epoch0) / evidencetest.RoundMS)
		}
		byRound[r] = append(byRound[r], st)
	}
	start := time.UnixMilli(evidencetest.Epoch0)
	clean, a, b := keeper(t, sc, 1), keeper(t, sc, 2), keeper(t, sc, 3)
	for _, k := range []*Keeper{clean, a, b} {
		for _, raw := range setup {
			if protocol.IsSignedRecord(raw) {
				if _, err := k.AddFund(raw, start); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, st := range byRound[-1] {
			k.AddPayout(st)
		}
	}
	give := func(k *Keeper, sts []*attest.Statement) {
		for _, st := range sts {
			k.Observe(st)
		}
	}
	reversed := func(sts []*attest.Statement) []*attest.Statement {
		out := slices.Clone(sts)
		slices.Reverse(out)
		return out
	}
	// The window: the rounds not settled yet (the current one and
	// settleRounds before it) may hold every stranger's sample.
	window := int64((settleRounds + 1) * strangers * biggest)
	var peak int64
	for r := range 12 {
		// Mid-round, then the next round's start: probes, samples and
		// the flood arrive, in a different order at a and b.
		give(clean, byRound[r])
		give(a, byRound[r])
		give(a, flood[r])
		give(b, reversed(flood[r]))
		give(b, reversed(byRound[r]))
		now := start.Add(time.Duration(r+1) * evidencetest.RoundMS * time.Millisecond).Add(time.Second)
		for _, k := range []*Keeper{clean, a, b} {
			k.Prune(now)
		}
		extra := a.Bytes() - clean.Bytes()
		peak = max(peak, extra)
		if extra > window {
			t.Fatalf("round %d: the flood holds %d bytes of evidence beyond the honest mirrors' %d (window %d): it grows with the rounds", r, extra, clean.Bytes(), window)
		}
		if a.Bytes() != b.Bytes() {
			t.Fatalf("round %d: keepers fed the same statements in other orders keep %d and %d bytes", r, a.Bytes(), b.Bytes())
		}
	}
	if a.Refused[RefusedUnnamed] == 0 {
		t.Fatal("no stranger's sample was dropped")
	}
	// ... and /metrics says so (payoutsmetrics exports RefusedCounts).
	if got := a.RefusedCounts()[RefusedUnnamed]; got != a.Refused[RefusedUnnamed] {
		t.Fatalf("RefusedCounts()[%q] = %d, want %d", RefusedUnnamed, got, a.Refused[RefusedUnnamed])
	}

	// The epoch closes; after the grace every keeper signs a root.
	closed := time.UnixMilli(evidencetest.Epoch0 + sc.Fund.EpochMS)
	now := closed.Add(2 * time.Minute)
	roots := map[string]string{}
	for name, k := range map[string]*Keeper{"clean": clean, "a": a, "b": b} {
		due := k.Due(now)
		if len(due) != 1 {
			t.Fatalf("%s: %d roots due", name, len(due))
		}
		st, _ := attest.Verify(due[0], now)
		roots[name] = st.LedgerRoot.Evidence + "/" + st.LedgerRoot.Table
	}
	if roots["a"] != roots["b"] || roots["a"] != roots["clean"] {
		t.Fatalf("roots differ: %v", roots)
	}
	_, s, _, err := a.Export(sc.Fund.ID(), 0, now)
	if err != nil {
		t.Fatal(err)
	}
	_, cs, _, _ := clean.Export(sc.Fund.ID(), 0, now)
	if s.Len() != cs.Len() {
		t.Fatalf("the export holds %d items, the honest mirrors' %d", s.Len(), cs.Len())
	}

	// Once the last rounds settle, nothing of the flood is left.
	later := closed.Add(time.Duration(settleRounds+1) * evidencetest.RoundMS * time.Millisecond)
	for _, k := range []*Keeper{clean, a, b} {
		k.Prune(later)
	}
	if a.Bytes() != clean.Bytes() || b.Bytes() != clean.Bytes() {
		t.Fatalf("after the rounds settled: %d and %d bytes kept, the honest mirrors' evidence is %d", a.Bytes(), b.Bytes(), clean.Bytes())
	}
	// A sample that arrives after its rounds settled is refused outright.
	if a.Observe(flood[3][0]) {
		t.Fatal("a settled stranger's sample was kept")
	}
	t.Logf("flood of %d strangers x 12 rounds: peak %d bytes beyond the honest evidence (%d), %d without the rule",
		strangers, peak, clean.Bytes(), int64(12*strangers)*int64(biggest))
}
