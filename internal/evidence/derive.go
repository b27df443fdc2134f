package evidence

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/ledger"
	"github.com/mirrornet/mirrornet/internal/probe"
	"github.com/mirrornet/mirrornet/internal/release"
	"github.com/mirrornet/mirrornet/protocol"
)

// Reasons an item of a set does not count, as Report keys.
const (
	DropInvalid      = "invalid signature or encoding"
	DropOutside      = "outside the epoch"
	DropOtherApp     = "for another app or fund"
	DropWitnessSelf  = "receipt witnessed by the credited mirror's own domain"
	DropReceiptBad   = "receipt inside a witness does not verify"
	DropUnusedKind   = "kind not used by the ledger"
	DropFundMismatch = "fund record does not verify against the app's maintainers"
	DropSuperseded   = "superseded in its slot (see Replaces)"
	// DropNoHoldings counts liveness samples that name their holdings by
	// digest when the set holds no holdings statement of their mirror with
	// that digest: the sample still counts, as a mirror holding nothing.
	DropNoHoldings = "liveness names holdings the set does not hold"
	// DropUnreferenced counts holdings statements no liveness sample of
	// the set names.
	DropUnreferenced = "holdings no liveness sample names"
)

// Report says how many items of each kind were used, and why the others
// were not.
type Report struct {
	Used    map[string]int `json:"used"`
	Dropped map[string]int `json:"dropped"`
}

func (r *Report) drop(reason string) { r.Dropped[reason]++ }
func (r *Report) use(kind string)    { r.Used[kind]++ }

// RoundJudge decides which targets a committee majority verified in one
// probe round, from that round's probe results (already signature-checked,
// every receipt on a pass included), the mirrors alive in it and their
// failure domains. It must be pure and safe for concurrent use (rounds
// are judged in parallel).
type RoundJudge func(round uint64, results []*attest.Statement, alive []string, domainOf func(string) string) map[string]bool

// Params are what Derive needs besides the set.
type Params struct {
	Manifest Manifest
	// Judge decides each round (see RoundJudge).
	Judge RoundJudge
}

// ErrNoFund is returned when the set holds no valid fund record for the
// manifest's fund.
var ErrNoFund = errors.New("evidence: no valid fund record for this fund in the evidence")

// ErrNotClosed is returned for an epoch that has not ended at now.
var ErrNotClosed = errors.New("evidence: epoch has not closed yet")

// Derive verifies every item of s and turns the epoch's evidence into the
// ledger's input. It is pure: the result depends only on s and p.
//
// The fund record with the highest version that verifies against the
// app's maintainers (from the releases in the set, applied by TUF's rules)
// sets the policy. The epoch's probe rounds are the probe epochs inside
// it. Liveness samples count only under the retention rule (see
// Admitted: a probe result of the set names the mirror in a round the
// sample covers). Mirrors are placed in failure domains by the addresses
// the epoch's probe results report (see Domains). Each round is judged by
// p.Judge over the liveness samples (alive: an "up" statement signed in
// the round) and probe results of that round.
// A mirror's payout address is its latest payout statement signed before
// the epoch closed. A receipt counts when a witness signed it, the witness
// is outside the credited mirror's domain, and the receipt is for the app's
// released CIDs.
func Derive(s *Set, p Params) (ledger.Input, *Report, error) {
	return DeriveParsed(Parse(s), p)
}

// Parsed is a set whose items have been verified: what Derive reads.
type Parsed struct {
	// Root is the set's root.
	Root string
	// Releases, Funds and Statements are the items that verified: signed
	// releases, signed fund records (checked against their signers later)
	// and envelopes.
	Releases   []*attest.Release
	Funds      [][]byte
	Statements []*attest.Statement
	// Invalid counts items that did not verify.
	Invalid int
}

// Parse verifies every item of s, on every core. The result does not depend
// on the number of cores.
func Parse(s *Set) *Parsed {
	items := s.Items()
	type out struct {
		rel  *attest.Release
		st   *attest.Statement
		fund bool
		bad  bool
	}
	res := make([]out, len(items))
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(items); i += workers {
				raw := items[i]
				switch {
				case protocol.IsSignedRelease(raw):
					rel, err := attest.VerifyRelease(raw, farFuture)
					res[i] = out{rel: rel, bad: rel == nil || (err != nil && !errors.Is(err, attest.ErrTooOld))}
				case protocol.IsSignedRecord(raw):
					res[i] = out{fund: true}
				default:
					st, err := verifyAny(raw)
					res[i] = out{st: st, bad: err != nil}
				}
			}
		}()
	}
	wg.Wait()
	p := &Parsed{Root: s.Root()}
	for i, r := range res {
		switch {
		case r.bad:
			p.Invalid++
		case r.fund:
			p.Funds = append(p.Funds, items[i])
		case r.rel != nil:
			p.Releases = append(p.Releases, r.rel)
		default:
			p.Statements = append(p.Statements, r.st)
		}
	}
	return p
}

