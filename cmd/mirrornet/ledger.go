package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/atomicfile"
	"github.com/mirrornet/mirrornet/internal/evidence"
	"github.com/mirrornet/mirrornet/internal/ledger"
	"github.com/mirrornet/mirrornet/internal/payouts"
	"github.com/mirrornet/mirrornet/node"
	"github.com/mirrornet/mirrornet/protocol"
)

const fundSynopsis = `create --app APP-ID --budget "100 STX" --key KEY... [--epoch 24h] [--start RFC3339]
       [--min-verified 0.9] [--redundancy-target 5] [--weights uptime=4,diversity=4,traffic=2]
       [--key-cap 1GiB] [--network-cap 10GiB] [--version N] [--maintainer PUBKEY]... [--threshold T]
       [--bounty] [--funder PUBKEY]... [-o FILE] [--offline] [--data DIR]

Sign a fund record: every epoch, BUDGET is split among the app's mirrors that were verified in
at least --min-verified of the epoch's probe rounds and held the current release, by uptime,
failure-domain diversity and client traffic (see docs/PAYOUTS.md). A maintainers' fund is
signed by a threshold of the app's maintainers (their release keys; the set is read from the
local node, or given with --maintainer/--threshold); --bounty makes a community fund signed by
its own funders (--key plus --funder, --threshold of them). The signed record is written to -o
(if given) and handed to the local node to gossip (unless --offline). Newer --version wins.`

func runFund(ctx context.Context, env *cmdEnv, args []string) error {
	if len(args) == 0 || args[0] != "create" {
		return usageErrorf("fund: want 'mirrornet fund create ...' (run 'mirrornet fund create -h')")
	}
	fs := newFlagSet(env, "fund create", fundSynopsis)
	app := fs.String("app", "", "app ID the fund pays mirrors of")
	budget := fs.String("budget", "", `amount and unit per epoch, e.g. "100 STX"`)
	epochLen := fs.Duration("epoch", 24*time.Hour, "epoch length (at least 1m)")
	start := fs.String("start", "", "start of epoch 0, RFC3339 (default: now, to the minute)")
	minVerified := fs.String("min-verified", "0.9", "share of probe rounds a mirror must be verified in: 0.9 or 90%")
	target := fs.Uint("redundancy-target", 5, "independent failure domains the app needs; copies beyond are worth less")
	weights := fs.String("weights", "uptime=4,diversity=4,traffic=2", "relative weights of uptime, diversity and traffic")
	keyCap := fs.String("key-cap", "1GiB", "traffic counted per client key, per mirror and epoch")
	netCap := fs.String("network-cap", "10GiB", "traffic counted per client network (/24, /48), per mirror and epoch")
	version := fs.Uint64("version", 1, "fund version; a newer version replaces the fund")
	var keyFiles, maintainers, funders listFlag
	fs.Var(&keyFiles, "key", "signing key file (repeatable)")
	fs.Var(&maintainers, "maintainer", "public key of a maintainer who does not sign (repeatable)")
	fs.Var(&funders, "funder", "--bounty: public key of a funder who does not sign (repeatable)")
	threshold := fs.Int("threshold", 0, "signatures the signer set needs (default: the number of --key)")
	bounty := fs.Bool("bounty", false, "a community fund signed by its own funders, not the app's maintainers")
	out := fs.String("o", "", "write the signed fund record to FILE")
	offline := fs.Bool("offline", false, "do not hand the fund to the local node")
	data := dataFlag(fs)
	pos, err := parseFlags(fs, env, args[1:])
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("fund create: unexpected argument %q", pos[0])
	}
	if !protocol.IsAppID(*app) {
		return usageErrorf("fund create: --app %q is not an app ID", *app)
	}
	amount, unit, err := parseBudget(*budget)
	if err != nil {
		return usageErrorf("fund create: --budget: %v", err)
	}
	now := time.Now()
	startT := now.Truncate(time.Minute)
	if *start != "" {
		if startT, err = time.Parse(time.RFC3339, *start); err != nil {
			return usageErrorf("fund create: --start %q is not an RFC3339 time", *start)
		}
	}
	permille, err := parseShare(*minVerified)
	if err != nil {
		return usageErrorf("fund create: --min-verified: %v", err)
	}
	w, err := parseWeights(*weights)
	if err != nil {
		return usageErrorf("fund create: --weights: %v", err)
	}
	kc, err := parseBytes(*keyCap)
	if err != nil || kc <= 0 {
		return usageErrorf("fund create: --key-cap %q is not a positive size", *keyCap)
	}
	nc, err := parseBytes(*netCap)
	if err != nil || nc <= 0 {
		return usageErrorf("fund create: --network-cap %q is not a positive size", *netCap)
	}
	if len(keyFiles) == 0 {
		return usageErrorf("fund create: at least one --key is required")
	}
	f := protocol.Fund{App: *app, Version: *version, Unit: unit, Budget: amount, Start: startT.UnixMilli(), EpochMS: epochLen.Milliseconds(),
		MinVerified: permille, RedundancyTarget: uint32(*target), Weights: w, KeyCap: uint64(kc), NetworkCap: uint64(nc), Time: now.UnixMilli()}

	var ac *node.AdminClient
	if !*offline {
		if ac, err = node.DialAdmin(*data); err != nil {
			return fmt.Errorf("fund create: %w (or give --offline -o FILE)", err)
		}
	}
	var raw []byte
	if *bounty {
		keys, set, err := maintainerSet("", keyFiles, funders, *threshold)
		if err != nil {
			return err
		}
		f.Funders = &set
		if raw, err = attest.SignFund(f, set, keys...); err != nil {
			return fmt.Errorf("fund create: %w", err)
		}
	} else {
		if len(funders) > 0 {
			return usageErrorf("fund create: --funder needs --bounty")
		}
		keys, set, err := maintainerSet("", keyFiles, maintainers, *threshold)
		if err != nil {
			return err
		}
		if ac != nil {
			st, err := appStatusFromNode(ctx, ac, *app, 0)
			if err != nil {
				return fmt.Errorf("fund create: %w", err)
			}
			// Sign against the app's real set; the flags only had to name
			// enough keys of it.
			set = st.Maintainers
			if len(keys) < set.Threshold {
				return usageErrorf("fund create: the app's maintainers need %d signatures, %d --key given", set.Threshold, len(keys))
			}
		}
		if raw, err = attest.SignFund(f, set, keys...); err != nil {
			return fmt.Errorf("fund create: %w", err)
		}
	}
	if *out != "" {
		if err := atomicfile.WriteFile(*out, raw, 0o644); err != nil {
			return fmt.Errorf("fund create: %w", err)
		}
	}
	if ac != nil {
		var res struct {
			Fund string `json:"fund"`
		}
		if err := ac.Post(ctx, "/admin/v1/fund", map[string][]byte{"fund": raw}, &res); err != nil {
			return fmt.Errorf("fund create: the node refused the fund: %w", err)
		}
	}
	fmt.Fprintf(env.stdout, "fund %s: %d %s per %s epoch for %s (v%d)\n", f.ID(), f.Budget, f.Unit, *epochLen, f.App, f.Version)
	return nil
}

