package evidence

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/evidence/evidencetest"
	"github.com/mirrornet/mirrornet/internal/ledger"
)

type scenario struct {
	*evidencetest.Scenario
	items   [][]byte
	mirrors []peer.ID
	params  Params
}

func build(t testing.TB, n int, shared map[int]string) *scenario {
	sc := evidencetest.Build(t, n, shared)
	return &scenario{Scenario: sc, items: sc.Items, mirrors: sc.Mirrors, params: Params{
		Manifest: Manifest{App: sc.App, Fund: sc.Fund.ID(), Epoch: 0, ProbeEpochMS: evidencetest.RoundMS, K: 2},
		Judge:    JudgeFor(Manifest{ProbeEpochMS: evidencetest.RoundMS, K: 2}),
	}}
}

func (sc *scenario) set(order []int) *Set {
	s := NewSet()
	for _, i := range order {
		s.Add(sc.items[i])
	}
	return s
}

func table(t testing.TB, s *Set, p Params) *ledger.Table {
	t.Helper()
	in, _, err := Derive(s, p)
	if err != nil {
		t.Fatal(err)
	}
	tab, err := ledger.Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func TestOrderIndependentRootAndLedger(t *testing.T) {
	sc := build(t, 5, nil)
	fwd := make([]int, len(sc.items))
	for i := range fwd {
		fwd[i] = i
	}
	rev := make([]int, len(fwd))
	for i := range rev {
		rev[i] = len(fwd) - 1 - i
	}
	shuffled := append([]int(nil), fwd...)
	rand.New(rand.NewSource(3)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	a, b, c := sc.set(fwd), sc.set(rev), sc.set(shuffled)
	if a.Root() != b.Root() || a.Root() != c.Root() {
		t.Fatal("roots differ with arrival order")
	}
	ta, tb := table(t, a, sc.params), table(t, c, sc.params)
	ja, _ := json.Marshal(ta)
	jb, _ := json.Marshal(tb)
	if !bytes.Equal(ja, jb) {
		t.Fatalf("ledgers differ with arrival order:\n%s\n%s", ja, jb)
	}
	if ta.Root != a.Root() {
		t.Errorf("table root %s, set root %s", ta.Root, a.Root())
	}
	var paid uint64
	for _, p := range ta.Payouts {
		paid += p.Amount
		if p.Reason != "" {
			t.Errorf("%s not paid: %s", p.PeerID, p.Reason)
		}
	}
	if paid != 1000 {
		t.Errorf("paid %d of 1000", paid)
	}
	// Mirror 0's receipt counted (witnessed from another domain).
	for _, p := range ta.Payouts {
		if p.PeerID == sc.mirrors[0].String() && p.TrafficBytes != 1<<20 {
			t.Errorf("mirror 0 traffic %d, want %d", p.TrafficBytes, 1<<20)
		}
	}
}

func TestCARRoundTripAndTamper(t *testing.T) {
	sc := build(t, 4, nil)
	all := make([]int, len(sc.items))
	for i := range all {
		all[i] = i
	}
	s := sc.set(all)
	var buf bytes.Buffer
	if err := WriteCAR(&buf, sc.params.Manifest, s, nil); err != nil {
		t.Fatal(err)
	}
	m, back, _, err := ReadCAR(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if back.Root() != s.Root() || m.Root != s.Root() {
		t.Fatal("root changed through the CAR")
	}
	p := sc.params
	p.Manifest = *m
	if table(t, back, p).Hash() != table(t, s, sc.params).Hash() {
		t.Fatal("ledger from the CAR differs")
	}
	// Flip one byte inside an item's data: the CAR no longer imports.
	raw := buf.Bytes()
	item := sc.items[len(sc.items)/2]
	at := bytes.Index(raw, item)
	if at < 0 {
		t.Fatal("item not found in CAR")
	}
	bad := bytes.Clone(raw)
	bad[at+len(item)/2] ^= 1
	if _, _, _, err := ReadCAR(bytes.NewReader(bad)); !errors.Is(err, ErrCAR) {
		t.Fatalf("tampered CAR: %v, want ErrCAR", err)
	}
	// A set missing one item has another root.
	less := sc.set(all[1:])
	if less.Root() == s.Root() {
		t.Fatal("dropping an item kept the root")
	}
}

func TestDuplicatesShareADomainThroughEvidence(t *testing.T) {
	shared := map[int]string{}
	for i := range 6 {
		shared[i] = "net:203.0.113.0/24"
	}
	sc := build(t, 10, shared)
	all := make([]int, len(sc.items))
	for i := range all {
		all[i] = i
	}
	tab := table(t, sc.set(all), sc.params)
	var farm, solo uint64
	for _, p := range tab.Payouts {
		if p.Domain == "net:203.0.113.0/24" {
			farm += p.Amount
		} else if solo == 0 || p.Amount < solo {
			solo = p.Amount
		}
	}
	// Five domains: the farm earns about a fifth (plus its traffic).
	if farm > 1000*30/100 {
		t.Errorf("six co-located mirrors earned %d of 1000 together", farm)
	}
	if solo*6 < farm {
		t.Errorf("an independent mirror earned %d, the farm %d", solo, farm)
	}
}

func TestWitnessInOwnDomainAndNoFund(t *testing.T) {
	// Mirror 1 shares mirror 0's domain: its witness does not count.
	sc := build(t, 4, map[int]string{0: "net:192.0.2.0/24", 1: "net:192.0.2.0/24"})
	all := make([]int, len(sc.items))
	for i := range all {
		all[i] = i
	}
	in, rep, err := Derive(sc.set(all), sc.params)
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Receipts) != 0 || rep.Dropped[DropWitnessSelf] != 1 {
		t.Fatalf("self-witnessed receipt: %d counted, report %+v", len(in.Receipts), rep)
	}
	// Without the fund record there is no ledger.
	if _, _, err := Derive(sc.set(all[:1]), sc.params); !errors.Is(err, ErrNoFund) {
		t.Fatalf("no fund: %v", err)
	}
}

// Twenty mirrors, fourteen in one /24 and six in distinct /24s, placed
// only by the addresses their observers signed in probe results: read
// back from an exported CAR (which carries no placement of its own), the
// evidence puts each mirror in the /24 it was reached at, the fourteen
// together earn about one domain's share, and each of the six earns more
// than any of the fourteen. Without the reports (the same results with no
// address) nobody is placed: all twenty share the one unknown domain. (The
// CAR of these 1,700 items also checks that an export larger than one
// statement's worth of item CIDs reads back.)
func TestDomainsFromSignedObservations(t *testing.T) {
	shared := map[int]string{}
	for i := 6; i < 20; i++ {
		shared[i] = "net:203.0.113.0/24"
	}
	sc := build(t, 20, shared)
	s := NewSet()
	for _, raw := range sc.items {
		s.Add(raw)
	}
	var buf bytes.Buffer
	if err := WriteCAR(&buf, sc.params.Manifest, s, nil); err != nil {
		t.Fatal(err)
	}
	m, back, _, err := ReadCAR(&buf)
	if err != nil {
		t.Fatal(err)
	}
	p := sc.params
	p.Manifest = *m
	in, _, err := Derive(back, p)
	if err != nil {
		t.Fatal(err)
	}
	for _, mi := range in.Mirrors {
		if want := sc.Domains[mi.Peer]; mi.Domain != want {
			t.Errorf("%s placed in %q, reached in %q", mi.Peer, mi.Domain, want)
		}
	}
	tab, err := ledger.Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	var farm, farmMax, soloMin uint64
	for _, l := range tab.Payouts {
		if l.Domain == "net:203.0.113.0/24" {
			farm += l.Amount
			farmMax = max(farmMax, l.Amount)
		} else if soloMin == 0 || l.Amount < soloMin {
			soloMin = l.Amount
		}
	}
	// Seven domains share uptime and diversity (800 of 1000); mirror 0's
	// receipt takes the traffic part.
	if farm < 800/7-10 || farm > 800/7+10 {
		t.Errorf("the fourteen earned %d together, want about one domain's %d", farm, 800/7)
	}
	if soloMin <= farmMax {
		t.Errorf("an independent mirror earned %d, a co-located one %d", soloMin, farmMax)
	}

	// The same epoch with addressless results: everyone unknown.
	bare := NewSet()
	for _, raw := range sc.items {
		st, err := verifyAny(raw)
		if err == nil && st.Kind == attest.KindProbe {
			pr := *st.Probe
			pr.Addr = ""
			if raw, err = attest.SignProbe(sc.Keys[st.Signer], pr); err != nil {
				t.Fatal(err)
			}
		}
		bare.Add(raw)
	}
	in, _, err = Derive(bare, sc.params)
	if err != nil {
		t.Fatal(err)
	}
	for _, mi := range in.Mirrors {
		if mi.Domain != ledger.UnknownDomain {
			t.Fatalf("%s placed in %q without any observation", mi.Peer, mi.Domain)
		}
	}
}
