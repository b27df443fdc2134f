package attest

import (
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"

	"github.com/mirrornet/mirrornet/protocol"
)

func probeKey(t *testing.T) (crypto.PrivKey, peer.ID) {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(k)
	return k, id
}

func sampleProbe(obs peer.ID, now time.Time) protocol.ProbeResult {
	return protocol.ProbeResult{
		Observer: obs.String(), Target: "12D3KooWTarget", Epoch: 3, Seq: 5, Time: now.UnixMilli(),
		Bundle: "bafkreibundle", Challenge: "descent:0123456789abcdef0123456789abcdef:2",
		Outcome: protocol.OutcomePass, LatencyMS: 4,
	}
}

func TestSignVerifyProbe(t *testing.T) {
	key, id := probeKey(t)
	now := time.UnixMilli(1_700_000_000_000)
	raw, err := SignProbe(key, sampleProbe(id, now))
	if err != nil {
		t.Fatal(err)
	}
	st, err := Verify(raw, now)
	if err != nil {
		t.Fatal(err)
	}
	if st.Kind != KindProbe || st.Signer != id || st.Probe == nil || st.Probe.Seq != 5 || !st.Time.Equal(now) {
		t.Fatalf("statement %+v", st)
	}
	if _, err := Verify(raw, now.Add(protocol.MaxProbeAge+time.Second)); !errors.Is(err, ErrTooOld) || Classify(err) != Ignore {
		t.Errorf("old probe: %v", err)
	}
}

func TestSignProbeRefuses(t *testing.T) {
	key, id := probeKey(t)
	_, other := probeKey(t)
	now := time.UnixMilli(1_700_000_000_000)
	p := sampleProbe(other, now)
	if _, err := SignProbe(key, p); !errors.Is(err, ErrSubject) {
		t.Errorf("foreign observer: %v", err)
	}
	p = sampleProbe(id, now)
	p.Outcome = "perfect"
	if _, err := SignProbe(key, p); !errors.Is(err, ErrPayload) {
		t.Errorf("invalid outcome: %v", err)
	}
}

// forge seals an arbitrary payload as a probe statement, bypassing SignProbe's checks.
func forge(t *testing.T, key crypto.PrivKey, payload []byte) []byte {
	t.Helper()
	env, err := record.Seal(&rawRecord{spec: specFor(KindProbe), payload: payload}, key)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestForgedProbeRejected(t *testing.T) {
	key, id := probeKey(t)
	_, other := probeKey(t)
	now := time.UnixMilli(1_700_000_000_000)
	enc := func(p protocol.ProbeResult) []byte {
		b, err := protocol.Encode(&p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good, err := SignProbe(key, sampleProbe(id, now))
	if err != nil {
		t.Fatal(err)
	}
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-80] ^= 1
	badOutcome := sampleProbe(id, now)
	badOutcome.Outcome = "pass!"
	selfProbe := sampleProbe(id, now)
	selfProbe.Target = id.String()
	noChallenge := sampleProbe(id, now)
	noChallenge.Challenge = ""
	// a liveness-domain signature over a probe payload must not verify as a probe.
	livenessEnv, err := record.Seal(&rawRecord{spec: specFor(KindLiveness), payload: enc(sampleProbe(id, now))}, key)
	if err != nil {
		t.Fatal(err)
	}
	crossKind, _ := livenessEnv.Marshal()

	cases := map[string][]byte{
		"signed for someone else": forge(t, key, enc(sampleProbe(other, now))),
		"bit flipped":             tampered,
		"invalid outcome":         forge(t, key, enc(badOutcome)),
		"self probe":              forge(t, key, enc(selfProbe)),
		"no challenge":            forge(t, key, enc(noChallenge)),
		"non-canonical":           forge(t, key, []byte(` `+string(enc(sampleProbe(id, now))))),
		"not json":                forge(t, key, []byte("garbage")),
		"liveness payload type":   crossKind,
		"truncated":               good[:len(good)/2],
	}
	for name, raw := range cases {
		_, err := Verify(raw, now)
		if err == nil || Classify(err) != Reject {
			t.Errorf("%s: got %v (%v), want Reject", name, err, Classify(err))
		}
	}
}