// parseBudget parses "100 STX" (or "100STX").
func parseBudget(s string) (uint64, string, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	if i <= 0 {
		return 0, "", fmt.Errorf("%q is not AMOUNT UNIT, e.g. \"100 STX\"", s)
	}
	n, err := strconv.ParseUint(s[:i], 10, 64)
	unit := strings.TrimSpace(s[i:])
	if err != nil || n == 0 || !protocol.ValidUnit(unit) {
		return 0, "", fmt.Errorf("%q is not a positive integer amount and a unit of 1-12 capitals, e.g. \"100 STX\"", s)
	}
	return n, unit, nil
}

// parseShare parses "0.9" or "90%" into thousandths.
func parseShare(s string) (uint32, error) {
	pct := strings.HasSuffix(s, "%")
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if pct {
		v /= 100
	}
	if err != nil || v < 0 || v > 1 {
		return 0, fmt.Errorf("%q is not a share between 0 and 1 (or 0%%-100%%)", s)
	}
	return uint32(v*1000 + 0.5), nil
}

func parseWeights(s string) (protocol.FundWeights, error) {
	var w protocol.FundWeights
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if !ok || err != nil {
			return w, fmt.Errorf("%q is not NAME=INTEGER", part)
		}
		switch k {
		case "uptime":
			w.Uptime = uint32(n)
		case "diversity":
			w.Diversity = uint32(n)
		case "traffic":
			w.Traffic = uint32(n)
		default:
			return w, fmt.Errorf("unknown weight %q (uptime, diversity, traffic)", k)
		}
	}
	if w == (protocol.FundWeights{}) {
		return w, errors.New("all weights are zero")
	}
	return w, nil
}

