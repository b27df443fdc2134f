// Package evidencetest builds signed evidence of a fund epoch for tests
// and benchmarks: releases, a fund, payout addresses, liveness samples,
// probe results and a witnessed receipt, all really signed.
package evidencetest

import (
	"fmt"
	"math/rand"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/probe"
	"github.com/mirrornet/mirrornet/internal/probe/probetest"
	"github.com/mirrornet/mirrornet/protocol"
)

const (
	// Observers is the committee size of the scenario's K of 2.
	Observers = 6
	AppCID    = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
	RoundMS   = 5 * 60 * 1000
)

// Epoch0 is the start of the fund's epoch 0.
var Epoch0 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

// Scenario is one epoch's signed evidence.
type Scenario struct {
	Items   [][]byte
	App     string
	Fund    protocol.Fund
	Mirrors []peer.ID
	Keys    map[peer.ID]crypto.PrivKey
	// Domains places each mirror (by peer ID string).
	Domains map[string]string
	// Maintainers is the app's maintainer set; Release its signed
	// release (Items[0]) and SignedFund its fund (Items[1]).
	Maintainers protocol.MaintainerSet
	Release     []byte
	SignedFund  []byte
	// MaintainerKey signs the release and the fund.
	MaintainerKey crypto.PrivKey
}

