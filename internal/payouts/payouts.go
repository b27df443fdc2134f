// Package payouts keeps a mirror's side of the payout ledger: the funds it
// has seen, operators' payout addresses, receipts that clients posted to it,
// each epoch's evidence, and the signed ledger roots of every mirror.
//
// The Keeper is fed every verified statement the node accepts (liveness,
// probe results, releases) and the payout statements of its own topic. When
// a fund's epoch has closed and a grace period has passed, it derives and
// computes the epoch's ledger (package evidence, package ledger), signs the
// root and hands it to the node to gossip. A peer's root over other
// evidence makes it pull that peer's evidence (Merge) and sign again: the
// roots converge on the union of what the mirrors saw.
//
// The Keeper starts no goroutine and reads no clock: the node passes now.
package payouts

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/evidence"
	"github.com/mirrornet/mirrornet/internal/ledger"
	"github.com/mirrornet/mirrornet/protocol"
)

// Errors.
var (
	ErrUnknownFund = errors.New("payouts: unknown fund")
	ErrNotClosed   = errors.New("payouts: epoch has not closed yet")
	ErrRollback    = errors.New("payouts: fund version not above the one known")
	ErrBudget      = errors.New("payouts: evidence budget exhausted")
	ErrNoKey       = errors.New("payouts: no maintainer set known for the fund's app")
)

// Config sets the keeper's parameters.
type Config struct {
	// ProbeEpoch and K are the network profile's probe epoch length and
	// the number of independent domains a verdict needs.
	ProbeEpoch time.Duration
	K          int
	// Grace is how long after an epoch closes the keeper waits for late
	// evidence before it signs a ledger root.
	Grace time.Duration
	// Retention is how long statements are kept as evidence.
	Retention time.Duration
	// MaxBytes bounds the bytes of all evidence kept; statements beyond it
	// are refused (counted) rather than evicting evidence of open epochs.
	MaxBytes int64
	// MaxFunds bounds the funds kept.
	MaxFunds int
	// Dir, if set, keeps the evidence on disk (see Save and Load): one file
	// per probe round of liveness samples, probe results and receipt
	// witnesses, and one of funds, payout addresses and ledger roots,
	// each replaced atomically. The files hold what memory holds, so
	// MaxBytes and Retention bound them too.
	Dir string
}

// DefaultConfig: a day and a half of evidence (an epoch of a day plus
// grace), 512 MiB, 1,024 funds.
func DefaultConfig() Config {
	return Config{ProbeEpoch: 5 * time.Minute, K: 3, Grace: 10 * time.Minute, Retention: 36 * time.Hour, MaxBytes: 512 << 20, MaxFunds: 1024}
}

// Validate checks the config.
func (c Config) Validate() error {
	if c.ProbeEpoch <= 0 || c.K < 1 || c.Grace < 0 || c.Retention <= 0 || c.MaxBytes <= 0 || c.MaxFunds <= 0 {
		return fmt.Errorf("payouts: invalid config %+v", c)
	}
	return nil
}

// Releases is what the keeper needs of the release book.
type Releases interface {
	// Maintainers returns the app's current maintainer set.
	Maintainers(app string) (protocol.MaintainerSet, bool)
	// Raw returns the app's signed releases.
	Raw(app string) [][]byte
}

// Domains places a peer in its observed failure domain ("" for unknown).
type Domains interface {
	Domain(p peer.ID) string
}

type item struct {
	raw []byte
	st  *attest.Statement // verified on arrival
	at  int64             // statement time, Unix ms
}

type fundKey struct {
	fund  string
	epoch uint64
}

