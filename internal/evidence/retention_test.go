package evidence

import (
	"encoding/json"
	"math/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/evidence/evidencetest"
	"github.com/mirrornet/mirrornet/protocol"
)

// Liveness samples of strangers no probe result names are no evidence:
// an export that holds them gives the same payouts as one without, they
// get no ledger line, and the report says why they were left out.
func TestDeriveLeavesOutUnnamedLiveness(t *testing.T) {
	sc := build(t, 5, nil)
	clean := NewSet()
	for _, raw := range sc.items {
		clean.Add(raw)
	}
	flooded := NewSet()
	for _, raw := range sc.items {
		flooded.Add(raw)
	}
	r := rand.New(rand.NewSource(9))
	const strangers = 20
	for i := range strangers {
		k, _, _ := crypto.GenerateEd25519Key(r)
		id, _ := peer.IDFromPrivateKey(k)
		for round := range 12 {
			at := evidencetest.Epoch0 + int64(round)*evidencetest.RoundMS + 2000
			raw, err := attest.SignLiveness(k, protocol.Liveness{Peer: id.String(), State: protocol.StateUp, Seq: uint64(at), Time: at,
				Addrs: []string{}, Bundles: []string{evidencetest.AppCID}, Version: "x", TTL: int64(i%3) * evidencetest.RoundMS})
			if err != nil {
				t.Fatal(err)
			}
			flooded.Add(raw)
		}
	}
	in, rep, err := Derive(flooded, sc.params)
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Mirrors) != 5 {
		t.Fatalf("%d ledger lines, want the 5 probed mirrors'", len(in.Mirrors))
	}
	if rep.Dropped[DropUnnamed] != strangers*12 {
		t.Fatalf("dropped %v, want %d unnamed samples", rep.Dropped, strangers*12)
	}
	a, b := table(t, clean, sc.params), table(t, flooded, sc.params)
	ja, _ := json.Marshal(a.Payouts)
	jb, _ := json.Marshal(b.Payouts)
	if string(ja) != string(jb) {
		t.Fatalf("the strangers changed the payouts:\n%s\n%s", ja, jb)
	}
}

// A sample counts when a probe result names its mirror in any round it
// covers: a mirror that signs once with a TTL of three rounds, probed only
// in the third, keeps its sample.
func TestAdmitsByTTLCoverage(t *testing.T) {
	sc := build(t, 3, nil)
	var probes []*attest.Statement
	for _, raw := range sc.items {
		if st, _ := attest.Verify(raw, time.UnixMilli(1<<50)); st != nil && st.Kind == attest.KindProbe {
			probes = append(probes, st)
		}
	}
	k, _, _ := crypto.GenerateEd25519Key(rand.New(rand.NewSource(4)))
	id, _ := peer.IDFromPrivateKey(k)
	at := evidencetest.Epoch0 + evidencetest.RoundMS - 1000 // the end of round 0
	raw, _ := attest.SignLiveness(k, protocol.Liveness{Peer: id.String(), State: protocol.StateUp, Seq: 1, Time: at, Addrs: []string{},
		Version: "x", TTL: 2 * evidencetest.RoundMS})
	live, err := attest.Verify(raw, time.UnixMilli(at))
	if err != nil {
		t.Fatal(err)
	}
	if first, last := Covers(live, evidencetest.RoundMS); last-first != 2 {
		t.Fatalf("covers rounds %d..%d, want three", first, last)
	}
	n := NewNames(evidencetest.RoundMS)
	for _, st := range probes {
		n.Add(st)
	}
	if n.Admits(live) {
		t.Fatal("a mirror no probe names was admitted")
	}
	// Name it as an observer in round 2 (relative).
	named := *probes[0]
	pr := *named.Probe
	pr.Observer = id.String()
	named.Probe = &pr
	named.Time = time.UnixMilli(evidencetest.Epoch0 + 2*evidencetest.RoundMS + 10)
	n.Add(&named)
	if !n.Admits(live) {
		t.Fatal("a mirror named in a round its sample covers was not admitted")
	}
	named.Time = time.UnixMilli(evidencetest.Epoch0 + 3*evidencetest.RoundMS + 10)
	n2 := NewNames(evidencetest.RoundMS)
	n2.Add(&named)
	if n2.Admits(live) {
		t.Fatal("a name in a round the sample does not cover admitted it")
	}
}