const ledgerSynopsis = `--app APP-ID|--fund FUND-ID --epoch E [--json|--csv|--batch] [--explain PEER-ID] [--evidence FILE] [--data DIR]
       mirrornet ledger verify EVIDENCE.car [--json]
       mirrornet ledger approve --evidence EVIDENCE.car --key KEY... [--approval FILE] [-o FILE]

Compute the payout table of a closed fund epoch from its evidence (the local node's, or an
exported --evidence CAR): address, amount and why, for every mirror. --json prints the
contract {"app","epoch","unit","budget","root","payouts":[...]}, --csv a spreadsheet, --batch
the transfers [{"address","amount","unit"}] for a multisig or contract, --explain every input
behind one line. 'verify' recomputes the ledger offline from an evidence CAR and compares it
with the mirrors' signed ledger roots inside it; it fails when no signed root matches.
'approve' signs the table as one of the fund's signers (k-of-n; pass --approval to co-sign).`

func runLedger(ctx context.Context, env *cmdEnv, args []string) error {
	if len(args) > 0 && args[0] == "verify" {
		return runLedgerVerify(env, args[1:])
	}
	if len(args) > 0 && args[0] == "approve" {
		return runLedgerApprove(env, args[1:])
	}
	fs := newFlagSet(env, "ledger", ledgerSynopsis)
	app := fs.String("app", "", "app ID (its maintainers' fund)")
	fundID := fs.String("fund", "", "fund ID (a bounty's)")
	epochArg := fs.String("epoch", "", "epoch number")
	asJSON := fs.Bool("json", false, "print the table as JSON")
	asCSV := fs.Bool("csv", false, "print the table as CSV")
	batch := fs.Bool("batch", false, `print the transfers as [{"address","amount","unit"}]`)
	explain := fs.String("explain", "", "print every input behind one peer's line")
	evFile := fs.String("evidence", "", "compute from this evidence CAR instead of the local node's")
	data := dataFlag(fs)
	pos, err := parseFlags(fs, env, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("ledger: unexpected argument %q", pos[0])
	}
	var car []byte
	if *evFile != "" {
		if car, err = os.ReadFile(*evFile); err != nil {
			return fmt.Errorf("ledger: %w", err)
		}
	} else {
		id, epoch, err := fundAndEpoch("ledger", *app, *fundID, *epochArg)
		if err != nil {
			return err
		}
		if car, err = fetchEvidence(ctx, *data, id, epoch); err != nil {
			return fmt.Errorf("ledger: %w", err)
		}
	}
	m, s, _, err := evidence.ReadCAR(bytes.NewReader(car))
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	t, in, _, err := payouts.Compute(*m, s)
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	switch {
	case *explain != "":
		return ledger.Explain(env.stdout, in, t, *explain)
	case *asJSON:
		return t.WriteJSON(env.stdout)
	case *asCSV:
		return t.WriteCSV(env.stdout)
	case *batch:
		return writeJSONLine(env.stdout, t.Batch())
	}
	printTable(env.stdout, t)
	return nil
}

func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func printTable(w io.Writer, t *ledger.Table) {
	fmt.Fprintf(w, "app %s, epoch %d: %d %s over %d probe rounds (evidence %s, table %s)\n", t.App, t.Epoch, t.Budget, t.Unit, t.Rounds, short(t.Root), short(t.Hash()))
	fmt.Fprintf(w, "%-20s %-24s %10s  %-22s %8s %8s %8s  %s\n", "PEER", "ADDRESS", "AMOUNT", "DOMAIN", "UPTIME", "DIVERS.", "TRAFFIC", "WHY")
	for _, p := range t.Payouts {
		why := p.Reason
		if why == "" {
			why = fmt.Sprintf("verified %d/%d rounds", p.VerifiedRounds, t.Rounds)
		}
		fmt.Fprintf(w, "%-20s %-24s %10d  %-22s %7.2f%% %7.2f%% %7.2f%%  %s\n", short(p.PeerID), short(p.Address), p.Amount, short(p.Domain),
			float64(p.Uptime)/1e4, float64(p.Diversity)/1e4, float64(p.Traffic)/1e4, why)
	}
	if t.Unallocated > 0 {
		fmt.Fprintf(w, "unallocated: %d %s (no mirror was eligible)\n", t.Unallocated, t.Unit)
	}
}

func short(s string) string {
	if len(s) > 20 {
		return s[:8] + "…" + s[len(s)-8:]
	}
	return s
}

