package payouts

import (
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/evidence/evidencetest"
	"github.com/mirrornet/mirrornet/internal/probe/probetest"
	"github.com/mirrornet/mirrornet/protocol"
)

type fakeReleases struct{ sc *evidencetest.Scenario }

func (f fakeReleases) Maintainers(app string) (protocol.MaintainerSet, bool) {
	return f.sc.Maintainers, app == f.sc.App
}
func (f fakeReleases) Raw(app string) [][]byte { return [][]byte{f.sc.Release} }

// oneDomain is a mirror's own placer that sees every peer in one /24 (as
// behind a proxy): the ledger must not follow it, only the evidence.
type oneDomain struct{}

func (oneDomain) Domain(peer.ID) string { return "net:127.0.0.0/24" }

func keeper(t *testing.T, sc *evidencetest.Scenario, seed int64) *Keeper {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.New(rand.NewSource(seed)))
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.ProbeEpoch, cfg.K, cfg.Grace = evidencetest.RoundMS*time.Millisecond, 2, time.Minute
	k, err := New(cfg, key, fakeReleases{sc}, oneDomain{})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// feed gives k the scenario's statements in the order of idx.
func feed(t *testing.T, k *Keeper, sc *evidencetest.Scenario, idx []int, now time.Time) {
	t.Helper()
	for _, i := range idx {
		raw := sc.Items[i]
		switch {
		case protocol.IsSignedRelease(raw):
		case protocol.IsSignedRecord(raw):
			if _, err := k.AddFund(raw, now); err != nil {
				t.Fatal(err)
			}
		default:
			st, err := attest.Verify(raw, now)
			if st == nil {
				t.Fatal(err)
			}
			if !k.AddPayout(st) {
				k.Observe(st)
			}
		}
	}
}

func TestKeepersAgreeAndConverge(t *testing.T) {
	sc := evidencetest.Build(t, 5, nil)
	closed := time.UnixMilli(evidencetest.Epoch0 + sc.Fund.EpochMS)
	now := closed.Add(2 * time.Minute)
	all := make([]int, len(sc.Items))
	for i := range all {
		all[i] = i
	}
	rev := make([]int, len(all))
	for i := range rev {
		rev[i] = all[len(all)-1-i]
	}
	a, b := keeper(t, sc, 1), keeper(t, sc, 2)
	feed(t, a, sc, all, now)
	feed(t, b, sc, rev, now)
	if _, _, _, err := a.Export(sc.Fund.ID(), 0, closed.Add(-time.Second)); !errors.Is(err, ErrNotClosed) {
		t.Fatalf("export of an open epoch: %v", err)
	}
	ra, rb := a.Due(now), b.Due(now)
	if len(ra) != 1 || len(rb) != 1 {
		t.Fatalf("due roots: %d and %d, want 1 each", len(ra), len(rb))
	}
	sa, _ := attest.Verify(ra[0], now)
	sb, _ := attest.Verify(rb[0], now)
	if sa.LedgerRoot.Evidence != sb.LedgerRoot.Evidence || sa.LedgerRoot.Table != sb.LedgerRoot.Table {
		t.Fatalf("keepers fed in different orders disagree: %+v vs %+v", sa.LedgerRoot, sb.LedgerRoot)
	}
	if len(a.Due(now)) != 0 {
		t.Fatal("a keeper signed the same evidence twice")
	}

	// A third keeper missed a tenth of the statements: its root differs;
	// when it sees a's root it pulls a's export and converges.
	c := keeper(t, sc, 3)
	var most []int
	for _, i := range all {
		if i < 2 || i%10 != 0 {
			most = append(most, i)
		}
	}
	feed(t, c, sc, most, now)
	rc := c.Due(now)
	sc0, _ := attest.Verify(rc[0], now)
	if sc0.LedgerRoot.Evidence == sa.LedgerRoot.Evidence {
		t.Fatal("missing statements did not change the evidence root")
	}
	if !c.AddRoot(sa) {
		t.Fatal("a root over other evidence was not flagged")
	}
	_, s, _, err := a.Export(sc.Fund.ID(), 0, now)
	if err != nil {
		t.Fatal(err)
	}
	if n := c.Merge(s, now); n == 0 {
		t.Fatal("merge added nothing")
	}
	rc = c.Due(now)
	if len(rc) != 1 {
		t.Fatalf("after merge: %d roots due", len(rc))
	}
	sc1, _ := attest.Verify(rc[0], now)
	if sc1.LedgerRoot.Evidence != sa.LedgerRoot.Evidence || sc1.LedgerRoot.Table != sa.LedgerRoot.Table {
		t.Fatal("after merging, the keeper's root still differs")
	}
	c.AddRoot(sb)
	ag := c.Agreements(sc.Fund.ID(), 0)
	if len(ag) != 1 || ag[0].Mirrors != 3 || ag[0].Table != sa.LedgerRoot.Table {
		t.Fatalf("agreement: %+v", ag)
	}
}

