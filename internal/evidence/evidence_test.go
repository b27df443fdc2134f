package evidence

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/ledger"
	"github.com/mirrornet/mirrornet/protocol"
)

const (
	appCID  = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
	roundMS = 5 * 60 * 1000
)

var epoch0 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

type scenario struct {
	items   [][]byte
	params  Params
	mirrors []peer.ID
	keys    map[peer.ID]crypto.PrivKey
}

func key(t testing.TB, r *rand.Rand) (crypto.PrivKey, peer.ID) {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(r)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, id
}

// build makes one hour-long epoch (12 probe rounds) with n mirrors, each in
// its own /24 except those listed in shared, all up and probed every round
// by three observers of other domains; mirror 0 gets receipts.
func build(t testing.TB, n int, shared map[int]string) *scenario {
	ok := func(b []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	r := rand.New(rand.NewSource(42))
	mk, mid := key(t, r)
	set := protocol.MaintainerSet{Keys: []string{mid.String()}, Threshold: 1}
	app := protocol.DeriveAppID("demo", set)
	rel := protocol.Release{App: app, Name: "demo", Version: 1, CID: appCID, Time: epoch0 - 1000, Expires: epoch0 + 10*24*3600*1000, Maintainers: set}
	sc := &scenario{keys: map[peer.ID]crypto.PrivKey{}}
	sc.items = append(sc.items, ok(attest.SignRelease(rel, mk)))
	fund := protocol.Fund{App: app, Version: 1, Unit: "STX", Budget: 1000, Start: epoch0, EpochMS: 3600 * 1000,
		MinVerified: 500, RedundancyTarget: 5, Weights: protocol.FundWeights{Uptime: 4, Diversity: 4, Traffic: 2},
		KeyCap: 1 << 30, NetworkCap: 4 << 30, Time: epoch0 - 500}
	sc.items = append(sc.items, ok(attest.SignFund(fund, set, mk)))
	domains := map[string]string{}
	for i := range n {
		k, id := key(t, r)
		sc.mirrors = append(sc.mirrors, id)
		sc.keys[id] = k
		domains[id.String()] = fmt.Sprintf("net:10.0.%d.0/24", i)
		if d, ok := shared[i]; ok {
			domains[id.String()] = d
		}
		sc.items = append(sc.items, ok(attest.SignPayout(k, protocol.PayoutAddress{Peer: id.String(), Seq: 1, Time: epoch0 - 100, Addresses: map[string]string{"STX": fmt.Sprintf("SP%03d", i)}})))
	}
	seq := uint64(epoch0)
	for round := range 12 {
		at := epoch0 + int64(round)*roundMS + 1000
		for i, id := range sc.mirrors {
			seq++
			sc.items = append(sc.items, ok(attest.SignLiveness(sc.keys[id], protocol.Liveness{Peer: id.String(), State: protocol.StateUp, Seq: seq, Time: at, Addrs: []string{}, Bundles: []string{appCID}, Version: "test"})))
			// Three observers from three domains other than the target's.
			seen := map[string]bool{domains[id.String()]: true}
			for j := 1; j < n && len(seen) <= 3; j++ {
				obs := sc.mirrors[(i+j)%n]
				if seen[domains[obs.String()]] {
					continue
				}
				seen[domains[obs.String()]] = true
				seq++
				sc.items = append(sc.items, ok(attest.SignProbe(sc.keys[obs], protocol.ProbeResult{
					Observer: obs.String(), Target: id.String(), Epoch: uint64(at / roundMS), Seq: seq, Time: at + 10,
					Bundle: appCID, Challenge: "descent:00112233445566778899aabbccddeeff:0", Outcome: protocol.OutcomePass, LatencyMS: 5})))
			}
		}
	}
	// A client in 198.51.100.0/24 fetched from mirror 0; mirror 1 witnessed.
	ck, cid := key(t, r)
	rc := ok(attest.SignReceipt(ck, protocol.Receipt{Client: cid.String(), Seq: 1, Time: epoch0 + 60_000, Mirror: sc.mirrors[0].String(), CID: appCID, Bytes: 1 << 20}))
	sc.items = append(sc.items, ok(attest.SignWitness(sc.keys[sc.mirrors[1]], protocol.ReceiptWitness{Witness: sc.mirrors[1].String(), Seq: 1, Time: epoch0 + 61_000, Network: "198.51.100.0/24", Receipts: [][]byte{rc}})))
	sc.params = Params{
		Manifest: Manifest{App: app, Fund: fund.ID(), Epoch: 0, ProbeEpochMS: roundMS, K: 2},
		Domains:  domains,
		Judge:    MajorityJudge(2),
	}
	return sc
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
	sc := build(t, 4, map[int]string{0: "net:x", 1: "net:x"})
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
