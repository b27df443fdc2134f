package attest

import (
	"errors"
	"testing"
	"time"

	"github.com/mirrornet/mirrornet/protocol"
)

func TestSignBuildRoundTrip(t *testing.T) {
	keys, names := testKeys(t, 20, 2)
	_, app := testKeys(t, 21, 1)
	b := protocol.BuildAttestation{
		Builder: names[0], Seq: uint64(t0.UnixMilli()), Time: t0.UnixMilli(),
		App: protocol.DeriveAppID("demo", protocol.MaintainerSet{Keys: app, Threshold: 1}), Version: 3,
		Repo: "https://example.org/demo.git", Commit: "abc", Build: "make dist",
		CID: "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
	}
	raw, err := SignBuild(keys[0], b)
	if err != nil {
		t.Fatal(err)
	}
	// Old attestations stay valid: builds have no age limit.
	st, err := Verify(raw, t0.Add(365*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if st.Kind != KindBuild || st.Build == nil || *st.Build != b || st.Signer.String() != names[0] || st.Seq != b.Seq {
		t.Fatalf("statement = %+v", st)
	}
	if _, err := SignBuild(keys[1], b); !errors.Is(err, ErrSubject) {
		t.Fatalf("signed for another builder: %v", err)
	}
	bad := b
	bad.CID = ""
	if _, err := SignBuild(keys[0], bad); !errors.Is(err, ErrPayload) {
		t.Fatalf("no CID: %v", err)
	}
	bad = b
	bad.Version = 0
	if _, err := SignBuild(keys[0], bad); !errors.Is(err, ErrPayload) {
		t.Fatalf("app without version: %v", err)
	}
	// A replayed attestation is caught by the sequence guard.
	g := NewSeqGuard()
	if !g.Accept(st, t0) {
		t.Fatal("first attestation not accepted")
	}
	if err := g.Check(st); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay: %v", err)
	}
}
