package attest

import (
	"crypto/rand"
	"errors"
	"fmt"
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

const sampleBundle = "bafkreibundle"

// descentRound returns a round of epoch 3 whose nonce (for obs probing
// target) is not a canary, and that nonce.
func descentRound(t *testing.T, target, obs peer.ID) (uint64, [16]byte) {
	t.Helper()
	for r := uint64(0); r < protocol.ProbeRoundsPerEpoch; r++ {
		n := protocol.ProbeNonce(3, r, target.String(), obs.String())
		if !protocol.IsCanary(n) {
			return r, n
		}
	}
	t.Fatal("every round is a canary")
	return 0, [16]byte{}
}

func receipt(t *testing.T, targetKey crypto.PrivKey, obs peer.ID, nonce [16]byte, c string, at time.Time) string {
	t.Helper()
	s, err := SignProbeReceipt(targetKey, obs.String(), nonce, c, at)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sampleProbe is a passing result of obs about target, with the target's
// receipt for the bundle root.
func sampleProbe(t *testing.T, targetKey crypto.PrivKey, obs peer.ID, now time.Time) protocol.ProbeResult {
	t.Helper()
	target, _ := peer.IDFromPrivateKey(targetKey)
	round, nonce := descentRound(t, target, obs)
	return protocol.ProbeResult{
		Observer: obs.String(), Target: target.String(), Epoch: 3, Seq: 5, Time: now.UnixMilli(),
		Bundle: sampleBundle, Challenge: fmt.Sprintf("descent:%x:2", nonce[:]),
		Outcome: protocol.OutcomePass, LatencyMS: 4, Round: round,
		Receipts: []string{receipt(t, targetKey, obs, nonce, sampleBundle, now.Add(2*time.Millisecond))},
	}
}

func TestSignVerifyProbe(t *testing.T) {
	key, id := probeKey(t)
	tkey, _ := probeKey(t)
	now := time.UnixMilli(1_700_000_000_000)
	raw, err := SignProbe(key, sampleProbe(t, tkey, id, now))
	if err != nil {
		t.Fatal(err)
	}
	st, err := Verify(raw, now)
	if err != nil {
		t.Fatal(err)
	}
	if st.Kind != KindProbe || st.Signer != id || st.Probe == nil || st.Probe.Seq != 5 || !st.Time.Equal(now) || len(st.Probe.Receipts) != 1 {
		t.Fatalf("statement %+v", st)
	}
	if _, err := Verify(raw, now.Add(protocol.MaxProbeAge+time.Second)); !errors.Is(err, ErrTooOld) || Classify(err) != Ignore {
		t.Errorf("old probe: %v", err)
	}
}

func TestSignProbeRefuses(t *testing.T) {
	key, id := probeKey(t)
	tkey, _ := probeKey(t)
	_, other := probeKey(t)
	now := time.UnixMilli(1_700_000_000_000)
	p := sampleProbe(t, tkey, other, now)
	if _, err := SignProbe(key, p); !errors.Is(err, ErrSubject) && !errors.Is(err, ErrReceipt) {
		t.Errorf("foreign observer: %v", err)
	}
	p = sampleProbe(t, tkey, id, now)
	p.Outcome = "perfect"
	if _, err := SignProbe(key, p); !errors.Is(err, ErrPayload) {
		t.Errorf("invalid outcome: %v", err)
	}
	p = sampleProbe(t, tkey, id, now)
	p.Receipts = nil
	if _, err := SignProbe(key, p); !errors.Is(err, ErrPayload) {
		t.Errorf("pass without receipt: %v", err)
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

func encProbe(t *testing.T, p protocol.ProbeResult) []byte {
	t.Helper()
	b, err := protocol.Encode(&p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestForgedProbeRejected(t *testing.T) {
	key, id := probeKey(t)
	tkey, _ := probeKey(t)
	_, other := probeKey(t)
	now := time.UnixMilli(1_700_000_000_000)
	good, err := SignProbe(key, sampleProbe(t, tkey, id, now))
	if err != nil {
		t.Fatal(err)
	}
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-80] ^= 1
	badOutcome := sampleProbe(t, tkey, id, now)
	badOutcome.Outcome = "pass!"
	selfProbe := sampleProbe(t, tkey, id, now)
	selfProbe.Target = id.String()
	noChallenge := sampleProbe(t, tkey, id, now)
	noChallenge.Challenge = ""
	// a liveness-domain signature over a probe payload must not verify as a probe.
	livenessEnv, err := record.Seal(&rawRecord{spec: specFor(KindLiveness), payload: encProbe(t, sampleProbe(t, tkey, id, now))}, key)
	if err != nil {
		t.Fatal(err)
	}
	crossKind, _ := livenessEnv.Marshal()

	cases := map[string][]byte{
		"signed for someone else": forge(t, key, encProbe(t, sampleProbe(t, tkey, other, now))),
		"bit flipped":             tampered,
		"invalid outcome":         forge(t, key, encProbe(t, badOutcome)),
		"self probe":              forge(t, key, encProbe(t, selfProbe)),
		"no challenge":            forge(t, key, encProbe(t, noChallenge)),
		"non-canonical":           forge(t, key, []byte(` `+string(encProbe(t, sampleProbe(t, tkey, id, now))))),
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

// TestReceipts: a passing result is bound to the target's answer. Each
// way of making a pass without one is rejected, by Verify, as provably bad.
func TestReceipts(t *testing.T) {
	okey, obs := probeKey(t)
	tkey, target := probeKey(t)
	otherKey, other := probeKey(t)
	now := time.UnixMilli(1_700_000_000_000)
	round, nonce := descentRound(t, target, obs)

	mod := func(f func(p *protocol.ProbeResult)) protocol.ProbeResult {
		p := sampleProbe(t, tkey, obs, now)
		f(&p)
		return p
	}
	// A receipt the target really made, for another round of the same
	// observer (a replay into a later challenge).
	var oldNonce [16]byte
	for r := uint64(0); r < protocol.ProbeRoundsPerEpoch; r++ {
		if r != round {
			oldNonce = protocol.ProbeNonce(3, r, target.String(), obs.String())
			break
		}
	}
	cases := map[string]protocol.ProbeResult{
		"no receipt": mod(func(p *protocol.ProbeResult) { p.Receipts = nil }),
		"forged: signed by another key": mod(func(p *protocol.ProbeResult) {
			p.Receipts = []string{receipt(t, otherKey, obs, nonce, sampleBundle, now)}
		}),
		"forged: time changed after signing": mod(func(p *protocol.ProbeResult) {
			r, _ := protocol.ParseReceipt(p.Receipts[0])
			r.Time++
			p.Receipts = []string{r.String()}
		}),
		"replayed: another round's receipt": mod(func(p *protocol.ProbeResult) {
			p.Receipts = []string{receipt(t, tkey, obs, oldNonce, sampleBundle, now)}
		}),
		"replayed: an old receipt of this nonce": mod(func(p *protocol.ProbeResult) {
			p.Receipts = []string{receipt(t, tkey, obs, nonce, sampleBundle, now.Add(-time.Hour))}
		}),
		"wrong observer": mod(func(p *protocol.ProbeResult) {
			p.Receipts = []string{receipt(t, tkey, other, nonce, sampleBundle, now)}
		}),
		"wrong nonce": mod(func(p *protocol.ProbeResult) {
			p.Receipts = []string{receipt(t, tkey, obs, [16]byte{1, 2, 3}, sampleBundle, now)}
		}),
		"receipt for another block first": mod(func(p *protocol.ProbeResult) {
			p.Receipts = []string{receipt(t, tkey, obs, nonce, "bafkreiother", now)}
		}),
		"not a receipt": mod(func(p *protocol.ProbeResult) { p.Receipts = []string{"!!"} }),
	}
	for name, p := range cases {
		if _, err := SignProbe(okey, p); err == nil {
			t.Errorf("%s: SignProbe signed it", name)
		}
		_, err := Verify(forge(t, okey, encProbe(t, p)), now)
		if err == nil || Classify(err) != Reject {
			t.Errorf("%s: Verify: %v (%v), want Reject", name, err, Classify(err))
		}
	}
	// A wrong nonce in the challenge itself (not derived from the public
	// values) is invalid whatever the receipts say.
	p := sampleProbe(t, tkey, obs, now)
	p.Round = (round + 1) % protocol.ProbeRoundsPerEpoch
	if _, err := Verify(forge(t, okey, encProbe(t, p)), now); !errors.Is(err, ErrPayload) {
		t.Errorf("challenge nonce of another round: %v", err)
	}
	// The genuine one passes, and VerifyProbeReceipt names what it checked.
	raw := sampleProbe(t, tkey, obs, now).Receipts[0]
	if r, err := VerifyProbeReceipt(raw, target.String(), obs.String(), nonce, now, now.Add(time.Second)); err != nil || r.CID != sampleBundle {
		t.Errorf("genuine receipt: %+v %v", r, err)
	}
	if _, err := VerifyProbeReceipt(raw, target.String(), other.String(), nonce, now, now.Add(time.Second)); !errors.Is(err, ErrReceipt) {
		t.Errorf("receipt for another observer: %v", err)
	}
}

// A failure carries no proof (a target that does not answer signs
// nothing): it needs no receipt.
func TestFailureNeedsNoReceipt(t *testing.T) {
	okey, obs := probeKey(t)
	tkey, _ := probeKey(t)
	now := time.UnixMilli(1_700_000_000_000)
	p := sampleProbe(t, tkey, obs, now)
	p.Outcome, p.Receipts = protocol.OutcomeTimeout, nil
	raw, err := SignProbe(okey, p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(raw, now); err != nil {
		t.Fatal(err)
	}
}
