package ledger

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

func policy() Policy {
	return Policy{
		App: "app-test", Epoch: 7, Unit: "STX", Budget: 100_000,
		MinVerifiedPermille: 300, RedundancyTarget: 5,
		Weights: Weights{Uptime: 40, Diversity: 40, Traffic: 20},
		KeyCap:  1 << 30, NetworkCap: 4 << 30,
	}
}

func rounds(n, upTo int) []bool {
	v := make([]bool, n)
	for i := 0; i < upTo && i < n; i++ {
		v[i] = true
	}
	return v
}

func mirror(peer, domain string, verified []bool) Mirror {
	return Mirror{Peer: peer, Domain: domain, Address: "SP" + peer, Verified: verified, HeldRelease: true, Held: []string{"bafyapp"}}
}

func byPeer(t *Table) map[string]Payout {
	m := map[string]Payout{}
	for _, p := range t.Payouts {
		m[p.PeerID] = p
	}
	return m
}

func sum(t *Table) uint64 {
	var s uint64
	for _, p := range t.Payouts {
		s += p.Amount
	}
	return s
}

// Fourteen mirrors behind one /24 earn together about what one independent
// mirror earns; each independent mirror earns more than any of the fourteen.
func TestDuplicatesShareOneDomain(t *testing.T) {
	const R = 288
	in := Input{Policy: policy(), Rounds: R}
	for i := range 14 {
		in.Mirrors = append(in.Mirrors, mirror(fmt.Sprintf("dc%02d", i), "net:203.0.113.0/24", rounds(R, R)))
	}
	for i := range 6 {
		in.Mirrors = append(in.Mirrors, mirror(fmt.Sprintf("solo%d", i), fmt.Sprintf("net:198.51.%d.0/24", i), rounds(R, R)))
	}
	tab, err := Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	if got := sum(tab); got != in.Policy.Budget {
		t.Fatalf("amounts sum to %d, budget %d", got, in.Policy.Budget)
	}
	lines := byPeer(tab)
	var farm, maxFarm, minSolo uint64
	minSolo = ^uint64(0)
	for p, l := range lines {
		if p[:2] == "dc" {
			farm += l.Amount
			maxFarm = max(maxFarm, l.Amount)
		} else {
			minSolo = min(minSolo, l.Amount)
		}
	}
	// Seven domains up all epoch: each domain is worth budget/7.
	domainShare := in.Policy.Budget / 7
	if farm < domainShare*95/100 || farm > domainShare*105/100 {
		t.Errorf("the 14 co-located mirrors earned %d together, want about one domain's share %d", farm, domainShare)
	}
	if minSolo <= maxFarm {
		t.Errorf("an independent mirror earned %d, not more than a co-located one (%d)", minSolo, maxFarm)
	}
}

// A mirror that claims to hold the app but serves nothing (no probe round
// verified it) earns nothing; one down half the epoch earns about half.
func TestNonServingAndHalfDown(t *testing.T) {
	const R = 200
	in := Input{Policy: policy(), Rounds: R}
	for i := range 5 {
		in.Mirrors = append(in.Mirrors, mirror(fmt.Sprintf("m%d", i), fmt.Sprintf("net:10.%d.0.0/24", i), rounds(R, R)))
	}
	in.Mirrors = append(in.Mirrors, mirror("half", "net:10.9.0.0/24", rounds(R, R/2)))
	in.Mirrors = append(in.Mirrors, mirror("liar", "net:10.8.0.0/24", rounds(R, 0)))
	tab, err := Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	l := byPeer(tab)
	if l["liar"].Amount != 0 || l["liar"].Reason != ReasonNoEvidence {
		t.Errorf("non-serving mirror: %+v, want 0 with reason %q", l["liar"], ReasonNoEvidence)
	}
	ratio := float64(l["half"].Amount) / float64(l["m0"].Amount)
	if ratio < 0.45 || ratio > 0.55 {
		t.Errorf("half-down mirror earned %d, equal full-time peer %d: ratio %.3f, want about 0.5", l["half"].Amount, l["m0"].Amount, ratio)
	}
	if got := sum(tab); got != in.Policy.Budget {
		t.Fatalf("amounts sum to %d, budget %d", got, in.Policy.Budget)
	}
}

// A thousand receipts from one /24 raise a mirror's counted traffic by at
// most one network's cap.
func TestReceiptFarmCappedPerNetwork(t *testing.T) {
	const R = 10
	p := policy()
	p.KeyCap, p.NetworkCap = 1<<20, 8<<20
	in := Input{Policy: p, Rounds: R}
	in.Mirrors = []Mirror{mirror("a", "net:1", rounds(R, R)), mirror("b", "net:2", rounds(R, R))}
	// One honest client each from its own network, same bytes.
	in.Receipts = append(in.Receipts,
		Receipt{Client: "ca", Network: "192.0.2.0/24", Mirror: "a", CID: "bafyapp", Bytes: 1 << 20},
		Receipt{Client: "cb", Network: "192.0.3.0/24", Mirror: "b", CID: "bafyapp", Bytes: 1 << 20})
	before, err := Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		in.Receipts = append(in.Receipts, Receipt{Client: fmt.Sprintf("farm%d", i), Network: "198.51.100.0/24", Mirror: "b", CID: "bafyapp", Bytes: 1 << 30})
	}
	after, err := Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	gain := byPeer(after)["b"].TrafficBytes - byPeer(before)["b"].TrafficBytes
	if gain > p.NetworkCap {
		t.Errorf("a farm on one /24 added %d counted bytes, cap %d", gain, p.NetworkCap)
	}
	if gain != p.NetworkCap {
		t.Errorf("a farm on one /24 added %d counted bytes, want exactly the network cap %d", gain, p.NetworkCap)
	}
	// A receipt for a CID the mirror never held counts for nothing.
	in.Receipts = append(in.Receipts, Receipt{Client: "x", Network: "203.0.113.0/24", Mirror: "a", CID: "bafyother", Bytes: 1 << 20})
	again, err := Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	if byPeer(again)["a"].TrafficBytes != byPeer(after)["a"].TrafficBytes {
		t.Errorf("a receipt for a CID the mirror does not hold changed its traffic")
	}
}

