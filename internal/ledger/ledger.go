// Package ledger computes an app fund's payouts for one closed epoch from
// the epoch's evidence, so that every mirror and every outsider holding the
// same evidence computes the same table, byte for byte.
//
// [Compute] is a pure function of its [Input]: no clock, no randomness, no
// floating point, no map iteration order. Amounts are exact: each mirror's
// share is a rational number (math/big.Rat), amounts are its floor, and the
// units left over go one each to the largest remainders (ties to the
// smaller peer ID), so the amounts sum to the budget exactly.
//
// # How a budget is split
//
//  1. Eligibility. A mirror is paid only when it has a payout address in the
//     fund's unit, was verified (probe committee majority) in at least the
//     fund's minimum share of the epoch's probe rounds, and held the app's
//     current release. Every other mirror gets a line with amount 0 and the
//     reason.
//  2. Failure domains, not peers. A domain (an observed /24 or /48, as the
//     evidence places mirrors, or the one shared domain "unknown" for
//     mirrors nobody placed) is up in a round when at least one of its
//     eligible mirrors was verified in it. Uptime and diversity are earned by domains and shared among the
//     domain's mirrors in proportion to their own verified rounds, so
//     fourteen mirrors in one data centre earn what one domain earns.
//  3. Uptime: a domain earns one point per round it was up.
//  4. Diversity: in each round the app's effective redundancy E is the
//     number of domains up. A domain up in that round earns its marginal
//     contribution min(1, T/E), where T is the fund's redundancy target:
//     being one of few independent copies is worth a full point, being the
//     twentieth copy when the target is five is worth a quarter.
//  5. Traffic: verified bytes from delivery receipts for the app's CIDs,
//     counted only for CIDs the mirror held, capped per client key and then
//     per client network (IPv4 /24, IPv6 /48) per mirror, so a farm of
//     clients on one network adds at most one network's worth.
//  6. Each part's pool is its weight's share of the budget; a part nobody
//     earned anything in is left out and the weights of the others are
//     renormalised. The budget goes unallocated only when no mirror is
//     eligible.
package ledger

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
)

// UnknownDomain is the one failure domain of all mirrors that no two
// observers in distinct domains have placed. It counts once, however many
// mirrors are in it.
const UnknownDomain = "unknown"

// Reasons a mirror is not paid.
const (
	ReasonNoAddress  = "no payout address for the fund's unit"
	ReasonLowUptime  = "verified in fewer probe rounds than the fund requires"
	ReasonNoRelease  = "did not hold the app's current release"
	ReasonNoEvidence = "no probe round verified it"
)

// Errors.
var (
	ErrInput = errors.New("ledger: invalid input")
)

// Weights are the relative weights of the three parts of a payout. They
// need not sum to anything; only their ratios matter.
type Weights struct {
	Uptime    uint32 `json:"uptime"`
	Diversity uint32 `json:"diversity"`
	Traffic   uint32 `json:"traffic"`
}

// Policy is what the ledger needs of a fund record for one epoch.
type Policy struct {
	App    string
	Epoch  uint64
	Unit   string
	Budget uint64
	// MinVerifiedPermille is the minimum share of the epoch's probe rounds,
	// in thousandths, in which a mirror must have been verified.
	MinVerifiedPermille uint32
	// RedundancyTarget is T in the diversity part (at least 1).
	RedundancyTarget uint32
	Weights          Weights
	// KeyCap and NetworkCap bound the receipt bytes that count per client
	// key and per client network, per mirror, in the epoch.
	KeyCap, NetworkCap uint64
}

// Mirror is one mirror's evidence in the epoch, already verified.
type Mirror struct {
	Peer   string
	Domain string
	// Observers is how many observers' signed probe results reported an
	// address for the mirror (what its domain was computed from).
	Observers int
	Address   string // payout address in the fund's unit; "" when none
	// Verified[r] reports whether a committee majority verified the mirror
	// in probe round r; len(Verified) must equal Input.Rounds.
	Verified []bool
	// HeldRelease reports whether the mirror held the app's current
	// release in the epoch.
	HeldRelease bool
	// Held lists the app CIDs the mirror held (for receipts), sorted.
	Held []string
}