func fundAndEpoch(cmd, app, fundID, epochArg string) (string, uint64, error) {
	id := fundID
	if app != "" {
		if !protocol.IsAppID(app) {
			return "", 0, usageErrorf("%s: --app %q is not an app ID", cmd, app)
		}
		id = protocol.DeriveFundID(app, nil)
	}
	if id == "" {
		return "", 0, usageErrorf("%s: --app APP-ID or --fund FUND-ID is required", cmd)
	}
	epoch, err := strconv.ParseUint(epochArg, 10, 64)
	if err != nil {
		return "", 0, usageErrorf("%s: --epoch %q is not an epoch number", cmd, epochArg)
	}
	return id, epoch, nil
}

// fetchEvidence downloads a fund epoch's evidence CAR from the local node.
func fetchEvidence(ctx context.Context, dataDir, fundID string, epoch uint64) ([]byte, error) {
	ac, err := node.DialAdmin(dataDir)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	err = ac.Get(ctx, fmt.Sprintf("/admin/v1/evidence?fund=%s&epoch=%d", fundID, epoch), &buf)
	return buf.Bytes(), err
}

func runLedgerVerify(env *cmdEnv, args []string) error {
	fs := newFlagSet(env, "ledger verify", "EVIDENCE.car [--json]")
	asJSON := fs.Bool("json", false, "print the verdict as JSON")
	pos, err := parseFlags(fs, env, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErrorf("ledger verify: want exactly one EVIDENCE.car")
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return fmt.Errorf("ledger verify: %w", err)
	}
	defer f.Close()
	m, s, roots, err := evidence.ReadCAR(f)
	if err != nil {
		return fmt.Errorf("ledger verify: %w", err)
	}
	t, _, _, err := payouts.Compute(*m, s)
	if err != nil {
		return fmt.Errorf("ledger verify: %w", err)
	}
	type verdict struct {
		Evidence string `json:"evidence"`
		Table    string `json:"table"`
		Agree    int    `json:"agree"`
		Disagree int    `json:"disagree"`
		Domains  int    `json:"agree_domains"`
		OK       bool   `json:"ok"`
	}
	v := verdict{Evidence: s.Root(), Table: t.Hash()}
	// Signers are placed as the evidence places them (the table's lines).
	placed := map[string]string{}
	for _, p := range t.Payouts {
		placed[p.PeerID] = p.Domain
	}
	domains := map[string]bool{}
	for _, raw := range roots {
		st, err := attest.Verify(raw, time.Now())
		if st == nil || (err != nil && !errors.Is(err, attest.ErrTooOld)) || st.Kind != attest.KindLedgerRoot {
			v.Disagree++
			continue
		}
		lr := st.LedgerRoot
		if lr.Fund != m.Fund || lr.Epoch != m.Epoch {
			continue
		}
		if lr.Evidence == v.Evidence && lr.Table == v.Table {
			v.Agree++
			d := placed[lr.Peer]
			if d == "" {
				d = ledger.UnknownDomain
			}
			domains[d] = true
		} else {
			v.Disagree++
		}
	}
	v.Domains, v.OK = len(domains), v.Agree > 0
	if *asJSON {
		if err := writeJSONLine(env.stdout, v); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(env.stdout, "evidence %s: %d items\ntable %s: %d mirror(s) in %d domain(s) signed it, %d signed something else\n",
			v.Evidence, s.Len(), v.Table, v.Agree, v.Domains, v.Disagree)
	}
	if !v.OK {
		return fmt.Errorf("ledger verify: no mirror's signed root matches the ledger recomputed from %s", pos[0])
	}
	return nil
}