func TestFundRollbackAndUnknownApp(t *testing.T) {
	sc := evidencetest.Build(t, 3, nil)
	k := keeper(t, sc, 1)
	now := time.UnixMilli(evidencetest.Epoch0)
	if _, err := k.AddFund(sc.SignedFund, now); err != nil {
		t.Fatal(err)
	}
	if _, err := k.AddFund(sc.SignedFund, now); !errors.Is(err, ErrRollback) {
		t.Fatalf("same version again: %v", err)
	}
	// A keeper that knows no release of the app cannot check a
	// maintainers' fund: it says so.
	k2 := keeper(t, sc, 2)
	k2.releases = fakeReleases{&evidencetest.Scenario{App: "none"}}
	if _, err := k2.AddFund(sc.SignedFund, now); !errors.Is(err, ErrNoKey) {
		t.Fatalf("fund of an unknown app: %v", err)
	}
}

// Two results of one observer about one target in one probe epoch fill one
// slot: the later (higher seq) wins in whatever order they arrive.
func TestSlotsIndependentOfOrder(t *testing.T) {
	sc := evidencetest.Build(t, 4, nil)
	obs, target := sc.Mirrors[1], sc.Mirrors[0]
	at := evidencetest.Epoch0 + 2000
	mk := func(seq uint64, outcome string) *attest.Statement {
		pr := probetest.Result(t, obs, probetest.Spec{Target: target, Bundle: evidencetest.AppCID, Outcome: outcome,
			At: time.UnixMilli(at), EpochLength: evidencetest.RoundMS * time.Millisecond, Seq: seq, TargetKey: sc.Keys[target]})
		return probetest.Statement(t, sc.Keys[obs], pr, time.UnixMilli(at))
	}
	early, late := mk(1<<40, protocol.OutcomeFail), mk(1<<40+1, protocol.OutcomePass)
	a, b := keeper(t, sc, 1), keeper(t, sc, 2)
	a.Observe(early)
	a.Observe(late)
	b.Observe(late)
	if b.Observe(early) {
		t.Fatal("an earlier result displaced a later one")
	}
	if a.Seen(early.Raw) || !a.Seen(late.Raw) || !b.Seen(late.Raw) {
		t.Fatal("the slot does not hold the latest result")
	}
}