// The table is a function of the evidence, not of the order it arrived in.
func TestOrderIndependentAndExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 50 {
		R := 1 + rng.IntN(50)
		p := policy()
		p.Budget = 1 + rng.Uint64N(1_000_000)
		p.Weights = Weights{rng.Uint32N(5), rng.Uint32N(5), rng.Uint32N(5) + 1}
		in := Input{Policy: p, Rounds: R, Root: "root"}
		n := 1 + rng.IntN(30)
		for i := range n {
			v := make([]bool, R)
			for r := range v {
				v[r] = rng.IntN(4) != 0
			}
			in.Mirrors = append(in.Mirrors, Mirror{Peer: fmt.Sprintf("p%03d", i), Domain: fmt.Sprintf("d%d", rng.IntN(6)), Address: "addr", Verified: v, HeldRelease: rng.IntN(10) != 0, Held: []string{"bafyapp"}})
		}
		for range rng.IntN(100) {
			in.Receipts = append(in.Receipts, Receipt{Client: fmt.Sprintf("c%d", rng.IntN(20)), Network: fmt.Sprintf("n%d", rng.IntN(5)), Mirror: fmt.Sprintf("p%03d", rng.IntN(n)), CID: "bafyapp", Bytes: rng.Uint64N(3 << 30)})
		}
		a, err := Compute(in)
		if err != nil {
			t.Fatal(err)
		}
		shuffled := in
		shuffled.Mirrors = slices.Clone(in.Mirrors)
		shuffled.Receipts = slices.Clone(in.Receipts)
		rng.Shuffle(len(shuffled.Mirrors), func(i, j int) { shuffled.Mirrors[i], shuffled.Mirrors[j] = shuffled.Mirrors[j], shuffled.Mirrors[i] })
		rng.Shuffle(len(shuffled.Receipts), func(i, j int) {
			shuffled.Receipts[i], shuffled.Receipts[j] = shuffled.Receipts[j], shuffled.Receipts[i]
		})
		b, err := Compute(shuffled)
		if err != nil {
			t.Fatal(err)
		}
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		if string(ja) != string(jb) || a.Hash() != b.Hash() {
			t.Fatalf("trial %d: tables differ with input order", trial)
		}
		if got := sum(a) + a.Unallocated; got != p.Budget {
			t.Fatalf("trial %d: paid %d + unallocated %d != budget %d", trial, sum(a), a.Unallocated, p.Budget)
		}
		eligible := false
		for _, l := range a.Payouts {
			if l.Reason == "" {
				eligible = true
			} else if l.Amount != 0 {
				t.Fatalf("trial %d: ineligible %s paid %d", trial, l.PeerID, l.Amount)
			}
		}
		if eligible && a.Unallocated != 0 {
			t.Fatalf("trial %d: %d unallocated with eligible mirrors", trial, a.Unallocated)
		}
	}
}

func TestEligibilityReasons(t *testing.T) {
	const R = 10
	in := Input{Policy: policy(), Rounds: R}
	noAddr := mirror("noaddr", "d1", rounds(R, R))
	noAddr.Address = ""
	noRel := mirror("norel", "d2", rounds(R, R))
	noRel.HeldRelease = false
	in.Mirrors = []Mirror{noAddr, noRel, mirror("low", "d3", rounds(R, 2)), mirror("ok", "d4", rounds(R, R))}
	tab, err := Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	l := byPeer(tab)
	for peer, want := range map[string]string{"noaddr": ReasonNoAddress, "norel": ReasonNoRelease, "low": ReasonLowUptime, "ok": ""} {
		if l[peer].Reason != want {
			t.Errorf("%s: reason %q, want %q", peer, l[peer].Reason, want)
		}
	}
	if l["ok"].Amount != in.Policy.Budget {
		t.Errorf("only eligible mirror got %d of %d", l["ok"].Amount, in.Policy.Budget)
	}
}

func TestBadInput(t *testing.T) {
	good := Input{Policy: policy(), Rounds: 2, Mirrors: []Mirror{mirror("a", "d", rounds(2, 2))}}
	for name, mut := range map[string]func(*Input){
		"no rounds":      func(in *Input) { in.Rounds = 0 },
		"zero budget":    func(in *Input) { in.Policy.Budget = 0 },
		"zero weights":   func(in *Input) { in.Policy.Weights = Weights{} },
		"duplicate peer": func(in *Input) { in.Mirrors = append(in.Mirrors, in.Mirrors[0]) },
		"rounds length":  func(in *Input) { in.Mirrors[0].Verified = rounds(3, 3) },
		"target zero":    func(in *Input) { in.Policy.RedundancyTarget = 0 },
	} {
		in := good
		in.Mirrors = slices.Clone(good.Mirrors)
		mut(&in)
		if _, err := Compute(in); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
