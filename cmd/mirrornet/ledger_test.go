package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/evidence"
	"github.com/mirrornet/mirrornet/internal/evidence/evidencetest"
	"github.com/mirrornet/mirrornet/internal/ledger"
	"github.com/mirrornet/mirrornet/internal/payouts"
	"github.com/mirrornet/mirrornet/protocol"
)

// writeEvidence exports a scenario's evidence with ledger roots signed by
// the first `signers` mirrors over the given evidence set, and returns the
// CAR's path.
func writeEvidence(t *testing.T, sc *evidencetest.Scenario, items [][]byte, rootOver *evidence.Set, signers int) (string, *ledger.Table) {
	t.Helper()
	m := evidence.Manifest{App: sc.App, Fund: sc.Fund.ID(), Epoch: 0, ProbeEpochMS: evidencetest.RoundMS, K: 2}
	s := evidence.NewSet()
	for _, raw := range items {
		s.Add(raw)
	}
	tab, _, _, err := payouts.Compute(m, rootOver)
	if err != nil {
		t.Fatal(err)
	}
	var roots [][]byte
	for i := range signers {
		id := sc.Mirrors[i]
		raw, err := attest.SignLedgerRoot(sc.Keys[id], protocol.LedgerRoot{Peer: id.String(), Seq: 1, Time: evidencetest.Epoch0 + sc.Fund.EpochMS + 1000,
			App: sc.App, Fund: sc.Fund.ID(), Epoch: 0, Evidence: rootOver.Root(), Table: tab.Hash()})
		if err != nil {
			t.Fatal(err)
		}
		roots = append(roots, raw)
	}
	var buf bytes.Buffer
	if err := evidence.WriteCAR(&buf, m, s, roots); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "evidence.car")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, tab
}

func TestLedgerVerifyAndOutputs(t *testing.T) {
	sc := evidencetest.Build(t, 5, nil)
	all := evidence.NewSet()
	for _, raw := range sc.Items {
		all.Add(raw)
	}
	car, tab := writeEvidence(t, sc, sc.Items, all, 3)

	out, _, err := runInProcess(t, "ledger", "verify", car)
	if err != nil {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	if !strings.Contains(out, "3 mirror(s) in 3 domain(s) signed it") {
		t.Errorf("verify output: %s", out)
	}

	// The JSON contract.
	out, _, err = runInProcess(t, "ledger", "--evidence", car, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"app", "epoch", "unit", "budget", "root", "payouts"} {
		if _, ok := got[k]; !ok {
			t.Errorf("ledger --json lacks %q", k)
		}
	}
	line := got["payouts"].([]any)[0].(map[string]any)
	for _, k := range []string{"peer_id", "address", "amount", "domain", "uptime", "diversity", "traffic"} {
		if _, ok := line[k]; !ok {
			t.Errorf("payout line lacks %q", k)
		}
	}
	var again ledger.Table
	if err := json.Unmarshal([]byte(out), &again); err != nil || again.Hash() != tab.Hash() {
		t.Errorf("printed table is not the computed one (%v)", err)
	}

	// The batch sums to the budget; the CSV has a row per mirror.
	out, _, err = runInProcess(t, "ledger", "--evidence", car, "--batch")
	if err != nil {
		t.Fatal(err)
	}
	var batch []ledger.BatchItem
	if err := json.Unmarshal([]byte(out), &batch); err != nil {
		t.Fatal(err)
	}
	var sum uint64
	for _, b := range batch {
		sum += b.Amount
		if b.Unit != "STX" || b.Address == "" {
			t.Errorf("batch item %+v", b)
		}
	}
	if sum != sc.Fund.Budget {
		t.Errorf("batch sums to %d, budget %d", sum, sc.Fund.Budget)
	}
	out, _, err = runInProcess(t, "ledger", "--evidence", car, "--csv")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(rows) != 1+len(sc.Mirrors) {
		t.Errorf("csv: %d rows (%v), want header + %d", len(rows), err, len(sc.Mirrors))
	}
	out, _, err = runInProcess(t, "ledger", "--evidence", car, "--explain", sc.Mirrors[0].String())
	if err != nil || !strings.Contains(out, "verified in 12 of 12 probe rounds") || !strings.Contains(out, "1 receipt(s)") ||
		!strings.Contains(out, "domain: net:10.0.0.0/24, from the addresses 4 observer(s) signed in probe results") {
		t.Errorf("explain: %v\n%s", err, out)
	}
}

// A CAR whose evidence differs from what the mirrors signed (one probe
// result left out) fails verification.
func TestLedgerVerifyFailsOnAlteredEvidence(t *testing.T) {
	sc := evidencetest.Build(t, 5, nil)
	all := evidence.NewSet()
	for _, raw := range sc.Items {
		all.Add(raw)
	}
	fewer := append([][]byte(nil), sc.Items[:len(sc.Items)-2]...)
	fewer = append(fewer, sc.Items[len(sc.Items)-1])
	car, _ := writeEvidence(t, sc, fewer, all, 3)
	out, _, err := runInProcess(t, "ledger", "verify", car)
	if err == nil || !strings.Contains(err.Error(), "no mirror's signed root matches") {
		t.Fatalf("verify of altered evidence: %v\n%s", err, out)
	}
	if !strings.Contains(out, "3 signed something else") {
		t.Errorf("verify output: %s", out)
	}
}

// One altered item: a probe result re-signed with another outcome makes a
// CAR whose manifest matches its items but whose root no mirror signed, so
// verify fails; a flipped byte fails the import. Each is one line.
func TestLedgerVerifyFailsOnOneAlteredItem(t *testing.T) {
	sc := evidencetest.Build(t, 5, nil)
	all := evidence.NewSet()
	for _, raw := range sc.Items {
		all.Add(raw)
	}
	altered := append([][]byte(nil), sc.Items...)
	done := false
	for i, raw := range altered {
		st, err := attest.Verify(raw, time.UnixMilli(evidencetest.Epoch0+1000))
		if err != nil || st.Kind != attest.KindProbe || done {
			continue
		}
		pr := *st.Probe
		pr.Outcome, pr.Receipts = protocol.OutcomeFail, nil
		if altered[i], err = attest.SignProbe(sc.Keys[st.Signer], pr); err != nil {
			t.Fatal(err)
		}
		done = true
	}
	car, _ := writeEvidence(t, sc, altered, all, 3)
	out, _, err := runInProcess(t, "ledger", "verify", car)
	if err == nil || !strings.Contains(err.Error(), "no mirror's signed root matches") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("verify of an altered item: %v\n%s", err, out)
	}
	good, _ := writeEvidence(t, sc, sc.Items, all, 3)
	raw, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(raw, sc.Items[len(sc.Items)/2])
	raw[at+10] ^= 1
	flipped := filepath.Join(t.TempDir(), "flipped.car")
	if err := os.WriteFile(flipped, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runInProcess(t, "ledger", "verify", flipped); err == nil || !strings.Contains(err.Error(), "malformed evidence CAR") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("verify of a flipped byte: %v", err)
	}
}