// DeriveParsed is Derive on items already verified (a mirror verified each
// statement as it arrived; an outsider runs Parse first).
func DeriveParsed(ps *Parsed, p Params) (ledger.Input, *Report, error) {
	m := p.Manifest
	rep := &Report{Used: map[string]int{}, Dropped: map[string]int{}}
	if ps.Invalid > 0 {
		rep.Dropped[DropInvalid] = ps.Invalid
	}
	// Releases and funds first: they fix the epoch's window.
	book := release.NewBook()
	var rels []*attest.Release
	for _, rel := range ps.Releases {
		if rel.Record.App != m.App {
			rep.drop(DropOtherApp)
			continue
		}
		rels = append(rels, rel)
	}
	fundRaws := ps.Funds
	// The retention rule first (see Admitted): a liveness sample no probe
	// result of its rounds names is no evidence, whatever else holds it.
	envs, unnamed := Admitted(ps.Statements, max(m.ProbeEpochMS, 1))
	if unnamed > 0 {
		rep.Dropped[DropUnnamed] += unnamed
	}
	slices.SortFunc(rels, func(a, b *attest.Release) int { return cmpU(a.Record.Version, b.Record.Version) })

	// The fund: the highest version, verified against the maintainer set
	// of the releases applied so far (funds name no version of the set).
	var fund *attest.Fund
	for _, rel := range rels {
		book.Apply(rel, time.UnixMilli(rel.Record.Time))
	}
	maint, _ := book.Maintainers(m.App)
	for _, raw := range fundRaws {
		f, err := attest.VerifyFund(raw, maint, farFuture)
		if err != nil {
			rep.drop(DropFundMismatch)
			continue
		}
		if f.Record.App != m.App || f.Record.ID() != m.Fund {
			rep.drop(DropOtherApp)
			continue
		}
		if fund == nil || f.Record.Version > fund.Record.Version {
			fund = f
		}
	}
	if fund == nil {
		return ledger.Input{}, rep, ErrNoFund
	}
	rep.use("fund")
	fr := fund.Record
	start, end := fr.EpochStart(m.Epoch), fr.EpochStart(m.Epoch+1)
	if m.ProbeEpochMS <= 0 {
		return ledger.Input{}, rep, fmt.Errorf("%w: probe epoch length %d ms", ErrManifest, m.ProbeEpochMS)
	}
	firstRound := uint64((start + m.ProbeEpochMS - 1) / m.ProbeEpochMS)
	lastRound := uint64(end/m.ProbeEpochMS) - 1 // rounds wholly inside the epoch
	if lastRound < firstRound || end/m.ProbeEpochMS == 0 {
		return ledger.Input{}, rep, fmt.Errorf("%w: the epoch holds no whole probe round", ErrManifest)
	}
	nRounds := int(lastRound - firstRound + 1)

	// The app's released CIDs up to the end of the epoch; the current one
	// is the highest version signed before the epoch closed.
	var current string
	var released []string
	for _, rel := range rels {
		if rel.Record.Time < end {
			released = append(released, rel.Record.CID)
			current = rel.Record.CID
		}
	}
	released = protocol.SortUnique(released)

	inWindow := func(st *attest.Statement) bool {
		t := st.Time.UnixMilli()
		return t >= start && t < end
	}
	roundOf := func(t int64) (int, bool) {
		r := uint64(t / m.ProbeEpochMS)
		if r < firstRound || r > lastRound {
			return 0, false
		}
		return int(r - firstRound), true
	}

	// One statement per slot, by the keeper's rule, whatever else the set
	// holds. Slots are keyed by interned peer numbers: a day of evidence
	// for a thousand mirrors is two million statements.
	intern := map[string]int32{}
	num := func(s string) int32 {
		n, ok := intern[s]
		if !ok {
			n = int32(len(intern))
			intern[s] = n
		}
		return n
	}
	type slotKey struct {
		probe, canary bool
		peer, obs     int32
		round         int64
	}
	keyOf := func(st *attest.Statement) (slotKey, bool) {
		switch st.Kind {
		case attest.KindLiveness:
			return slotKey{peer: num(st.Liveness.Peer), round: st.Time.UnixMilli() / m.ProbeEpochMS}, true
		case attest.KindProbe:
			_, canary, _ := protocol.ChallengeNonce(st.Probe.Challenge)
			return slotKey{probe: true, canary: canary, peer: num(st.Probe.Target), obs: num(st.Probe.Observer), round: st.Time.UnixMilli() / m.ProbeEpochMS}, true
		}
		return slotKey{}, false
	}
	best := make(map[slotKey]int, len(envs))
	for i, st := range envs {
		if k, ok := keyOf(st); ok {
			if cur, taken := best[k]; !taken || Replaces(st, envs[cur].Seq) {
				best[k] = i
			}
		}
	}
	kept := make([]*attest.Statement, 0, len(envs))
	for i, st := range envs {
		if k, ok := keyOf(st); ok && best[k] != i {
			rep.drop(DropSuperseded)
			continue
		}
		kept = append(kept, st)
	}
	envs = kept

	alive := make([]map[string]bool, nRounds)
	probes := make([][]*attest.Statement, nRounds)
	held := map[string]map[string]bool{}
	hold := func(peer, c string) {
		if held[peer] == nil {
			held[peer] = map[string]bool{}
		}
		held[peer][c] = true
	}
	payout := map[string]*attest.Statement{}
	var witnesses []*attest.Statement
	lives := map[string][]*attest.Statement{}
	// Holdings statements, by subject and digest: a liveness sample that
	// names its holdings by digest holds what the one it names lists.
	type setKey struct{ peer, digest string }
	sets := map[setKey]*attest.Statement{}
	named := map[setKey]bool{}
	for _, st := range envs {
		if st.Kind == attest.KindHoldings {
			sets[setKey{st.Holdings.Peer, st.Holdings.Digest()}] = st
		}
	}
	for _, st := range envs {
		switch st.Kind {
		case attest.KindLiveness:
			if _, ok := roundOf(st.Time.UnixMilli()); !ok {
				rep.drop(DropOutside)
				continue
			}
			if st.Liveness.State == protocol.StateUp {
				bundles := st.Liveness.Bundles
				if !st.Liveness.Inline() {
					k := setKey{st.Liveness.Peer, st.Liveness.Holdings}
					if h := sets[k]; h != nil {
						bundles, named[k] = h.Holdings.Bundles, true
					} else {
						rep.drop(DropNoHoldings)
					}
				}
				for _, b := range bundles {
					hold(st.Liveness.Peer, b)
				}
			}
			lives[st.Liveness.Peer] = append(lives[st.Liveness.Peer], st)
			rep.use("liveness")
		case attest.KindProbe:
			r, ok := roundOf(st.Time.UnixMilli())
			if !ok {
				rep.drop(DropOutside)
				continue
			}
			probes[r] = append(probes[r], st)
			rep.use("probe")
		case attest.KindPayout:
			if st.Time.UnixMilli() >= end {
				rep.drop(DropOutside)
				continue
			}
			if old := payout[st.Payout.Peer]; old == nil || st.Seq > old.Seq {
				payout[st.Payout.Peer] = st
			}
			rep.use("payout")
		case attest.KindWitness:
			if !inWindow(st) {
				rep.drop(DropOutside)
				continue
			}
			witnesses = append(witnesses, st)
		case attest.KindHoldings:
			// Counted below, once the samples that name them are known.
		default:
			rep.drop(DropUnusedKind)
		}
	}
	for k := range sets {
		if named[k] {
			rep.use("holdings")
		} else {
			rep.drop(DropUnreferenced)
		}
	}
	for peer, sts := range lives {
		markAlive(alive, peer, sts, m.ProbeEpochMS, firstRound, nRounds)
	}

	// Failure domains from the observations signed in the epoch's probe
	// results (see Domains): the judge seats committees by them, the
	// ledger shares by them, and a witness must be outside them.
	var observed Observations
	for _, rs := range probes {
		for _, st := range rs {
			observed.Add(st)
		}
	}
	domains, reporters := observed.Domains(), observed.Reporters()
	domainOf := func(peer string) string {
		if d, ok := domains[peer]; ok {
			return d
		}
		return ledger.UnknownDomain
	}

	// Rounds: each judged on its own (they share nothing), on every core.
	// A round's results are put in one canonical order first, so that its
	// verdict depends only on the set of statements (and a RoundCache
	// keyed by that set is sound).
	verdicts := make([]map[string]bool, nRounds)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), nRounds) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				r := int(next.Add(1) - 1)
				if r >= nRounds {
					return
				}
				verdicts[r] = judgeOne(p.Judge, firstRound+uint64(r), alive[r], probes[r], domainOf)
			}
		}()
	}
	wg.Wait()
	verified := map[string][]bool{}
	for r, v := range verdicts {
		for peer, ok := range v {
			if !ok {
				continue
			}
			if verified[peer] == nil {
				verified[peer] = make([]bool, nRounds)
			}
			verified[peer][r] = true
		}
	}

	// Mirrors: everyone with a liveness sample, a probe verdict or a
	// payout address in the epoch.
	peers := map[string]bool{}
	for r := range alive {
		for peer := range alive[r] {
			peers[peer] = true
		}
	}
	for peer := range verified {
		peers[peer] = true
	}
	in := ledger.Input{
		Policy: ledger.Policy{
			App: m.App, Epoch: m.Epoch, Unit: fr.Unit, Budget: fr.Budget,
			MinVerifiedPermille: fr.MinVerified, RedundancyTarget: fr.RedundancyTarget,
			Weights: ledger.Weights{Uptime: fr.Weights.Uptime, Diversity: fr.Weights.Diversity, Traffic: fr.Weights.Traffic},
			KeyCap:  fr.KeyCap, NetworkCap: fr.NetworkCap,
		},
		Root:   ps.Root,
		Rounds: nRounds,
	}
	for peer := range peers {
		v := verified[peer]
		if v == nil {
			v = make([]bool, nRounds)
		}
		mi := ledger.Mirror{Peer: peer, Domain: domainOf(peer), Observers: reporters[peer], Verified: v, HeldRelease: current != "" && held[peer][current]}
		if st := payout[peer]; st != nil {
			mi.Address = st.Payout.Addresses[fr.Unit]
		}
		for _, c := range released {
			if held[peer][c] {
				mi.Held = append(mi.Held, c)
			}
		}
		in.Mirrors = append(in.Mirrors, mi)
	}
	slices.SortFunc(in.Mirrors, func(a, b ledger.Mirror) int { return cmpS(a.Peer, b.Peer) })

	// Receipts, through witnesses outside the credited mirror's domain;
	// one receipt counts once however many witnessed it.
	counted := map[[32]byte]bool{}
	for _, w := range witnesses {
		wd := domainOf(w.Witness.Witness)
		for _, raw := range w.Witness.Receipts {
			st, err := verifyAny(raw)
			if err != nil || st.Kind != attest.KindReceipt {
				rep.drop(DropReceiptBad)
				continue
			}
			rc := st.Receipt
			if t := st.Time.UnixMilli(); t < start || t >= end {
				rep.drop(DropOutside)
				continue
			}
			if _, ok := slices.BinarySearch(released, rc.CID); !ok {
				rep.drop(DropOtherApp)
				continue
			}
			if domainOf(rc.Mirror) == wd {
				rep.drop(DropWitnessSelf)
				continue
			}
			h := digest(raw)
			if counted[h] {
				continue
			}
			counted[h] = true
			in.Receipts = append(in.Receipts, ledger.Receipt{Client: rc.Client, Network: w.Witness.Network, Mirror: rc.Mirror, CID: rc.CID, Bytes: rc.Bytes})
			rep.use("receipt")
		}
	}
	return in, rep, nil
}