func newKey(t testing.TB, r *rand.Rand) (crypto.PrivKey, peer.ID) {
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

// Build makes one hour-long epoch (12 probe rounds of 5 minutes) with n
// mirrors, each in its own /24 (10.0.i.0/24) except those listed in
// shared (a domain "net:A.B.C.0/24"), all up and probed every round by
// their committees (one seat per other domain; K 2), each result reporting the address the
// observer reached the target at (in the target's /24); a client's
// receipt for mirror 0 is witnessed by mirror 1.
func Build(t testing.TB, n int, shared map[int]string) *Scenario {
	ok := func(b []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	r := rand.New(rand.NewSource(42))
	mk, mid := newKey(t, r)
	set := protocol.MaintainerSet{Keys: []string{mid.String()}, Threshold: 1}
	app := protocol.DeriveAppID("demo", set)
	rel := protocol.Release{App: app, Name: "demo", Version: 1, CID: AppCID, Time: Epoch0 - 1000, Expires: Epoch0 + 10*24*3600*1000, Maintainers: set}
	sc := &Scenario{Keys: map[peer.ID]crypto.PrivKey{}, App: app}
	sc.Items = append(sc.Items, ok(attest.SignRelease(rel, mk)))
	fund := protocol.Fund{App: app, Version: 1, Unit: "STX", Budget: 1000, Start: Epoch0, EpochMS: 3600 * 1000,
		MinVerified: 500, RedundancyTarget: 5, Weights: protocol.FundWeights{Uptime: 4, Diversity: 4, Traffic: 2},
		KeyCap: 1 << 30, NetworkCap: 4 << 30, Time: Epoch0 - 500}
	sc.Items = append(sc.Items, ok(attest.SignFund(fund, set, mk)))
	domains := map[string]string{}
	var addrs []string
	for i := range n {
		k, id := newKey(t, r)
		sc.Mirrors = append(sc.Mirrors, id)
		sc.Keys[id] = k
		domains[id.String()] = fmt.Sprintf("net:10.0.%d.0/24", i)
		if d, ok := shared[i]; ok {
			domains[id.String()] = d
		}
		addrs = append(addrs, AddrIn(t, domains[id.String()], i+1))
		sc.Items = append(sc.Items, ok(attest.SignPayout(k, protocol.PayoutAddress{Peer: id.String(), Seq: 1, Time: Epoch0 - 100, Addresses: map[string]string{"STX": fmt.Sprintf("SP%03d", i)}})))
	}
	seq := uint64(Epoch0)
	for round := range 12 {
		at := Epoch0 + int64(round)*RoundMS + 1000
		draw := probe.NewDraw(uint64(at/RoundMS), sc.Mirrors, func(p peer.ID) string { return domains[p.String()] }, Observers)
		for i, id := range sc.Mirrors {
			seq++
			sc.Items = append(sc.Items, ok(attest.SignLiveness(sc.Keys[id], protocol.Liveness{Peer: id.String(), State: protocol.StateUp, Seq: seq, Time: at, Addrs: []string{}, Bundles: []string{AppCID}, Version: "test"})))
			// The target's committee probes it (one seat per other
			// domain, six at most: K 2).
			for _, seat := range draw.Committee(id) {
				obs := seat.Holder
				seq++
				// The challenge's nonce is derived from (epoch, round,
				// target, observer); the first round of the epoch whose
				// nonce is no canary, and the target's receipt.
				when := time.UnixMilli(at + 10)
				for probetest.IsCanary(when, RoundMS*time.Millisecond, id, obs) {
					when = when.Add(RoundMS * time.Millisecond / protocol.ProbeRoundsPerEpoch)
				}
				pr := probetest.Result(t, obs, probetest.Spec{Target: id, Bundle: AppCID, Outcome: protocol.OutcomePass,
					At: when, EpochLength: RoundMS * time.Millisecond, Seq: seq, TargetKey: sc.Keys[id]})
				pr.LatencyMS = 5
				pr.Addr = addrs[i]
				sc.Items = append(sc.Items, ok(attest.SignProbe(sc.Keys[obs], pr)))
			}
		}
	}
	// A client in 198.51.100.0/24 fetched from mirror 0; mirror 1 witnessed.
	ck, cid := newKey(t, r)
	rc := ok(attest.SignReceipt(ck, protocol.Receipt{Client: cid.String(), Seq: 1, Time: Epoch0 + 60_000, Mirror: sc.Mirrors[0].String(), CID: AppCID, Bytes: 1 << 20}))
	sc.Items = append(sc.Items, ok(attest.SignWitness(sc.Keys[sc.Mirrors[1]], protocol.ReceiptWitness{Witness: sc.Mirrors[1].String(), Seq: 1, Time: Epoch0 + 61_000, Network: "198.51.100.0/24", Receipts: [][]byte{rc}})))
	sc.Fund, sc.Domains, sc.Maintainers = fund, domains, set
	sc.Release, sc.SignedFund, sc.MaintainerKey = sc.Items[0], sc.Items[1], mk
	return sc
}

// AddrIn returns host number host of domain d ("net:A.B.C.0/24"), as a
// probe result reports it.
func AddrIn(t testing.TB, d string, host int) string {
	t.Helper()
	pfx, err := netip.ParsePrefix(strings.TrimPrefix(d, "net:"))
	if err != nil || !pfx.Addr().Is4() || pfx.Bits() != 24 || host < 1 || host > 254 {
		t.Fatalf("evidencetest: domain %q, host %d: want net:A.B.C.0/24 and 1..254", d, host)
	}
	b := pfx.Addr().As4()
	b[3] = byte(host)
	return netip.AddrFrom4(b).String()
}

// ByDigest returns the scenario's items with every liveness sample
// re-signed to name its holdings by digest (protocol.Liveness.Holdings)
// instead of listing them, and each mirror's signed holdings statement
// added, except those of the mirrors (by index) in without.
func ByDigest(t testing.TB, sc *Scenario, without map[int]bool) [][]byte {
	t.Helper()
	far := time.UnixMilli(Epoch0).Add(365 * 24 * time.Hour)
	set := []string{AppCID}
	var out [][]byte
	for _, raw := range sc.Items {
		st, _ := attest.Verify(raw, far) // too old by then, still genuine
		if st == nil || st.Kind != attest.KindLiveness {
			out = append(out, raw)
			continue
		}
		l := *st.Liveness
		l.Bundles, l.Holdings, l.HoldingsCount = nil, protocol.HoldingsDigest(set), len(set)
		b, err := attest.SignLiveness(sc.Keys[st.Signer], l)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	for i, id := range sc.Mirrors {
		if without[i] {
			continue
		}
		b, err := attest.SignHoldings(sc.Keys[id], protocol.Holdings{Peer: id.String(), Seq: 1, Time: Epoch0 - 10_000, Bundles: set})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}