func TestLedgerApprove(t *testing.T) {
	sc := evidencetest.Build(t, 4, nil)
	all := evidence.NewSet()
	for _, raw := range sc.Items {
		all.Add(raw)
	}
	car, tab := writeEvidence(t, sc, sc.Items, all, 1)
	keyFile := filepath.Join(t.TempDir(), "maint.key")
	b, err := crypto.MarshalPrivateKey(sc.MaintainerKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "approval.json")
	stdout, _, err := runInProcess(t, "ledger", "approve", "--evidence", car, "--key", keyFile, "-o", out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, "approved: 1 of 1") {
		t.Errorf("approve: %s", stdout)
	}
	raw, _ := os.ReadFile(out)
	a, err := attest.VerifyApproval(raw, sc.Maintainers)
	if err != nil || a.Record.Table != tab.Hash() {
		t.Fatalf("approval: %v %+v", err, a)
	}
}

func TestFundCreateOffline(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "m.key")
	if _, _, err := runInProcess(t, "keygen", key); err != nil {
		t.Fatal(err)
	}
	k, _ := os.ReadFile(key)
	priv, err := crypto.UnmarshalPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := attest.KeyString(priv.GetPublic())
	set := protocol.MaintainerSet{Keys: []string{pub}, Threshold: 1}
	app := protocol.DeriveAppID("demo", set)
	out := filepath.Join(dir, "fund.json")
	stdout, _, err := runInProcess(t, "fund", "create", "--app", app, "--budget", "100 STX", "--epoch", "24h", "--key", key, "--offline", "-o", out)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(out)
	f, err := attest.VerifyFund(raw, set, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if f.Record.Budget != 100 || f.Record.Unit != "STX" || !strings.Contains(stdout, f.Record.ID()) {
		t.Errorf("fund %+v, printed %q", f.Record, stdout)
	}
	for _, bad := range [][]string{
		{"--budget", "100"}, {"--budget", "100 stx"}, {"--min-verified", "2"}, {"--weights", "speed=1"},
	} {
		args := append([]string{"fund", "create", "--app", app, "--budget", "100 STX", "--key", key, "--offline"}, bad...)
		_, _, err := runInProcess(t, args...)
		if err == nil || exitCode(err) != 2 || strings.Contains(err.Error(), "\n") {
			t.Errorf("fund create %v: %v, want a one-line usage error", bad, err)
		}
	}
}