// judgeOne puts one round's evidence in canonical order (alive sorted,
// results by cmpProbe) and judges it, so that the verdict depends only on
// the set of statements (and a RoundCache keyed by that set is sound).
// It sorts probes in place.
func judgeOne(j RoundJudge, round uint64, alive map[string]bool, probes []*attest.Statement, domainOf func(string) string) map[string]bool {
	al := make([]string, 0, len(alive))
	for peer := range alive {
		al = append(al, peer)
	}
	sort.Strings(al)
	slices.SortFunc(probes, cmpProbe)
	return j(round, probes, al, domainOf)
}

// JudgeRound judges one probe round from its statements as Derive does
// inside an epoch: the mirrors with an "up" liveness sample are alive, the
// probe results vote; sts must hold one statement per slot (see SlotOf),
// all timed in the round, as a keeper's do. A mirror calls it as each
// round closes with a RoundCache's judge (see Keeper.Prejudge in package
// payouts), so that the epoch's ledger finds the verdicts remembered. A
// round in which a mirror is alive only by an earlier statement's TTL (see
// markAlive) has another alive set in Derive, so it misses the cache and is
// judged again at the close: slower, never different.
// domainOf places a peer ("" is unknown).
func JudgeRound(j RoundJudge, round uint64, sts []*attest.Statement, domainOf func(string) string) map[string]bool {
	alive := map[string]bool{}
	var probes []*attest.Statement
	for _, st := range sts {
		switch st.Kind {
		case attest.KindLiveness:
			if st.Liveness.State == protocol.StateUp {
				alive[st.Liveness.Peer] = true
			}
		case attest.KindProbe:
			probes = append(probes, st)
		}
	}
	return judgeOne(j, round, alive, probes, func(p string) string {
		if d := domainOf(p); d != "" {
			return d
		}
		return ledger.UnknownDomain
	})
}