// A keeper that judges each probe round as it closes computes, when the
// epoch closes, the ledger an outsider computes from the export, judging
// only the epoch's last round then.
func TestPrejudgeLeavesOneRoundForTheClose(t *testing.T) {
	sc := evidencetest.Build(t, 6, map[int]string{4: "net:192.0.2.0/24", 5: "net:192.0.2.0/24"})
	k := keeper(t, sc, 1)
	all := make([]int, len(sc.Items))
	for i := range all {
		all[i] = i
	}
	closed := time.UnixMilli(evidencetest.Epoch0 + sc.Fund.EpochMS)
	feed(t, k, sc, all, closed)
	judged := 0
	for r := int64(1); r <= 12; r++ {
		judged += k.Prejudge(time.UnixMilli(evidencetest.Epoch0 + r*evidencetest.RoundMS))
	}
	if judged != 11 || k.RoundsRemembered() != 11 {
		t.Fatalf("judged %d rounds as they closed, %d remembered; want 11 (the last one waits for the next round)", judged, k.RoundsRemembered())
	}
	if k.Prejudge(closed) != 0 {
		t.Fatal("a round was judged twice")
	}
	hits, misses := k.rounds.Hits, k.rounds.Misses
	tab, _, _, err := k.Ledger(sc.Fund.ID(), 0, closed)
	if err != nil {
		t.Fatal(err)
	}
	if k.rounds.Misses-misses != 1 || k.rounds.Hits-hits != 11 {
		t.Fatalf("at the close: %d rounds judged, %d remembered; want 1 and 11", k.rounds.Misses-misses, k.rounds.Hits-hits)
	}
	m, s, _, err := k.Export(sc.Fund.ID(), 0, closed)
	if err != nil {
		t.Fatal(err)
	}
	out, _, _, err := Compute(m, s)
	if err != nil {
		t.Fatal(err)
	}
	if out.Hash() != tab.Hash() || out.Root != tab.Root {
		t.Fatal("the keeper's ledger differs from the outsider's")
	}
	paid := 0
	for _, p := range tab.Payouts {
		if p.Amount > 0 {
			paid++
		}
	}
	if paid < 5 {
		t.Fatalf("%d mirrors paid", paid)
	}
}

// A keeper that keeps its evidence on disk comes back from a restart with
// the same evidence root and ledger; a damaged file loses only what it
// cannot read; pruned rounds leave the disk.
func TestEvidenceSurvivesRestart(t *testing.T) {
	sc := evidencetest.Build(t, 5, nil)
	dir := t.TempDir()
	withDir := func(seed int64) *Keeper {
		k := keeper(t, sc, seed)
		k.cfg.Dir = dir
		return k
	}
	a := withDir(1)
	all := make([]int, len(sc.Items))
	for i := range all {
		all[i] = i
	}
	closed := time.UnixMilli(evidencetest.Epoch0 + sc.Fund.EpochMS)
	feed(t, a, sc, all, closed)
	if err := a.Save(closed); err != nil {
		t.Fatal(err)
	}
	want, _, _, err := a.Ledger(sc.Fund.ID(), 0, closed)
	if err != nil {
		t.Fatal(err)
	}

	b := withDir(1) // the same mirror, restarted
	n, err := b.Load(closed)
	if err != nil || n == 0 {
		t.Fatalf("load: %d statements, %v", n, err)
	}
	got, _, _, err := b.Ledger(sc.Fund.ID(), 0, closed)
	if err != nil {
		t.Fatal(err)
	}
	if got.Root != want.Root || got.Hash() != want.Hash() {
		t.Fatal("the restarted keeper's evidence or ledger differs")
	}
	if b.Refused[RefusedFileDamaged] != 0 {
		t.Fatalf("refused %v", b.Refused)
	}

	// Tear the end off one round's file: the keeper keeps what verifies
	// and says so; the evidence of the other rounds is intact.
	files, _ := filepath.Glob(filepath.Join(dir, "round-*.ev"))
	if len(files) != 12 {
		t.Fatalf("%d round files, want 12", len(files))
	}
	raw, _ := os.ReadFile(files[3])
	if err := os.WriteFile(files[3], raw[:len(raw)*2/3], 0o600); err != nil {
		t.Fatal(err)
	}
	c := withDir(1)
	if _, err := c.Load(closed); err != nil {
		t.Fatal(err)
	}
	if c.Refused[RefusedFileDamaged] != 1 {
		t.Fatalf("damage not reported: %v", c.Refused)
	}
	_, s, _, err := c.Export(sc.Fund.ID(), 0, closed)
	_, full, _, _ := b.Export(sc.Fund.ID(), 0, closed)
	if err != nil || s.Len() >= full.Len() || s.Len() < full.Len()*9/10 {
		t.Fatalf("after a torn file: %d of %d items (%v)", s.Len(), full.Len(), err)
	}

	// Past the retention, the rounds leave memory and disk.
	later := closed.Add(c.cfg.Retention + time.Hour)
	c.Prune(later)
	if err := c.Save(later); err != nil {
		t.Fatal(err)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "round-*.ev")); len(files) != 0 {
		t.Fatalf("%d round files left after pruning", len(files))
	}
}
