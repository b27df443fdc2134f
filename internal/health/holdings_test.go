package health_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/health"
	"github.com/mirrornet/mirrornet/protocol"
)

// signDigest returns a verified liveness statement of s naming the
// holdings set by digest, and the verified holdings statement.
func (s signer) signDigest(t testing.TB, seq uint64, at time.Time, set ...string) (live, held *attest.Statement) {
	t.Helper()
	set = protocol.SortUnique(set)
	raw, err := attest.SignLiveness(s.key, protocol.Liveness{
		Peer: s.id.String(), State: protocol.StateUp, Seq: seq, Time: at.UnixMilli(), Addrs: []string{},
		Holdings: protocol.HoldingsDigest(set), HoldingsCount: len(set), Version: "test", TTL: 30_000,
	})
	if err != nil {
		t.Fatal(err)
	}
	live, err = attest.Verify(raw, at)
	if err != nil {
		t.Fatal(err)
	}
	hraw, err := attest.SignHoldings(s.key, protocol.Holdings{Peer: s.id.String(), Seq: seq, Time: at.UnixMilli(), Bundles: set})
	if err != nil {
		t.Fatal(err)
	}
	held, err = attest.Verify(hraw, at)
	if err != nil {
		t.Fatal(err)
	}
	return live, held
}

func TestHoldingsByDigest(t *testing.T) {
	a, b := newSigner(t, 1), newSigner(t, 2)
	v := health.New(testCfg)
	live, held := a.signDigest(t, 1, t0, "bafyA", "bafyB")
	v.Apply(live, t0)
	m, _ := v.Mirror(a.id, t0)
	if m.Bundles != nil || len(v.Holders("bafyA", t0)) != 0 {
		t.Fatalf("holds %v before its holdings statement arrived", m.Bundles)
	}
	if p := v.Pending(t0); len(p) != 1 || p[0].Peer != a.id.String() || p[0].Digest != live.Liveness.Holdings {
		t.Fatalf("Pending = %v", p)
	}

	// Bad input changes nobody's view: b's set (b is unknown), and a's
	// older set.
	before, bytesBefore := v.Version(), v.Bytes()
	_, bHeld := b.signDigest(t, 1, t0, "bafyA", "bafyB")
	_, aOld := a.signDigest(t, 1, t0, "bafyA")
	for _, st := range []*attest.Statement{bHeld, aOld} {
		if changed, err := v.AddHoldings(st); changed || !errors.Is(err, health.ErrUnwantedHoldings) {
			t.Fatalf("AddHoldings(%s) = %v, %v", st.Signer, changed, err)
		}
	}
	if v.Version() != before || v.Bytes() != bytesBefore {
		t.Fatal("a refused holdings statement changed the view")
	}

	if changed, err := v.AddHoldings(held); !changed || err != nil {
		t.Fatalf("AddHoldings = %v, %v", changed, err)
	}
	m, _ = v.Mirror(a.id, t0)
	if !slices.Equal(m.Bundles, []string{"bafyA", "bafyB"}) || len(v.Holders("bafyB", t0)) != 1 || len(v.Pending(t0)) != 0 {
		t.Fatalf("after holdings: %v, pending %v", m.Bundles, v.Pending(t0))
	}
	if raw, ok := v.Holdings(a.id, live.Liveness.Holdings); !ok || string(raw) != string(held.Raw) {
		t.Fatal("Holdings does not serve the kept statement")
	}
	if changed, _ := v.AddHoldings(held); changed {
		t.Fatal("a duplicate changed the view")
	}

	// A refresh naming the same set keeps it; a new set waits for its
	// statement.
	refresh, _ := a.signDigest(t, 2, t0.Add(time.Second), "bafyA", "bafyB")
	v.Apply(refresh, t0.Add(time.Second))
	if m, _ := v.Mirror(a.id, t0.Add(time.Second)); len(m.Bundles) != 2 {
		t.Fatalf("refresh lost the holdings: %v", m.Bundles)
	}
	next, nextHeld := a.signDigest(t, 3, t0.Add(2*time.Second), "bafyA", "bafyB", "bafyC")
	v.Apply(next, t0.Add(2*time.Second))
	// Until the new list arrives, the old one stands in (no flapping to
	// "holds nothing" at every change), and the new one is pending.
	if m, _ := v.Mirror(a.id, t0.Add(2*time.Second)); len(m.Bundles) != 2 {
		t.Fatalf("while the new list is pending: %v", m.Bundles)
	}
	if p := v.Pending(t0.Add(2 * time.Second)); len(p) != 1 || p[0].Digest != next.Liveness.Holdings {
		t.Fatalf("Pending = %v", p)
	}
	if !v.Wants(protocol.HoldingsRef{Peer: a.id.String(), Digest: next.Liveness.Holdings}) {
		t.Fatal("the new list is not wanted")
	}
	if _, err := v.AddHoldings(held); !errors.Is(err, health.ErrUnwantedHoldings) {
		t.Fatalf("the superseded set was kept: %v", err)
	}
	if _, err := v.AddHoldings(nextHeld); err != nil {
		t.Fatal(err)
	}
	if hs := v.Holders("bafyC", t0.Add(2*time.Second)); len(hs) != 1 || len(v.Pending(t0.Add(2*time.Second))) != 0 {
		t.Fatalf("Holders(bafyC) = %v", hs)
	}
	// Forgetting the mirror frees its holdings.
	v.Prune(t0.Add(24 * time.Hour))
	if v.Bytes() != 0 || len(v.HeldHoldings()) != 0 {
		t.Fatalf("after prune: %d bytes, %d holdings", v.Bytes(), len(v.HeldHoldings()))
	}
}

// TestHoldingsBudget: holdings count against the view's byte budget.
func TestHoldingsBudget(t *testing.T) {
	a := newSigner(t, 1)
	v := health.New(testCfg)
	live, held := a.signDigest(t, 1, t0, "bafyA")
	v.Apply(live, t0)
	v.SetLimits(health.Limits{MaxBytes: v.Bytes() + 10})
	if _, err := v.AddHoldings(held); !errors.Is(err, health.ErrOverBudget) {
		t.Fatalf("AddHoldings over budget = %v", err)
	}
}