// FundSigners returns the key set that signs for the fund fundID of app in
// s: its funders for a bounty, else the app's maintainers by the releases
// in s.
func FundSigners(s *Set, app, fundID string) (protocol.MaintainerSet, error) {
	book := release.NewBook()
	var rels []*attest.Release
	var funds [][]byte
	for _, raw := range s.Items() {
		switch {
		case protocol.IsSignedRelease(raw):
			if rel, err := attest.VerifyRelease(raw, farFuture); rel != nil && (err == nil || errors.Is(err, attest.ErrTooOld)) && rel.Record.App == app {
				rels = append(rels, rel)
			}
		case protocol.IsSignedRecord(raw):
			funds = append(funds, raw)
		}
	}
	slices.SortFunc(rels, func(a, b *attest.Release) int { return cmpU(a.Record.Version, b.Record.Version) })
	for _, rel := range rels {
		book.Apply(rel, time.UnixMilli(rel.Record.Time))
	}
	maint, _ := book.Maintainers(app)
	for _, raw := range funds {
		f, err := attest.VerifyFund(raw, maint, farFuture)
		if err != nil || f.Record.ID() != fundID {
			continue
		}
		if f.Record.Funders != nil {
			return *f.Record.Funders, nil
		}
		return maint, nil
	}
	return protocol.MaintainerSet{}, ErrNoFund
}