// Keeper is safe for concurrent use.
type Keeper struct {
	cfg      Config
	self     peer.ID
	key      crypto.PrivKey
	releases Releases
	domains  Domains

	mu      sync.Mutex
	funds   map[string]*attest.Fund      // by fund ID
	payout  map[string]*attest.Statement // latest payout statement by peer
	items   map[[32]byte]item            // liveness, probes, witnesses
	bytes   int64
	roots   map[fundKey]map[string]*attest.Statement // ledger roots by signer
	signed  map[fundKey]string                       // evidence root we last signed
	seq     uint64
	Refused map[string]int // statements refused, by reason
	// slots hold, per evidence slot (see evidence.SlotOf), the digest of
	// the one statement that fills it.
	slots map[evidence.Slot]slotted
	// tables are the latest ledger computed per fund (by Due).
	tables map[string]*ledger.Table
	// byRound indexes the items by probe round, for Prejudge and Save.
	byRound map[int64]map[[32]byte]bool
	// dirty are the rounds changed since the last Save; stateDirty says
	// funds, payout addresses or roots changed. pendingFunds are saved
	// funds Load could not check yet (their app's releases unknown).
	dirty        map[int64]bool
	stateDirty   bool
	pendingFunds [][]byte
	// rounds remembers round verdicts; judge is the ledger's judge through
	// it. judged is the last round Prejudge judged.
	rounds *evidence.RoundCache
	judge  evidence.RoundJudge
	judged int64
	wseq   uint64 // of the receipt witnesses this mirror signs
	// obs are the observation reports of the probe rounds Prejudge has
	// reached in the fund epoch starting at obsEpoch (Unix ms), through
	// round obsRound.
	obs      evidence.Observations
	obsEpoch int64
	obsRound int64
	// names are the peers the kept probe results name, per round; pending
	// are the liveness samples not named yet, by the last round they cover;
	// settled is the last round whose naming the keeper takes as final
	// (see Prune and evidence.Admitted).
	names   *evidence.Names
	pending map[[32]byte]int64
	settled int64
	// held are the holdings statements that kept liveness samples name by
	// digest (by subject and digest): exported with the samples, saved
	// with the state, dropped once no kept sample names them.
	held map[heldKey]*attest.Statement
}

// heldKey names a holdings statement: its subject and digest.
type heldKey struct{ peer, digest string }

type slotted struct {
	digest [32]byte
	seq    uint64
}

// Config returns the keeper's config.
func (k *Keeper) Config() Config { return k.cfg }

// Seen reports whether raw is already kept as evidence.
func (k *Keeper) Seen(raw []byte) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.items[digest(raw)]
	return ok
}

// LastTable is the latest ledger Due computed for a fund, or nil.
func (k *Keeper) LastTable(fundID string) *ledger.Table {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.tables[fundID]
}

// Earned sums, per unit, what peer is paid in the latest table of every
// fund.
func (k *Keeper) Earned(peerID string) map[string]uint64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := map[string]uint64{}
	for _, t := range k.tables {
		for _, p := range t.Payouts {
			if p.PeerID == peerID && p.Amount > 0 {
				out[t.Unit] += p.Amount
			}
		}
	}
	return out
}

// New returns a keeper for the node with key.
func New(cfg Config, key crypto.PrivKey, releases Releases, domains Domains) (*Keeper, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	self, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, err
	}
	// Every round of the retention, and a day more: verdicts of rounds
	// whose evidence changed after they were judged.
	keep := int(cfg.Retention/cfg.ProbeEpoch) + int(24*time.Hour/cfg.ProbeEpoch)
	rounds := evidence.NewRoundCache(keep)
	return &Keeper{cfg: cfg, self: self, key: key, releases: releases, domains: domains,
		funds: map[string]*attest.Fund{}, payout: map[string]*attest.Statement{}, items: map[[32]byte]item{},
		roots: map[fundKey]map[string]*attest.Statement{}, signed: map[fundKey]string{},
		Refused: map[string]int{}, slots: map[evidence.Slot]slotted{}, tables: map[string]*ledger.Table{},
		byRound: map[int64]map[[32]byte]bool{}, dirty: map[int64]bool{}, rounds: rounds, judge: rounds.Judge(evidence.JudgeFor(cfg.manifest())),
		names: evidence.NewNames(cfg.ProbeEpoch.Milliseconds()), pending: map[[32]byte]int64{}}, nil
}

// manifest is the part of an export's manifest the keeper's config fixes.
func (c Config) manifest() evidence.Manifest {
	return evidence.Manifest{ProbeEpochMS: c.ProbeEpoch.Milliseconds(), K: c.K}
}