// Receipt is one verified delivery receipt: a client key's signed word that
// Mirror delivered Bytes verified bytes of CID, seen from Network.
type Receipt struct {
	Client  string
	Network string
	Mirror  string
	CID     string
	Bytes   uint64
}

// Input is everything Compute reads.
type Input struct {
	Policy Policy
	// Root names the evidence the input was derived from (see package
	// evidence); it is copied into the table.
	Root     string
	Rounds   int
	Mirrors  []Mirror
	Receipts []Receipt
}

// Table is the epoch's payout table. Its JSON form is a contract.
type Table struct {
	App     string   `json:"app"`
	Epoch   uint64   `json:"epoch"`
	Unit    string   `json:"unit"`
	Budget  uint64   `json:"budget"`
	Root    string   `json:"root"`
	Payouts []Payout `json:"payouts"`
	// Unallocated is what no eligible mirror earned (all of the budget, or
	// nothing).
	Unallocated uint64  `json:"unallocated"`
	Rounds      int     `json:"rounds"`
	Weights     Weights `json:"weights"`
}

// Payout is one line of the table. Uptime, Diversity and Traffic are the
// mirror's share of each part's pool in parts per million (floor), so the
// line says why the amount is what it is.
type Payout struct {
	PeerID    string `json:"peer_id"`
	Address   string `json:"address"`
	Amount    uint64 `json:"amount"`
	Domain    string `json:"domain"`
	Uptime    uint64 `json:"uptime"`
	Diversity uint64 `json:"diversity"`
	Traffic   uint64 `json:"traffic"`
	// VerifiedRounds is how many of the epoch's rounds the mirror was
	// verified in; TrafficBytes the receipt bytes that counted after caps.
	VerifiedRounds int    `json:"verified_rounds"`
	TrafficBytes   uint64 `json:"traffic_bytes"`
	// Reason is empty for a paid mirror and says why otherwise.
	Reason string `json:"reason,omitempty"`
}

