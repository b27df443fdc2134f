package payouts

import (
	"testing"
	"time"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/evidence/evidencetest"
)

// feedRaw gives k the statements raws (funds and payouts included).
func feedRaw(t *testing.T, k *Keeper, raws [][]byte, now time.Time) {
	t.Helper()
	sc := &evidencetest.Scenario{Items: raws}
	idx := make([]int, len(raws))
	for i := range idx {
		idx[i] = i
	}
	feed(t, k, sc, idx, now)
}

// TestKeeperHoldingsByDigest: a keeper fed liveness samples that name
// their holdings by digest keeps the holdings statements they name,
// exports them with the samples (a peer merging the export computes the
// same ledger), saves them across a restart, and pays as for samples
// that list their holdings inline.
func TestKeeperHoldingsByDigest(t *testing.T) {
	sc := evidencetest.Build(t, 5, nil)
	closed := time.UnixMilli(evidencetest.Epoch0 + sc.Fund.EpochMS)
	now := closed.Add(2 * time.Minute)
	digested := evidencetest.ByDigest(t, sc, nil)

	inline := keeper(t, sc, 1)
	feedRaw(t, inline, sc.Items, now)
	dir := t.TempDir()
	a := keeper(t, sc, 2)
	a.cfg.Dir = dir
	feedRaw(t, a, digested, now)
	want, _, _, err := inline.Ledger(sc.Fund.ID(), 0, now)
	if err != nil {
		t.Fatal(err)
	}
	got, in, _, err := a.Ledger(sc.Fund.ID(), 0, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range in.Mirrors {
		if !m.HeldRelease {
			t.Fatalf("mirror %s does not hold the release by its holdings statement", m.Peer)
		}
	}
	for i := range want.Payouts {
		if want.Payouts[i].Amount != got.Payouts[i].Amount {
			t.Fatalf("payout %d: %d inline, %d by digest", i, want.Payouts[i].Amount, got.Payouts[i].Amount)
		}
	}

	// The export carries the holdings statements: a keeper that merges it
	// computes the same ledger.
	_, s, _, err := a.Export(sc.Fund.ID(), 0, now)
	if err != nil {
		t.Fatal(err)
	}
	holdings := 0
	for _, raw := range s.Items() {
		if st, _ := attest.Verify(raw, now); st != nil && st.Kind == attest.KindHoldings {
			holdings++
		}
	}
	if holdings != 5 {
		t.Fatalf("export carries %d holdings statements, want 5", holdings)
	}
	c := keeper(t, sc, 3)
	if _, err := c.AddFund(sc.SignedFund, now); err != nil {
		t.Fatal(err)
	}
	c.Merge(s, now)
	if merged, _, _, err := c.Ledger(sc.Fund.ID(), 0, now); err != nil || merged.Hash() != got.Hash() || merged.Root != got.Root {
		t.Fatalf("merged ledger differs (%v)", err)
	}

	// Saved and loaded with the state.
	if err := a.Save(now); err != nil {
		t.Fatal(err)
	}
	b := keeper(t, sc, 2)
	b.cfg.Dir = dir
	if _, err := b.Load(now); err != nil {
		t.Fatal(err)
	}
	if again, _, _, err := b.Ledger(sc.Fund.ID(), 0, now); err != nil || again.Hash() != got.Hash() {
		t.Fatalf("restarted keeper's ledger differs (%v)", err)
	}

	// Once no kept sample names them, they go.
	b.Prune(now.Add(30 * 24 * time.Hour))
	b.mu.Lock()
	left := len(b.held)
	b.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d holdings statements outlived every sample", left)
	}
}