// Observe keeps a verified liveness, probe or witness statement as
// evidence. Liveness and probe statements fill slots (one liveness sample
// per mirror per probe round: the lowest sequence number; one probe result
// per observer, target and probe epoch: the highest), so that what a keeper
// holds depends only on the union of what it saw, never on the order. Other
// kinds are ignored. It reports whether the statement was kept.
//
// A liveness sample is evidence only while a kept probe result names its
// mirror in a round it covers (evidence.Admitted). Until the rounds it
// covers have settled (see Prune) a sample waits for its name; after that
// a sample no probe result names is refused on arrival, counted as
// RefusedUnnamed. A stranger that only signs liveness thus costs a keeper
// at most the few rounds of its samples that have not settled.
func (k *Keeper) Observe(st *attest.Statement) bool {
	switch st.Kind {
	case attest.KindLiveness, attest.KindProbe, attest.KindWitness:
	case attest.KindHoldings:
		return k.observeHoldings(st)
	default:
		return false
	}
	h := digest(st.Raw)
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.items[h]; ok {
		return false
	}
	slot, hasSlot := evidence.SlotOf(st, k.cfg.ProbeEpoch.Milliseconds())
	var old slotted
	if hasSlot {
		var taken bool
		if old, taken = k.slots[slot]; taken && !evidence.Replaces(st, old.seq) {
			return false
		}
	}
	roundMS := k.cfg.ProbeEpoch.Milliseconds()
	named := k.names.Admits(st)
	var last int64
	if !named {
		_, last = evidence.Covers(st, roundMS)
		if last <= k.settled {
			k.Refused[RefusedUnnamed]++
			return false
		}
	}
	if k.bytes+int64(len(st.Raw)) > k.cfg.MaxBytes {
		k.Refused[RefusedBudget]++
		return false
	}
	if hasSlot {
		if it, ok := k.items[old.digest]; ok {
			k.bytes -= int64(len(it.raw))
			delete(k.items, old.digest)
			delete(k.byRound[slot.Round], old.digest)
			delete(k.pending, old.digest)
		}
		k.slots[slot] = slotted{digest: h, seq: st.Seq}
	}
	if !named {
		k.pending[h] = last
	}
	k.names.Add(st)
	r := st.Time.UnixMilli() / roundMS
	if k.byRound[r] == nil {
		k.byRound[r] = map[[32]byte]bool{}
	}
	k.byRound[r][h] = true
	k.dirty[r] = true
	k.items[h] = item{raw: st.Raw, st: st, at: st.Time.UnixMilli()}
	k.bytes += int64(len(st.Raw))
	return true
}

// observeHoldings keeps a verified holdings statement, for the liveness
// samples that name it by digest.
func (k *Keeper) observeHoldings(st *attest.Statement) bool {
	key := heldKey{st.Holdings.Peer, st.Holdings.Digest()}
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.held[key]; ok {
		return false
	}
	if k.bytes+int64(len(st.Raw)) > k.cfg.MaxBytes {
		k.Refused[RefusedBudget]++
		return false
	}
	if k.held == nil {
		k.held = map[heldKey]*attest.Statement{}
	}
	k.held[key] = st
	k.bytes += int64(len(st.Raw))
	k.stateDirty = true
	return true
}

// namedHoldingsLocked is the holdings statement the liveness sample st
// names by digest, or nil (st lists its bundles itself, or the keeper
// does not hold it).
func (k *Keeper) namedHoldingsLocked(st *attest.Statement) *attest.Statement {
	if st.Kind != attest.KindLiveness || st.Liveness.Inline() || st.Liveness.Holdings == "" {
		return nil
	}
	return k.held[heldKey{st.Liveness.Peer, st.Liveness.Holdings}]
}

// Witness signs a receipt witness over receipts a client on network (its
// /24 or /48, as the connection showed it) posted to this mirror, keeps it
// as evidence and returns it to gossip. The receipts must have verified.
func (k *Keeper) Witness(network string, receipts [][]byte, now time.Time) ([]byte, error) {
	k.mu.Lock()
	k.wseq = max(k.wseq+1, uint64(now.UnixMilli()))
	seq := k.wseq
	k.mu.Unlock()
	raw, err := attest.SignWitness(k.key, protocol.ReceiptWitness{Witness: k.self.String(), Seq: seq, Time: now.UnixMilli(), Network: network, Receipts: receipts})
	if err != nil {
		return nil, fmt.Errorf("payouts: witness: %w", err)
	}
	st, err := attest.Verify(raw, now)
	if err != nil {
		return nil, fmt.Errorf("payouts: own witness: %w", err)
	}
	k.Observe(st)
	return raw, nil
}