// farFuture is the "now" items are verified at: an item's time is judged
// against the epoch's window, never against its age.
var farFuture = time.UnixMilli(1 << 50)

// verifyAny verifies an envelope's signature and payload, whatever its age.
func verifyAny(raw []byte) (*attest.Statement, error) {
	st, err := attest.Verify(raw, farFuture)
	if st != nil && errors.Is(err, attest.ErrTooOld) {
		err = nil
	}
	if err != nil {
		return nil, err
	}
	return st, nil
}

func digest(b []byte) [32]byte { return sha256.Sum256(b) }

// Verifies reports whether raw is a statement of a kind evidence holds
// whose signature and payload verify (at any age).
func Verifies(raw []byte) bool {
	switch {
	case protocol.IsSignedRelease(raw):
		rel, err := attest.VerifyRelease(raw, farFuture)
		return rel != nil && (err == nil || errors.Is(err, attest.ErrTooOld))
	case protocol.IsSignedRecord(raw):
		s, err := protocol.DecodeSignedRecord(raw)
		if err != nil {
			return false
		}
		_, err = protocol.DecodeFund(s.Record)
		return err == nil // signatures need the app's set: Derive checks them
	}
	_, err := verifyAny(raw)
	return err == nil
}

// Peers returns every peer ID named as a subject, target or credited
// mirror in s, sorted. It verifies every item; a keeper that verified its
// statements on arrival calls PeersOf.
func Peers(s *Set) []string {
	var sts []*attest.Statement
	for _, raw := range s.Items() {
		if st, err := verifyAny(raw); err == nil {
			sts = append(sts, st)
		}
	}
	return PeersOf(sts)
}

