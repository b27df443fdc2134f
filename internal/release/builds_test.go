package release

import (
	"errors"
	"testing"
	"time"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/protocol"
)

func TestBuilds(t *testing.T) {
	m := newMaintainers(t, 70, 3)
	builders := newMaintainers(t, 71, 3)
	stranger := newMaintainers(t, 72, 1)
	p := genesis(m, 1, 1, cid1, t0)
	p.Builders = &protocol.MaintainerSet{Keys: builders.names[:2], Threshold: 1}
	rel1 := mustRecord(t, p)
	p2 := p
	p2.App, p2.Version = rel1.App, 2
	p2.Builders = &protocol.MaintainerSet{Keys: builders.names, Threshold: 1}
	rel2 := mustRecord(t, p2)
	app := rel1.App
	sign := func(k maintainers, i int, seq uint64, cid string, version uint64) *attest.Statement {
		t.Helper()
		name := k.names[i]
		b := protocol.BuildAttestation{Builder: name, Seq: seq, Time: t0.UnixMilli(), App: app, Version: version, Build: "make", CID: cid}
		raw, err := attest.SignBuild(k.keys[name], b)
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
	for _, st := range []*attest.Statement{sign(builders, 0, 1, cid2, 1), sign(builders, 1, 1, cid1, 1), sign(builders, 0, 2, cid1, 1)} {
		if err := bs.Add(st, rel1); err != nil {
			t.Fatalf("declared builder's attestation not kept: %v", err)
		}
	}
	if err := bs.Add(sign(builders, 0, 2, cid2, 1), rel1); !errors.Is(err, attest.ErrReplay) {
		t.Fatalf("not newer: %v", err)
	}
	// No slots for anyone else: strangers, the release's maintainers, a
	// builder declared only for another version.
	for _, st := range []*attest.Statement{sign(stranger, 0, 1, cid1, 1), sign(m, 0, 1, cid1, 1), sign(builders, 2, 1, cid1, 1)} {
		if err := bs.Add(st, rel1); !errors.Is(err, ErrUnlistedBuilder) {
			t.Fatalf("unlisted %s: %v, want ErrUnlistedBuilder", st.Signer, err)
		}
	}
	if err := bs.Add(sign(builders, 2, 1, cid2, 2), rel2); err != nil {
		t.Fatal(err)
	}
	if err := bs.Add(sign(builders, 2, 3, cid2, 2), rel1); err == nil {
		t.Fatal("kept an attestation of version 2 against release 1")
	}
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