// AddFund verifies a signed fund and keeps it if it is the newest version
// of its fund. now is the receiver's clock.
func (k *Keeper) AddFund(raw []byte, now time.Time) (*attest.Fund, error) {
	app, err := attest.FundApp(raw)
	if err != nil {
		return nil, err
	}
	maint, ok := k.releases.Maintainers(app)
	if !ok {
		maint = protocol.MaintainerSet{}
	}
	f, err := attest.VerifyFund(raw, maint, now)
	if err != nil {
		if !ok {
			return nil, fmt.Errorf("%w %s (follow the app first): %w", ErrNoKey, app, err)
		}
		return nil, err
	}
	id := f.Record.ID()
	k.mu.Lock()
	defer k.mu.Unlock()
	if old := k.funds[id]; old != nil {
		if f.Record.Version <= old.Record.Version {
			return nil, fmt.Errorf("%w: %s v%d, known v%d", ErrRollback, id, f.Record.Version, old.Record.Version)
		}
	} else if len(k.funds) >= k.cfg.MaxFunds {
		return nil, fmt.Errorf("payouts: %d funds kept, the limit", len(k.funds))
	}
	k.funds[id] = f
	k.stateDirty = true
	return f, nil
}

// AddPayout keeps a verified payout address statement if it is the
// signer's newest.
func (k *Keeper) AddPayout(st *attest.Statement) bool {
	if st.Kind != attest.KindPayout {
		return false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	p := st.Payout.Peer
	if old := k.payout[p]; old != nil && old.Seq >= st.Seq {
		return false
	}
	k.payout[p] = st
	k.stateDirty = true
	return true
}

// AddRoot keeps a verified ledger root if it is the signer's newest for its
// fund and epoch. It reports whether the root names evidence other than
// the keeper's own for that epoch (the caller should then pull the
// signer's evidence and Merge it).
func (k *Keeper) AddRoot(st *attest.Statement) (differs bool) {
	if st.Kind != attest.KindLedgerRoot {
		return false
	}
	lr := st.LedgerRoot
	fk := fundKey{lr.Fund, lr.Epoch}
	k.mu.Lock()
	defer k.mu.Unlock()
	m := k.roots[fk]
	if m == nil {
		if len(k.roots) >= 4*k.cfg.MaxFunds {
			return false
		}
		m = map[string]*attest.Statement{}
		k.roots[fk] = m
	}
	if old := m[lr.Peer]; old != nil && old.Seq >= st.Seq {
		return false
	}
	m[lr.Peer] = st
	k.stateDirty = true
	mine, ok := k.signed[fk]
	return ok && mine != lr.Evidence && lr.Peer != k.self.String()
}

// Funds returns the funds kept, sorted by ID.
func (k *Keeper) Funds() []*attest.Fund {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]*attest.Fund, 0, len(k.funds))
	for _, f := range k.funds {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b *attest.Fund) int { return cmpStr(a.Record.ID(), b.Record.ID()) })
	return out
}

// FundOf returns the fund with the given ID, or the maintainers' fund of
// an app when id is an app ID.
func (k *Keeper) FundOf(id string) (*attest.Fund, error) {
	if protocol.IsAppID(id) {
		id = protocol.DeriveFundID(id, nil)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	f := k.funds[id]
	if f == nil {
		return nil, fmt.Errorf("%w %s", ErrUnknownFund, id)
	}
	return f, nil
}

// Statements returns the payout statements the keeper holds (funds,
// payout addresses, ledger roots), for sync.
func (k *Keeper) Statements() [][]byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out [][]byte
	for _, f := range k.funds {
		out = append(out, f.Raw)
	}
	for _, st := range k.payout {
		out = append(out, st.Raw)
	}
	for _, m := range k.roots {
		for _, st := range m {
			out = append(out, st.Raw)
		}
	}
	return out
}

// Export gathers the evidence of a fund's epoch: the fund record, the app's
// releases, payout addresses, and every kept statement timed in the epoch
// (plus what was merged from peers), with the manifest to export it and
// the ledger roots signed for it.
func (k *Keeper) Export(fundID string, epochNo uint64, now time.Time) (evidence.Manifest, *evidence.Set, [][]byte, error) {
	m, s, _, roots, err := k.collect(fundID, epochNo, now)
	return m, s, roots, err
}