// PeersOf is Peers over verified statements.
func PeersOf(sts []*attest.Statement) []string {
	seen := map[string]bool{}
	for _, st := range sts {
		seen[subject(st)] = true
		switch {
		case st.Probe != nil:
			seen[st.Probe.Target] = true
		case st.Witness != nil:
			for _, r := range st.Witness.Receipts {
				if rs, err := verifyAny(r); err == nil && rs.Receipt != nil {
					seen[rs.Receipt.Mirror] = true
				}
			}
		}
	}
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// subject is a statement's signer in string form, from the payload where
// it names the signer (attest checked they match): encoding two million
// peer IDs would cost seconds.
func subject(st *attest.Statement) string {
	switch {
	case st.Liveness != nil:
		return st.Liveness.Peer
	case st.Probe != nil:
		return st.Probe.Observer
	case st.Payout != nil:
		return st.Payout.Peer
	case st.Witness != nil:
		return st.Witness.Witness
	case st.LedgerRoot != nil:
		return st.LedgerRoot.Peer
	case st.Receipt != nil:
		return st.Receipt.Client
	}
	return st.Signer.String()
}

// Slot is the place one statement fills in an epoch's evidence: a
// liveness sample of Peer in probe round Round, or the result of Observer
// probing Peer in probe epoch Round.
type Slot struct {
	Kind     attest.Kind
	Peer     string
	Observer string
	Round    int64
	// Canary separates an observer's canary challenges from its real
	// ones: a canary never displaces the observer's vote.
	Canary bool
}

// SlotOf returns a liveness or probe statement's slot. roundMS is the probe
// epoch length.
func SlotOf(st *attest.Statement, roundMS int64) (Slot, bool) {
	switch st.Kind {
	case attest.KindLiveness:
		return Slot{Kind: st.Kind, Peer: st.Liveness.Peer, Round: st.Time.UnixMilli() / roundMS}, true
	case attest.KindProbe:
		_, canary, _ := protocol.ChallengeNonce(st.Probe.Challenge)
		return Slot{Kind: st.Kind, Peer: st.Probe.Target, Observer: st.Probe.Observer, Round: st.Time.UnixMilli() / roundMS, Canary: canary}, true
	}
	return Slot{}, false
}

// Replaces reports whether st takes a slot held by a statement with
// sequence number held: a liveness sample is the mirror's first statement
// of the round (lowest seq), a probe result the observer's last word on
// the target in the epoch (highest seq). Either way the holder of a slot
// depends only on the set of statements seen, not on their order.
func Replaces(st *attest.Statement, held uint64) bool {
	if st.Kind == attest.KindLiveness {
		return st.Seq < held
	}
	return st.Seq > held
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmpS(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// JudgeFor is the RoundJudge an evidence manifest names: the committee
// rules of the lan profile with the manifest's probe epoch and K.
func JudgeFor(m Manifest) RoundJudge {
	cfg := probe.DefaultConfig()
	cfg.EpochLength = time.Duration(m.ProbeEpochMS) * time.Millisecond
	cfg.K = max(m.K, 1)
	cfg.Observers = max(cfg.Observers, 2*cfg.K)
	cfg.Confirmations = min(cfg.Confirmations, cfg.K)
	return CommitteeJudge(cfg)
}

// markAlive marks peer alive in every round of the epoch that one of its
// "up" statements covers. A statement covers the round it was signed in
// and, when it carries a TTL (the signer's promise to sign again within
// it, so that it need not speak every round), every later round that
// starts before its TTL runs out or its signer's next statement, whichever
// comes first. Being alive in a round only makes a mirror eligible: its
// probe results still decide whether it passed. sts holds one statement
// per round (the keeper's slot rule) in any order.
func markAlive(alive []map[string]bool, peer string, sts []*attest.Statement, roundMS int64, firstRound uint64, nRounds int) {
	slices.SortFunc(sts, func(a, b *attest.Statement) int { return a.Time.Compare(b.Time) })
	for i, st := range sts {
		if st.Liveness.State != protocol.StateUp {
			continue
		}
		t := st.Time.UnixMilli()
		until := t + st.Liveness.TTLDuration().Milliseconds()
		if i+1 < len(sts) {
			until = min(until, sts[i+1].Time.UnixMilli())
		}
		for r := t / roundMS; ; r++ {
			if r != t/roundMS && r*roundMS >= until {
				break
			}
			idx := r - int64(firstRound)
			if idx < 0 {
				continue
			}
			if idx >= int64(nRounds) {
				break
			}
			if alive[idx] == nil {
				alive[idx] = map[string]bool{}
			}
			alive[idx][peer] = true
		}
	}
}
