package attest_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/protocol"
)

// The seed corpus of FuzzVerify lives in testdata/fuzz/FuzzVerify and runs
// under plain `go test`. Regenerate it (keys are fixed, Ed25519 signing is
// deterministic, so the files do not change) with
//
//	go test ./attest -run TestWriteFuzzSeeds -write-seeds
var writeSeeds = flag.Bool("write-seeds", false, "rewrite the generated fuzz seed corpus in testdata/fuzz")

func TestWriteFuzzSeeds(t *testing.T) {
	if !*writeSeeds {
		t.Skip("run with -write-seeds to regenerate the seed corpus")
	}
	key, id := fixedKey(t, 1)
	_, other := fixedKey(t, 2)
	now := t0.UnixMilli()
	good := mustSign(t, key, liveness(id, 7, t0))
	leave := liveness(id, 8, t0)
	leave.State = protocol.StateLeaving
	leave.Region, leave.Apps = "eu", []string{"app-a"}
	otherKey, _ := fixedKey(t, 2)
	round := uint64(0)
	for protocol.IsCanary(protocol.ProbeNonce(3, round, other.String(), id.String())) {
		round++
	}
	nonce := protocol.ProbeNonce(3, round, other.String(), id.String())
	rcpt, err := attest.SignProbeReceipt(otherKey, id.String(), nonce, "bafkreibundle", t0.Add(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	probe, err := attest.SignProbe(key, protocol.ProbeResult{
		Observer: id.String(), Target: other.String(), Epoch: 3, Seq: 5, Time: now,
		Bundle: "bafkreibundle", Challenge: fmt.Sprintf("descent:%x:2.0", nonce[:]),
		Outcome: protocol.OutcomePass, LatencyMS: 4, Round: round, Addr: "192.0.2.7",
		Receipts: []string{rcpt},
	})
	if err != nil {
		t.Fatal(err)
	}
	build, err := attest.SignBuild(key, protocol.BuildAttestation{
		Builder: id.String(), Seq: 1, Time: now, Repo: "https://example.org/app.git",
		Commit: "0123456789abcdef0123456789abcdef01234567", Build: "nix build .#site", CID: "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
	})
	if err != nil {
		t.Fatal(err)
	}
	secp, _, err := crypto.GenerateSecp256k1Key(bytes.NewReader(bytes.Repeat([]byte{3}, 64)))
	if err != nil {
		t.Fatal(err)
	}
	secpID, _ := peer.IDFromPrivateKey(secp)
	payload := mustEncode(t, liveness(id, 7, t0))
	seeds := []struct {
		name string
		raw  []byte
		now  int64
	}{
		{"valid-liveness", good, now},
		{"valid-leaving", mustSign(t, key, leave), now},
		{"valid-probe", probe, now},
		{"valid-build", build, now},
		{"future", good, now - 10_000},
		{"too-old", good, now + 3_600_000},
		{"flipped-signature", append(bytes.Clone(good[:len(good)-1]), good[len(good)-1]^1), now},
		{"other-domain", seal(t, key, protocol.DomainProbe, protocol.PayloadLiveness, payload), now},
		{"other-signer", seal(t, key, protocol.DomainLiveness, protocol.PayloadLiveness, mustEncode(t, liveness(other, 7, t0))), now},
		{"secp256k1", seal(t, secp, protocol.DomainLiveness, protocol.PayloadLiveness, mustEncode(t, liveness(secpID, 7, t0))), now},
		{"duplicate-field", field(bytes.Clone(good), 2, []byte(protocol.PayloadLiveness)), now},
		{"null-bundles", seal(t, key, protocol.DomainLiveness, protocol.PayloadLiveness,
			bytes.Replace(payload, []byte(`"bundles":["bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"]`), []byte(`"bundles":null`), 1)), now},
		{"truncated", good[:len(good)/2], now},
		{"empty", nil, now},
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzVerify")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, s := range seeds {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nint64(%d)\n", s.raw, s.now)
		if err := os.WriteFile(filepath.Join(dir, s.name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzVerify: no input panics Verify; its answer is consistent with
// Classify (only timing errors come with a statement, and that statement
// verifies cleanly at its own time); an accepted statement is complete and
// carries exactly the bytes given.
func FuzzVerify(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw []byte, nowMs int64) {
		now := time.UnixMilli(nowMs)
		st, err := attest.Verify(raw, now)
		verdict := attest.Classify(err)
		switch {
		case err == nil:
		case verdict == attest.Reject:
			if st != nil {
				t.Fatalf("rejected (%v) but returned a statement", err)
			}
			return
		case errors.Is(err, attest.ErrFuture), errors.Is(err, attest.ErrTooOld):
			if st == nil {
				t.Fatalf("timing error %v without the statement", err)
			}
			if _, err := attest.Verify(raw, st.Time); err != nil {
				t.Fatalf("ignored for timing (%v) but does not verify at its own time: %v", attest.Reason(err), err)
			}
		default:
			t.Fatalf("unexpected %s error from Verify: %v", verdict, err)
		}
		if !bytes.Equal(st.Raw, raw) || st.Signer == "" || st.Seq == 0 {
			t.Fatalf("statement incomplete: %+v", st)
		}
		set := 0
		for _, p := range []bool{st.Liveness != nil, st.Probe != nil, st.Build != nil} {
			if p {
				set++
			}
		}
		if set != 1 {
			t.Fatalf("%d payload fields set for kind %s", set, st.Kind)
		}
		if st.Kind == attest.KindLiveness && (st.Liveness.Peer != st.Signer.String() || st.Liveness.Seq != st.Seq) {
			t.Fatalf("liveness subject %s / seq %d vs signer %s / seq %d", st.Liveness.Peer, st.Liveness.Seq, st.Signer, st.Seq)
		}
		again, err2 := attest.Verify(raw, now)
		if (err2 == nil) != (err == nil) || again.Signer != st.Signer || again.Seq != st.Seq {
			t.Fatal("Verify is not deterministic")
		}
	})
}