// collect is Export, with the statements of the set the keeper verified on
// arrival, by digest.
func (k *Keeper) collect(fundID string, epochNo uint64, now time.Time) (evidence.Manifest, *evidence.Set, map[[32]byte]*attest.Statement, [][]byte, error) {
	f, err := k.FundOf(fundID)
	if err != nil {
		return evidence.Manifest{}, nil, nil, nil, err
	}
	fr := f.Record
	start, end := fr.EpochStart(epochNo), fr.EpochStart(epochNo+1)
	if now.UnixMilli() < end {
		return evidence.Manifest{}, nil, nil, nil, fmt.Errorf("%w: epoch %d of %s closes at %s", ErrNotClosed, epochNo, fr.ID(), time.UnixMilli(end).UTC().Format(time.RFC3339))
	}
	s := evidence.NewSet()
	s.Add(f.Raw)
	for _, r := range k.releases.Raw(fr.App) {
		s.Add(r)
	}
	sts := map[[32]byte]*attest.Statement{}
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, st := range k.payout {
		if st.Time.UnixMilli() < end {
			h := digest(st.Raw)
			s.AddDigest(h, st.Raw)
			sts[h] = st
		}
	}
	// The retention rule over the epoch's own probe results (as Derive
	// applies it to the export): samples still waiting for a name, or
	// named only by results outside the epoch, are not part of it.
	names := evidence.NewNames(k.cfg.ProbeEpoch.Milliseconds())
	for _, it := range k.items {
		if it.at >= start && it.at < end {
			names.Add(it.st)
		}
	}
	for h, it := range k.items {
		if it.at >= start && it.at < end && names.Admits(it.st) {
			s.AddDigest(h, it.raw)
			sts[h] = it.st
			// A sample that names its holdings by digest carries them.
			if hs := k.namedHoldingsLocked(it.st); hs != nil {
				hh := digest(hs.Raw)
				s.AddDigest(hh, hs.Raw)
				sts[hh] = hs
			}
		}
	}
	fk := fundKey{fr.ID(), epochNo}
	var roots [][]byte
	for _, st := range k.roots[fk] {
		roots = append(roots, st.Raw)
	}
	sort.Slice(roots, func(i, j int) bool { return string(roots[i]) < string(roots[j]) })
	m := evidence.Manifest{App: fr.App, Fund: fr.ID(), Epoch: epochNo, ProbeEpochMS: k.cfg.ProbeEpoch.Milliseconds(), K: k.cfg.K}
	return m, s, sts, roots, nil
}