// Hash is the table's identity: hex SHA-256 of its canonical JSON. Mirrors
// sign it; maintainers approve it.
func (t *Table) Hash() string {
	b, err := json.Marshal(t)
	if err != nil {
		panic("ledger: marshal table: " + err.Error()) // plain data always marshals
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func (p Policy) validate(rounds int) error {
	switch {
	case p.App == "":
		return fmt.Errorf("%w: no app", ErrInput)
	case p.Unit == "":
		return fmt.Errorf("%w: no unit", ErrInput)
	case p.Budget == 0:
		return fmt.Errorf("%w: budget is zero", ErrInput)
	case p.MinVerifiedPermille > 1000:
		return fmt.Errorf("%w: minimum verified share %d‰ above 1000‰", ErrInput, p.MinVerifiedPermille)
	case p.RedundancyTarget == 0:
		return fmt.Errorf("%w: redundancy target is zero", ErrInput)
	case p.Weights.Uptime == 0 && p.Weights.Diversity == 0 && p.Weights.Traffic == 0:
		return fmt.Errorf("%w: all weights are zero", ErrInput)
	case rounds <= 0:
		return fmt.Errorf("%w: the epoch has no probe rounds", ErrInput)
	}
	return nil
}

// mirrorState is a mirror's working state during Compute.
type mirrorState struct {
	Mirror
	verified int
	reason   string
	points   [3]*big.Rat // uptime, diversity, traffic (mirror's points)
	traffic  uint64
}

// Compute splits the policy's budget among the input's mirrors. It is pure
// and deterministic: the order of Mirrors and Receipts does not matter.
func Compute(in Input) (*Table, error) {
	if err := in.Policy.validate(in.Rounds); err != nil {
		return nil, err
	}
	ms := make([]*mirrorState, 0, len(in.Mirrors))
	seen := make(map[string]bool, len(in.Mirrors))
	for _, m := range in.Mirrors {
		if m.Peer == "" || m.Domain == "" {
			return nil, fmt.Errorf("%w: mirror without peer ID or domain", ErrInput)
		}
		if seen[m.Peer] {
			return nil, fmt.Errorf("%w: mirror %s listed twice", ErrInput, m.Peer)
		}
		if len(m.Verified) != in.Rounds {
			return nil, fmt.Errorf("%w: mirror %s has %d rounds, want %d", ErrInput, m.Peer, len(m.Verified), in.Rounds)
		}
		seen[m.Peer] = true
		st := &mirrorState{Mirror: m}
		for i := range st.points {
			st.points[i] = new(big.Rat)
		}
		for _, v := range m.Verified {
			if v {
				st.verified++
			}
		}
		ms = append(ms, st)
	}
	slices.SortFunc(ms, func(a, b *mirrorState) int { return strings.Compare(a.Peer, b.Peer) })

	p := in.Policy
	for _, m := range ms {
		switch {
		case m.verified == 0:
			m.reason = ReasonNoEvidence
		case uint64(m.verified)*1000 < uint64(p.MinVerifiedPermille)*uint64(in.Rounds):
			m.reason = ReasonLowUptime
		case !m.HeldRelease:
			m.reason = ReasonNoRelease
		case m.Address == "":
			m.reason = ReasonNoAddress
		}
	}

	// Domains of eligible mirrors, in sorted order.
	byDomain := map[string][]*mirrorState{}
	for _, m := range ms {
		if m.reason == "" {
			byDomain[m.Domain] = append(byDomain[m.Domain], m)
		}
	}
	domains := make([]string, 0, len(byDomain))
	for d := range byDomain {
		domains = append(domains, d)
	}
	slices.Sort(domains)

	// Which domains are up in each round, and the diversity value of a
	// round: min(1, T/E) per domain up.
	up := make([][]bool, len(domains))
	upCount := make([]int, in.Rounds)
	for i, d := range domains {
		up[i] = make([]bool, in.Rounds)
		for _, m := range byDomain[d] {
			for r, v := range m.Verified {
				if v && !up[i][r] {
					up[i][r] = true
					upCount[r]++
				}
			}
		}
	}
	target := int64(p.RedundancyTarget)
	for i, d := range domains {
		uptime := new(big.Rat)
		diversity := new(big.Rat)
		for r := 0; r < in.Rounds; r++ {
			if !up[i][r] {
				continue
			}
			uptime.Add(uptime, ratOne)
			if e := int64(upCount[r]); e <= target {
				diversity.Add(diversity, ratOne)
			} else {
				diversity.Add(diversity, big.NewRat(target, e))
			}
		}
		// Shared among the domain's mirrors by their own verified rounds.
		members := byDomain[d]
		total := 0
		for _, m := range members {
			total += m.verified
		}
		for _, m := range members {
			frac := big.NewRat(int64(m.verified), int64(total))
			m.points[0].Mul(uptime, frac)
			m.points[1].Mul(diversity, frac)
		}
	}

	// Traffic: receipts for CIDs the mirror held, capped per key, then per
	// network, per mirror.
	index := make(map[string]*mirrorState, len(ms))
	for _, m := range ms {
		index[m.Peer] = m
	}
	type keyOf struct{ mirror, network, client string }
	perKey := map[keyOf]uint64{}
	for _, rc := range in.Receipts {
		m := index[rc.Mirror]
		if m == nil || m.reason != "" {
			continue
		}
		if _, ok := slices.BinarySearch(m.Held, rc.CID); !ok {
			continue
		}
		k := keyOf{rc.Mirror, rc.Network, rc.Client}
		perKey[k] = satAdd(perKey[k], rc.Bytes)
	}
	type netOf struct{ mirror, network string }
	perNet := map[netOf]uint64{}
	for k, b := range perKey {
		n := netOf{k.mirror, k.network}
		perNet[n] = satAdd(perNet[n], min(b, p.KeyCap))
	}
	for n, b := range perNet {
		m := index[n.mirror]
		m.traffic = satAdd(m.traffic, min(b, p.NetworkCap))
	}
	for _, m := range ms {
		m.points[2].SetFrac(new(big.Int).SetUint64(m.traffic), big.NewInt(1))
	}

	// Pools: each part's weight over the weights of parts anyone earned in.
	totals := [3]*big.Rat{new(big.Rat), new(big.Rat), new(big.Rat)}
	for _, m := range ms {
		for i := range totals {
			totals[i].Add(totals[i], m.points[i])
		}
	}
	weights := [3]uint32{p.Weights.Uptime, p.Weights.Diversity, p.Weights.Traffic}
	var wsum int64
	for i, w := range weights {
		if totals[i].Sign() > 0 {
			wsum += int64(w)
		}
	}
	if wsum == 0 {
		// Only parts nobody earned in have weight (a traffic-only fund in
		// an epoch without receipts): eligible mirrors still earned
		// uptime, so pay by uptime rather than leave the budget unpaid.
		weights, wsum = [3]uint32{1, 0, 0}, 1
	}

	t := &Table{App: p.App, Epoch: p.Epoch, Unit: p.Unit, Budget: p.Budget, Root: in.Root, Rounds: in.Rounds, Weights: p.Weights}
	shares := make([]*big.Rat, len(ms))
	for j, m := range ms {
		shares[j] = new(big.Rat)
		for i := range totals {
			if totals[i].Sign() == 0 {
				continue
			}
			part := new(big.Rat).Quo(m.points[i], totals[i]) // share of pool i
			shares[j].Add(shares[j], new(big.Rat).Mul(part, big.NewRat(int64(weights[i]), wsum)))
		}
	}
	amounts := allocate(p.Budget, shares, ms)
	var paid uint64
	for j, m := range ms {
		line := Payout{
			PeerID: m.Peer, Address: m.Address, Amount: amounts[j], Domain: m.Domain,
			VerifiedRounds: m.verified, TrafficBytes: m.traffic, Reason: m.reason,
		}
		vals := [3]*uint64{&line.Uptime, &line.Diversity, &line.Traffic}
		for i := range totals {
			if totals[i].Sign() > 0 {
				*vals[i] = ppm(new(big.Rat).Quo(m.points[i], totals[i]))
			}
		}
		paid += line.Amount
		t.Payouts = append(t.Payouts, line)
	}
	if t.Payouts == nil {
		t.Payouts = []Payout{}
	}
	t.Unallocated = p.Budget - paid
	return t, nil
}

var ratOne = big.NewRat(1, 1)

// allocate turns shares (summing to 1, or all 0) into integer amounts that
// sum to budget exactly: floors first, then one unit each to the largest
// remainders, ties to the smaller peer ID.
func allocate(budget uint64, shares []*big.Rat, ms []*mirrorState) []uint64 {
	out := make([]uint64, len(shares))
	b := new(big.Rat).SetInt(new(big.Int).SetUint64(budget))
	type rem struct {
		i int
		r *big.Rat
	}
	var rems []rem
	var given uint64
	any := false
	for i, s := range shares {
		if s.Sign() == 0 {
			continue
		}
		any = true
		exact := new(big.Rat).Mul(b, s)
		fl := new(big.Int).Quo(exact.Num(), exact.Denom())
		out[i] = fl.Uint64()
		given += out[i]
		rems = append(rems, rem{i, new(big.Rat).Sub(exact, new(big.Rat).SetInt(fl))})
	}
	if !any {
		return out
	}
	slices.SortFunc(rems, func(a, b rem) int {
		if c := b.r.Cmp(a.r); c != 0 {
			return c
		}
		return cmp.Compare(ms[a.i].Peer, ms[b.i].Peer)
	})
	for k := 0; given < budget && k < len(rems); k++ {
		out[rems[k].i]++
		given++
	}
	return out
}

// ppm is r in parts per million, rounded down.
func ppm(r *big.Rat) uint64 {
	x := new(big.Rat).Mul(r, big.NewRat(1_000_000, 1))
	return new(big.Int).Quo(x.Num(), x.Denom()).Uint64()
}

func satAdd(a, b uint64) uint64 {
	if a+b < a {
		return ^uint64(0)
	}
	return a + b
}
