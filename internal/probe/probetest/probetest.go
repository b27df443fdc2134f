// Package probetest builds signed probe results for tests: genuine ones
// (the nonce derived from the public values, the target's receipts on a
// pass) and the forgeries an attacker would try. It is test support only:
// no production code imports it.
package probetest

import (
	"encoding/hex"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/probe"
	"github.com/mirrornet/mirrornet/protocol"
)

// Key returns a deterministic Ed25519 key and its peer ID.
func Key(t testing.TB, seed uint64) (crypto.PrivKey, peer.ID) {
	t.Helper()
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	s[31] = 0x5e
	k, _, err := crypto.GenerateEd25519Key(rand.NewChaCha8(s))
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, id
}

// Spec describes one result.
type Spec struct {
	Target  peer.ID
	Bundle  string
	Outcome string
	At      time.Time
	// EpochLength is the network's (probe.Config.EpochLength).
	EpochLength time.Duration
	Seq         uint64
	// Addr is the observed address of the target ("" for none).
	Addr string
	// TargetKey, when set, signs receipts: a genuine answer, or a
	// colluding target.
	TargetKey crypto.PrivKey
}

// Result builds the result an observer would sign for s: the nonce of
// (epoch, round of At, target, observer), a canary challenge when the
// nonce says so, and on a pass the target's receipt for the bundle root
// (or the canary block) when TargetKey is set.
func Result(t testing.TB, observer peer.ID, s Spec) protocol.ProbeResult {
	t.Helper()
	epoch, round, nonce := probe.Nonce(s.At, s.EpochLength, s.Target, observer)
	p := protocol.ProbeResult{
		Observer: observer.String(), Target: s.Target.String(), Epoch: epoch, Round: round, Seq: s.Seq,
		Time: s.At.UnixMilli(), Bundle: s.Bundle, Outcome: s.Outcome, LatencyMS: 3, Addr: s.Addr,
		Challenge: protocol.ChallengeDescent + ":" + hex.EncodeToString(nonce[:]) + ":0",
	}
	block := s.Bundle
	if protocol.IsCanary(nonce) {
		p.Challenge = protocol.ChallengeCanary + ":" + hex.EncodeToString(nonce[:])
		block = protocol.CanaryCID(nonce)
	}
	if p.Seq == 0 {
		p.Seq = uint64(s.At.UnixMilli())
	}
	if s.Outcome == protocol.OutcomePass && s.TargetKey != nil {
		r, err := attest.SignProbeReceipt(s.TargetKey, observer.String(), nonce, block, s.At.Add(time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		p.Receipts = []string{r}
	}
	return p
}

// Sign signs p with the observer's key (through attest.SignProbe, which
// refuses a pass without valid receipts).
func Sign(t testing.TB, key crypto.PrivKey, p protocol.ProbeResult) []byte {
	t.Helper()
	raw, err := attest.SignProbe(key, p)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// Statement signs p and verifies it at now, as a receiver would.
func Statement(t testing.TB, key crypto.PrivKey, p protocol.ProbeResult, now time.Time) *attest.Statement {
	t.Helper()
	st, err := attest.Verify(Sign(t, key, p), now)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// IsCanary reports whether the challenge observer puts to target at at is
// a canary.
func IsCanary(at time.Time, epochLength time.Duration, target, observer peer.ID) bool {
	_, _, n := probe.Nonce(at, epochLength, target, observer)
	return protocol.IsCanary(n)
}

// Forge seals p as a probe statement signed by key without any check: what
// an attacker can send (a pass with no receipt, or a receipt it made
// itself). Receivers must reject it.
func Forge(t testing.TB, key crypto.PrivKey, p protocol.ProbeResult) []byte {
	t.Helper()
	payload, err := protocol.Encode(&p)
	if err != nil {
		t.Fatal(err)
	}
	env, err := record.Seal(&forged{payload: payload}, key)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

type forged struct{ payload []byte }

func (f *forged) Domain() string                 { return protocol.DomainProbe }
func (f *forged) Codec() []byte                  { return []byte(protocol.PayloadProbe) }
func (f *forged) MarshalRecord() ([]byte, error) { return f.payload, nil }
func (f *forged) UnmarshalRecord(b []byte) error { f.payload = b; return nil }