// Merge takes the items of a peer's export that verify, as if they had
// arrived by gossip, and returns how many were new. Probe results go
// first: they name the mirrors whose liveness samples count.
func (k *Keeper) Merge(s *evidence.Set, now time.Time) int {
	n := 0
	var sts []*attest.Statement
	for _, raw := range s.Items() {
		switch {
		case protocol.IsSignedRelease(raw):
			continue // the release book takes releases from gossip and sync
		case protocol.IsSignedRecord(raw):
			if _, err := k.AddFund(raw, now); err == nil {
				n++
			}
			continue
		}
		st, err := attest.Verify(raw, now)
		if st == nil || (err != nil && !errors.Is(err, attest.ErrTooOld)) {
			k.mu.Lock()
			k.Refused[RefusedMergedInvalid]++
			k.mu.Unlock()
			continue
		}
		sts = append(sts, st)
	}
	slices.SortStableFunc(sts, func(a, b *attest.Statement) int {
		return cmpBool(a.Kind != attest.KindProbe, b.Kind != attest.KindProbe)
	})
	for _, st := range sts {
		if k.AddPayout(st) || k.Observe(st) {
			n++
		}
	}
	return n
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

// Ledger computes the ledger of a closed fund epoch from the keeper's
// evidence. It computes what Compute computes on the epoch's export, from
// the statements as verified on arrival (no signature is checked again)
// and with the round verdicts Prejudge remembered.
func (k *Keeper) Ledger(fundID string, epochNo uint64, now time.Time) (*ledger.Table, ledger.Input, *evidence.Report, error) {
	m, s, sts, _, err := k.collect(fundID, epochNo, now)
	if err != nil {
		return nil, ledger.Input{}, nil, err
	}
	t, in, rep, err := k.compute(m, s, sts)
	return t, in, rep, err
}

// compute derives and computes the ledger of collected evidence: the
// statements in digest order, as Parse lists them.
func (k *Keeper) compute(m evidence.Manifest, s *evidence.Set, sts map[[32]byte]*attest.Statement) (*ledger.Table, ledger.Input, *evidence.Report, error) {
	ds := s.Digests()
	ps := &evidence.Parsed{Root: evidence.RootOf(ds), Statements: make([]*attest.Statement, 0, len(sts))}
	for _, h := range ds {
		if st := sts[h]; st != nil {
			ps.Statements = append(ps.Statements, st)
			continue
		}
		one := evidence.NewSet()
		raw, _ := s.Get(h)
		one.Add(raw)
		p := evidence.Parse(one) // the fund record and the releases
		ps.Releases = append(ps.Releases, p.Releases...)
		ps.Funds = append(ps.Funds, p.Funds...)
		ps.Statements = append(ps.Statements, p.Statements...)
		ps.Invalid += p.Invalid
	}
	in, rep, err := evidence.DeriveParsed(ps, evidence.Params{Manifest: m, Judge: k.judge})
	if err != nil {
		return nil, in, rep, err
	}
	t, err := ledger.Compute(in)
	return t, in, rep, err
}

// maxPrejudge bounds the rounds one Prejudge call judges (about a second
// of CPU at 1,000 mirrors), so that a keeper with a day of evidence to
// catch up on does not stall its caller's loop.
const maxPrejudge = 12

// Prejudge judges the probe rounds that have closed since the last call
// (a round once the one after it has closed too, so that late results
// have arrived) and remembers their verdicts, so that an epoch's ledger
// judges at most its last round when the epoch closes. The node calls it
// from its loop. It judges nothing while the keeper knows no fund, and it
// reports how many rounds it judged.
//
// A round is judged with the failure domains the ledger will use: those
// the probe results of the fund epoch so far report (evidence.Domains; the
// epochs of the fund with the smallest ID, when there are several). When
// a later result of the epoch moves a peer the round names, the round's
// remembered verdict no longer matches and the ledger judges it again:
// slower, never different.
func (k *Keeper) Prejudge(now time.Time) int {
	roundMS := k.cfg.ProbeEpoch.Milliseconds()
	last := now.UnixMilli()/roundMS - 2 // the round before the last closed one
	k.mu.Lock()
	if len(k.funds) == 0 {
		k.mu.Unlock()
		return 0
	}
	first := max(k.judged+1, (now.UnixMilli()-k.cfg.Retention.Milliseconds())/roundMS)
	k.mu.Unlock()
	fund := k.Funds()[0].Record
	n := 0
	for r := first; r <= last && n < maxPrejudge; r++ {
		k.mu.Lock()
		var sts []*attest.Statement
		for h := range k.byRound[r] {
			if it, ok := k.items[h]; ok && k.names.Admits(it.st) {
				sts = append(sts, it.st)
			}
		}
		k.judged = r
		domains := k.observedLocked(fund, r)
		k.mu.Unlock()
		if len(sts) == 0 {
			continue
		}
		evidence.JudgeRound(k.judge, uint64(r), sts, func(p string) string { return domains[p] })
		n++
	}
	return n
}

// observedLocked returns the failure domains that the probe results of
// fund's epoch holding round r report, from the epoch's first whole round
// through r, as Derive computes them over a whole epoch. It adds rounds to
// k.obs as Prejudge reaches them, and starts over at each epoch.
func (k *Keeper) observedLocked(fund protocol.Fund, r int64) map[string]string {
	roundMS := k.cfg.ProbeEpoch.Milliseconds()
	start := fund.EpochStart(fund.EpochOf(r * roundMS))
	firstRound := (start + roundMS - 1) / roundMS
	if start != k.obsEpoch || r < k.obsRound {
		k.obs, k.obsEpoch, k.obsRound = evidence.Observations{}, start, firstRound-1
	}
	for ; k.obsRound < r; k.obsRound++ {
		for h := range k.byRound[k.obsRound+1] {
			if it, ok := k.items[h]; ok {
				k.obs.Add(it.st)
			}
		}
	}
	return k.obs.Domains()
}

// RoundsRemembered is how many round verdicts the keeper holds.
func (k *Keeper) RoundsRemembered() int { return k.rounds.Len() }

// Compute derives and computes the ledger of an exported epoch (what
// `mirrornet ledger verify` runs offline).
func Compute(m evidence.Manifest, s *evidence.Set) (*ledger.Table, ledger.Input, *evidence.Report, error) {
	in, rep, err := evidence.Derive(s, evidence.Params{Manifest: m, Judge: evidence.JudgeFor(m)})
	if err != nil {
		return nil, in, rep, err
	}
	t, err := ledger.Compute(in)
	return t, in, rep, err
}

// Due returns the ledger roots the keeper should sign now: for every fund
// epoch closed at least Grace ago (and within retention) whose evidence
// root differs from the one last signed, a signed root. The caller
// gossips them.
func (k *Keeper) Due(now time.Time) [][]byte {
	var out [][]byte
	for _, f := range k.Funds() {
		fr := f.Record
		cur := fr.EpochOf(now.Add(-k.cfg.Grace).UnixMilli())
		if now.Add(-k.cfg.Grace).UnixMilli() < fr.EpochStart(0)+fr.EpochMS {
			continue // no epoch has closed yet
		}
		e := cur - 1
		if time.Duration(now.UnixMilli()-fr.EpochStart(e+1))*time.Millisecond > k.cfg.Retention {
			continue
		}
		m, s, sts, _, err := k.collect(fr.ID(), e, now)
		if err != nil {
			continue
		}
		fk := fundKey{fr.ID(), e}
		k.mu.Lock()
		same := k.signed[fk] == s.Root()
		k.mu.Unlock()
		if same {
			continue
		}
		t, _, _, err := k.compute(m, s, sts)
		if err != nil {
			continue
		}
		k.mu.Lock()
		k.seq = max(k.seq+1, uint64(now.UnixMilli()))
		seq := k.seq
		k.mu.Unlock()
		raw, err := attest.SignLedgerRoot(k.key, protocol.LedgerRoot{Peer: k.self.String(), Seq: seq, Time: now.UnixMilli(),
			App: fr.App, Fund: fr.ID(), Epoch: e, Evidence: s.Root(), Table: t.Hash()})
		if err != nil {
			continue
		}
		st, err := attest.Verify(raw, now)
		if err != nil {
			continue
		}
		k.mu.Lock()
		k.signed[fk] = s.Root()
		k.tables[fr.ID()] = t
		k.mu.Unlock()
		k.AddRoot(st)
		out = append(out, raw)
	}
	return out
}

// Agreement counts, for a fund epoch, the mirrors (and their distinct
// domains) whose latest signed root names each table hash.
type Agreement struct {
	Table   string `json:"table"`
	Mirrors int    `json:"mirrors"`
	Domains int    `json:"domains"`
}

// Agreements returns the agreement on a fund epoch's ledger, most mirrors
// first.
func (k *Keeper) Agreements(fundID string, epochNo uint64) []Agreement {
	k.mu.Lock()
	defer k.mu.Unlock()
	by := map[string]map[string]bool{}
	count := map[string]int{}
	// Signers are placed as the epoch's evidence places them (the lines
	// of this keeper's table, as `ledger verify` does), else by this
	// mirror's own placer.
	placed := map[string]string{}
	if t := k.tables[fundID]; t != nil && t.Epoch == epochNo {
		for _, p := range t.Payouts {
			placed[p.PeerID] = p.Domain
		}
	}
	for signer, st := range k.roots[fundKey{fundID, epochNo}] {
		t := st.LedgerRoot.Table
		if by[t] == nil {
			by[t] = map[string]bool{}
		}
		d := placed[signer]
		if d == "" && k.domains != nil {
			if id, err := peer.Decode(signer); err == nil {
				d = k.domains.Domain(id)
			}
		}
		if d == "" {
			d = ledger.UnknownDomain
		}
		by[t][d] = true
		count[t]++
	}
	var out []Agreement
	for t, ds := range by {
		out = append(out, Agreement{Table: t, Mirrors: count[t], Domains: len(ds)})
	}
	slices.SortFunc(out, func(a, b Agreement) int {
		if a.Mirrors != b.Mirrors {
			return b.Mirrors - a.Mirrors
		}
		return cmpStr(a.Table, b.Table)
	})
	return out
}

// settleRounds is how many rounds after a round closes the keeper waits
// for the probe results that name mirrors in it (results are published as
// a round's probes finish, and sync brings stragglers within a round).
// A result later than that which names a sample this keeper dropped is
// healed as any other difference: a peer that kept the sample signs
// another root, and the pull brings the sample back.
const settleRounds = 2

// RefusedUnnamed counts the liveness samples the keeper did not keep
// because no probe result of the rounds they cover names their mirror
// (evidence.Admitted), refused on arrival or dropped once the rounds
// settled.
const RefusedUnnamed = "unnamed_liveness"

// The other reasons counted in Keeper.Refused (metric labels, snake_case
// like every other reason label).
const (
	// RefusedBudget: evidence over the keeper's byte budget.
	RefusedBudget = "evidence_budget"
	// RefusedMergedInvalid: a merged item that does not verify.
	RefusedMergedInvalid = "merged_item_invalid"
	// RefusedFileDamaged: an evidence file record that could not be read.
	RefusedFileDamaged = "evidence_file_damaged"
)

// Prune forgets evidence older than the retention, and the liveness
// samples no probe result names once the rounds they cover have settled
// (the round before the last closed one, as Prejudge judges them).
func (k *Keeper) Prune(now time.Time) {
	cut := now.Add(-k.cfg.Retention).UnixMilli()
	k.mu.Lock()
	defer k.mu.Unlock()
	roundMS := k.cfg.ProbeEpoch.Milliseconds()
	k.settled = max(k.settled, now.UnixMilli()/roundMS-settleRounds)
	for h, last := range k.pending {
		if last > k.settled {
			continue
		}
		delete(k.pending, h)
		it, ok := k.items[h]
		if !ok || k.names.Admits(it.st) {
			continue
		}
		k.dropLocked(h, it)
		k.Refused[RefusedUnnamed]++
	}
	round := cut / roundMS
	k.names.Forget(round)
	for sl := range k.slots {
		if sl.Round < round {
			delete(k.slots, sl)
		}
	}
	for r := range k.byRound {
		if r < round {
			delete(k.byRound, r)
			k.dirty[r] = true // Save removes its file
		}
	}
	for h, it := range k.items {
		if it.at < cut {
			k.bytes -= int64(len(it.raw))
			delete(k.items, h)
			delete(k.pending, h)
		}
	}
	// Holdings statements no kept sample names any more.
	if len(k.held) > 0 {
		named := map[heldKey]bool{}
		for _, it := range k.items {
			if it.st.Kind == attest.KindLiveness && !it.st.Liveness.Inline() {
				named[heldKey{it.st.Liveness.Peer, it.st.Liveness.Holdings}] = true
			}
		}
		for key, st := range k.held {
			if !named[key] {
				k.bytes -= int64(len(st.Raw))
				delete(k.held, key)
				k.stateDirty = true
			}
		}
	}
	for fk := range k.roots {
		if f := k.funds[fk.fund]; f == nil || f.Record.EpochStart(fk.epoch+1) < cut {
			delete(k.roots, fk)
			delete(k.signed, fk)
		}
	}
}

// dropLocked forgets the kept item h (and frees its slot).
func (k *Keeper) dropLocked(h [32]byte, it item) {
	k.bytes -= int64(len(it.raw))
	delete(k.items, h)
	r := it.at / k.cfg.ProbeEpoch.Milliseconds()
	delete(k.byRound[r], h)
	k.dirty[r] = true
	if slot, ok := evidence.SlotOf(it.st, k.cfg.ProbeEpoch.Milliseconds()); ok && k.slots[slot].digest == h {
		delete(k.slots, slot)
	}
}

// Bytes is the size of the evidence kept (liveness samples, probe
// results and receipt witnesses), in bytes.
func (k *Keeper) Bytes() int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.bytes
}

func digest(b []byte) [32]byte { return sha256.Sum256(b) }

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