func runLedgerApprove(env *cmdEnv, args []string) error {
	fs := newFlagSet(env, "ledger approve", "--evidence EVIDENCE.car --key KEY... [--approval FILE] [-o FILE]")
	evFile := fs.String("evidence", "", "the epoch's evidence CAR")
	var keyFiles listFlag
	fs.Var(&keyFiles, "key", "fund signer key file (repeatable)")
	prev := fs.String("approval", "", "an approval to add signatures to")
	out := fs.String("o", "", "write the signed approval to FILE (default: standard output)")
	pos, err := parseFlags(fs, env, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 || *evFile == "" || len(keyFiles) == 0 {
		return usageErrorf("ledger approve: want --evidence FILE and at least one --key")
	}
	car, err := os.ReadFile(*evFile)
	if err != nil {
		return fmt.Errorf("ledger approve: %w", err)
	}
	m, s, _, err := evidence.ReadCAR(bytes.NewReader(car))
	if err != nil {
		return fmt.Errorf("ledger approve: %w", err)
	}
	t, _, _, err := payouts.Compute(*m, s)
	if err != nil {
		return fmt.Errorf("ledger approve: %w", err)
	}
	signers, err := evidence.FundSigners(s, m.App, m.Fund)
	if err != nil {
		return fmt.Errorf("ledger approve: %w", err)
	}
	keys, _, err := maintainerSet("", keyFiles, nil, 0)
	if err != nil {
		return err
	}
	var raw []byte
	if *prev != "" {
		old, err := os.ReadFile(*prev)
		if err != nil {
			return fmt.Errorf("ledger approve: %w", err)
		}
		a, err := attest.ApprovalRecord(old)
		if err != nil {
			return fmt.Errorf("ledger approve: --approval: %w", err)
		}
		if a.Table != t.Hash() || a.Fund != m.Fund || a.Epoch != m.Epoch {
			return fmt.Errorf("ledger approve: --approval approves table %s, the evidence gives %s", a.Table, t.Hash())
		}
		raw, err = attest.CosignRecord(bytes.TrimSpace(old), attest.KindApproval, signers, keys...)
		if err != nil {
			return fmt.Errorf("ledger approve: %w", err)
		}
	} else {
		raw, err = attest.SignApproval(protocol.Approval{Fund: m.Fund, Epoch: m.Epoch, Table: t.Hash(), Time: time.Now().UnixMilli()}, signers, keys...)
		if err != nil {
			return fmt.Errorf("ledger approve: %w", err)
		}
	}
	a, err := attest.VerifyApproval(raw, signers)
	status := fmt.Sprintf("approved by %d of %d required signers", len(signersOf(raw)), signers.Threshold)
	if err == nil {
		status = fmt.Sprintf("approved: %d of %d required signers", len(a.Signers), signers.Threshold)
	}
	if *out != "" {
		if err := atomicfile.WriteFile(*out, raw, 0o644); err != nil {
			return fmt.Errorf("ledger approve: %w", err)
		}
		fmt.Fprintf(env.stdout, "table %s of %s epoch %d %s\n", t.Hash(), m.Fund, m.Epoch, status)
		return nil
	}
	fmt.Fprintln(env.stderr, status)
	_, err = env.stdout.Write(append(raw, '\n'))
	return err
}

func signersOf(raw []byte) []protocol.ReleaseSignature {
	s, err := protocol.DecodeSignedRecord(raw)
	if err != nil {
		return nil
	}
	return s.Signatures
}

const evidenceSynopsis = `export --app APP-ID|--fund FUND-ID --epoch E -o EVIDENCE.car [--data DIR]

Export a closed fund epoch's evidence from the local node as a CAR: the fund, the app's
releases, payout addresses, liveness samples, probe results, receipt witnesses, and the
mirrors' signed ledger roots. Anyone can recompute the ledger from it: 'mirrornet ledger
verify EVIDENCE.car'.`

func runEvidence(ctx context.Context, env *cmdEnv, args []string) error {
	if len(args) == 0 || args[0] != "export" {
		return usageErrorf("evidence: want 'mirrornet evidence export ...'")
	}
	fs := newFlagSet(env, "evidence export", evidenceSynopsis)
	app := fs.String("app", "", "app ID (its maintainers' fund)")
	fundID := fs.String("fund", "", "fund ID (a bounty's)")
	epochArg := fs.String("epoch", "", "epoch number")
	out := fs.String("o", "", "output CAR file")
	data := dataFlag(fs)
	pos, err := parseFlags(fs, env, args[1:])
	if err != nil {
		return err
	}
	if len(pos) > 0 || *out == "" {
		return usageErrorf("evidence export: -o FILE is required")
	}
	id, epoch, err := fundAndEpoch("evidence export", *app, *fundID, *epochArg)
	if err != nil {
		return err
	}
	car, err := fetchEvidence(ctx, *data, id, epoch)
	if err != nil {
		return fmt.Errorf("evidence export: %w", err)
	}
	m, s, roots, err := evidence.ReadCAR(bytes.NewReader(car))
	if err != nil {
		return fmt.Errorf("evidence export: the node sent a bad CAR: %w", err)
	}
	if err := atomicfile.WriteFile(*out, car, 0o644); err != nil {
		return fmt.Errorf("evidence export: %w", err)
	}
	fmt.Fprintf(env.stdout, "%s: epoch %d of %s, %d items, %d ledger roots, root %s\n", *out, m.Epoch, m.Fund, s.Len(), len(roots), s.Root())
	return nil
}
