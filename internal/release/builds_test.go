package release

import (
	"testing"
	"time"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/protocol"
)

func TestBuilds(t *testing.T) {
	m := newMaintainers(t, 70, 3)
	app := mustRecord(t, genesis(m, 1, 1, cid1, t0)).App
	sign := func(i int, seq uint64, cid string, version uint64) *attest.Statement {
		t.Helper()
		name := m.names[i]
		b := protocol.BuildAttestation{Builder: name, Seq: seq, Time: t0.UnixMilli(), App: app, Version: version, Build: "make", CID: cid}
		raw, err := attest.SignBuild(m.keys[name], b)
		if err != nil {
			t.Fatal(err)
		}
		st, err := attest.Verify(raw, t0.Add(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	bs := NewBuilds()
	if !bs.Add(sign(0, 1, cid2, 1)) || !bs.Add(sign(1, 1, cid1, 1)) || !bs.Add(sign(0, 2, cid1, 1)) {
		t.Fatal("attestations not kept")
	}
	if bs.Add(sign(0, 2, cid2, 1)) {
		t.Fatal("kept an attestation not newer than the builder's last")
	}
	bs.Add(sign(2, 1, cid2, 2))
	got := bs.For(app, 1)
	if len(got) != 2 || got[0].Builder > got[1].Builder {
		t.Fatalf("For = %+v", got)
	}
	for _, a := range got {
		if a.CID != cid1 {
			t.Fatalf("builder %s: kept %s, want its latest (%s)", a.Builder, a.CID, cid1)
		}
	}
	if len(bs.For(app, 2)) != 1 || len(bs.For(app, 3)) != 0 {
		t.Fatal("versions mixed")
	}
}
