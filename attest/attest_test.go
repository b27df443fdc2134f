package attest_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/protocol"
)

// t0 is the virtual time of every test; nothing here reads the clock.
var t0 = time.UnixMilli(1_800_000_000_000)

// testRecord seals arbitrary payload bytes under any domain and payload
// type, which is how a forger would build an envelope.
type testRecord struct {
	domain, typ string
	payload     []byte
}

func (r *testRecord) Domain() string                 { return r.domain }
func (r *testRecord) Codec() []byte                  { return []byte(r.typ) }
func (r *testRecord) MarshalRecord() ([]byte, error) { return r.payload, nil }
func (r *testRecord) UnmarshalRecord(b []byte) error { r.payload = b; return nil }

func seal(t testing.TB, key crypto.PrivKey, domain, typ string, payload []byte) []byte {
	t.Helper()
	env, err := record.Seal(&testRecord{domain, typ, payload}, key)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// fixedKey derives an Ed25519 key from n, so corpora are reproducible.
func fixedKey(t testing.TB, n byte) (crypto.PrivKey, peer.ID) {
	t.Helper()
	seed := bytes.Repeat([]byte{n}, ed25519.SeedSize)
	key, err := crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return key, id
}

func liveness(id peer.ID, seq uint64, at time.Time) protocol.Liveness {
	return protocol.Liveness{
		Peer: id.String(), State: protocol.StateUp, Seq: seq, Time: at.UnixMilli(),
		Addrs:   []string{"/ip4/127.0.0.1/tcp/4001"},
		HTTP:    "http://127.0.0.1:8080",
		Bundles: []string{"bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"},
		Version: "v0.1.0",
	}
}

func mustSign(t testing.TB, key crypto.PrivKey, l protocol.Liveness) []byte {
	t.Helper()
	raw, err := attest.SignLiveness(key, l)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func mustEncode(t testing.TB, l protocol.Liveness) []byte {
	t.Helper()
	b, err := protocol.Encode(&l)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// field appends one protobuf length-delimited field.
func field(b []byte, num int, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(num<<3|2))
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func TestSignVerifyLiveness(t *testing.T) {
	key, id := fixedKey(t, 1)
	raw := mustSign(t, key, liveness(id, 7, t0))
	st, err := attest.Verify(raw, t0)
	if err != nil {
		t.Fatal(err)
	}
	if st.Kind != attest.KindLiveness || st.Signer != id || st.Seq != 7 || !st.Time.Equal(t0) || st.Liveness == nil || !bytes.Equal(st.Raw, raw) {
		t.Fatalf("statement = %+v", st)
	}
	if v := attest.Classify(err); v != attest.Accept {
		t.Fatalf("Classify(nil) = %s", v)
	}
	if r := attest.Reason(nil); r != "ok" {
		t.Fatalf("Reason(nil) = %q", r)
	}
	// Signing is deterministic (Ed25519), so a statement has one byte form.
	if again := mustSign(t, key, liveness(id, 7, t0)); !bytes.Equal(again, raw) {
		t.Fatal("signing the same statement twice gave different bytes")
	}
}

func TestSignLivenessRefuses(t *testing.T) {
	key, id := fixedKey(t, 1)
	_, other := fixedKey(t, 2)
	l := liveness(other, 1, t0)
	if _, err := attest.SignLiveness(key, l); !errors.Is(err, attest.ErrSubject) {
		t.Fatalf("signing for another peer: %v, want ErrSubject", err)
	}
	l = liveness(id, 0, t0)
	if _, err := attest.SignLiveness(key, l); !errors.Is(err, attest.ErrPayload) || !errors.Is(err, protocol.ErrInvalid) {
		t.Fatalf("signing seq 0: %v, want ErrPayload/ErrInvalid", err)
	}
	secp, _, err := crypto.GenerateSecp256k1Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sid, _ := peer.IDFromPrivateKey(secp)
	if _, err := attest.SignLiveness(secp, liveness(sid, 1, t0)); !errors.Is(err, attest.ErrKeyType) {
		t.Fatalf("signing with secp256k1: %v, want ErrKeyType", err)
	}
}

// TestForgeries: no forged or mangled statement is ever accepted, each fails
// with its specific error, and provably bad ones are Reject while merely
// untimely ones are Ignore.
func TestForgeries(t *testing.T) {
	key, id := fixedKey(t, 1)
	otherKey, otherID := fixedKey(t, 2)
	good := mustSign(t, key, liveness(id, 7, t0))
	payload := mustEncode(t, liveness(id, 7, t0))

	flip := func(b []byte, i int) []byte {
		out := bytes.Clone(b)
		out[i] ^= 0x01
		return out
	}
	payloadAt := bytes.Index(good, payload)
	if payloadAt < 0 {
		t.Fatal("payload not found in envelope")
	}
	sealLiveness := func(k crypto.PrivKey, p []byte) []byte {
		return seal(t, k, protocol.DomainLiveness, protocol.PayloadLiveness, p)
	}
	// A payload re-encoded by hand, with a twist.
	canonical := string(payload)
	mangled := func(old, new string) []byte {
		t.Helper()
		if !strings.Contains(canonical, old) {
			t.Fatalf("%q not in %s", old, canonical)
		}
		return sealLiveness(key, []byte(strings.Replace(canonical, old, new, 1)))
	}
	secp, _, err := crypto.GenerateSecp256k1Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	secpID, _ := peer.IDFromPrivateKey(secp)
	rsaKey, _, err := crypto.GenerateRSAKeyPair(2048, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaID, _ := peer.IDFromPrivateKey(rsaKey)
	big := liveness(id, 7, t0)
	for i := range protocol.MaxBundles {
		big.Bundles = append(big.Bundles, strings.Repeat("b", 120)+string(rune('a'+i%26))+strings.Repeat("z", i/26))
	}
	big.Bundles = protocol.SortUnique(big.Bundles)

	// Duplicate the payload-type field at the end: protobuf parsers take
	// the last occurrence, so the envelope still parses and verifies, but
	// it is a second byte form of the same statement.
	dupField := field(bytes.Clone(good), 2, []byte(protocol.PayloadLiveness))
	// The same fields in another order (payload type before key).
	env, err := record.UnmarshalEnvelope(good)
	if err != nil {
		t.Fatal(err)
	}
	pubProto, err := crypto.MarshalPublicKey(env.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	sig := good[len(good)-64:]
	var reordered []byte
	reordered = field(reordered, 2, []byte(protocol.PayloadLiveness))
	reordered = field(reordered, 1, pubProto)
	reordered = field(reordered, 3, payload)
	reordered = field(reordered, 5, sig)
	var canonicalByHand []byte
	canonicalByHand = field(canonicalByHand, 1, pubProto)
	canonicalByHand = field(canonicalByHand, 2, []byte(protocol.PayloadLiveness))
	canonicalByHand = field(canonicalByHand, 3, payload)
	canonicalByHand = field(canonicalByHand, 5, sig)
	if !bytes.Equal(canonicalByHand, good) {
		t.Fatal("test's envelope layout assumption is wrong: rebuilt envelope differs")
	}

	future := mustSign(t, key, liveness(id, 8, t0.Add(protocol.MaxClockDisparity+time.Millisecond)))
	old := mustSign(t, key, liveness(id, 9, t0.Add(-protocol.MaxLivenessAge-time.Millisecond)))
	leaving := liveness(id, 7, t0)
	leaving.State = "down"

	for _, tc := range []struct {
		name    string
		raw     []byte
		want    error
		also    error // a protocol sentinel the error must also wrap
		verdict attest.Verdict
	}{
		{"bit flip in payload", flip(good, payloadAt+len(payload)/2), attest.ErrSignature, nil, attest.Reject},
		{"bit flip in signature", flip(good, len(good)-1), attest.ErrSignature, nil, attest.Reject},
		{"bit flip in payload type", flip(good, bytes.Index(good, []byte(protocol.PayloadLiveness))+1), attest.ErrKind, nil, attest.Reject},
		{"signed by another key", sealLiveness(otherKey, payload), attest.ErrSubject, nil, attest.Reject},
		{"another key, its own subject but a stolen signature", func() []byte {
			b := bytes.Clone(good)
			otherPub, _ := crypto.MarshalPublicKey(otherKey.GetPublic())
			return bytes.Replace(b, pubProto, otherPub, 1)
		}(), attest.ErrSignature, nil, attest.Reject},
		{"probe domain", seal(t, key, protocol.DomainProbe, protocol.PayloadLiveness, payload), attest.ErrSignature, nil, attest.Reject},
		{"libp2p peer-record domain", seal(t, key, peer.PeerRecordEnvelopeDomain, protocol.PayloadLiveness, payload), attest.ErrSignature, nil, attest.Reject},
		{"liveness payload as probe type", seal(t, key, protocol.DomainProbe, protocol.PayloadProbe, payload), attest.ErrPayload, nil, attest.Reject},
		{"unknown payload type", seal(t, key, protocol.DomainLiveness, "/mirrornet/liveness/9", payload), attest.ErrKind, nil, attest.Reject},
		// A version 1 statement (bundles required, TTL at most ten minutes)
		// is not taken for a version 2 one.
		{"version 1 liveness", seal(t, key, protocol.DomainLiveness, "/mirrornet/liveness/1", payload), attest.ErrKind, nil, attest.Reject},
		{"empty", nil, attest.ErrMalformed, nil, attest.Reject},
		{"truncated", good[:len(good)-10], attest.ErrMalformed, nil, attest.Reject},
		{"truncated to the header", good[:3], attest.ErrMalformed, nil, attest.Reject},
		{"garbage", []byte("not a protobuf at all"), attest.ErrMalformed, nil, attest.Reject},
		{"oversize padding", append(bytes.Clone(good), make([]byte, protocol.MaxHoldingsSize)...), attest.ErrOversize, nil, attest.Reject},
		{"oversize but well signed", sealLiveness(key, mustEncode(t, big)), attest.ErrOversize, nil, attest.Reject},
		{"payload with extra space", mangled(`"state":"up"`, `"state": "up"`), attest.ErrPayload, protocol.ErrNonCanonical, attest.Reject},
		{"payload with trailing newline", sealLiveness(key, append(bytes.Clone(payload), '\n')), attest.ErrPayload, protocol.ErrNonCanonical, attest.Reject},
		{"payload with reordered keys", mangled(`"peer":"`+id.String()+`","state":"up"`, `"state":"up","peer":"`+id.String()+`"`), attest.ErrPayload, protocol.ErrNonCanonical, attest.Reject},
		{"payload with unknown field", mangled(`"state":"up"`, `"state":"up","evil":1`), attest.ErrPayload, protocol.ErrMalformed, attest.Reject},
		{"payload with null instead of []", mangled(`"bundles":["bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"]`, `"bundles":null`), attest.ErrPayload, protocol.ErrNonCanonical, attest.Reject},
		{"payload with escaped character", mangled(`"version":"v0.1.0"`, `"version":"v0\u002e1.0"`), attest.ErrPayload, protocol.ErrNonCanonical, attest.Reject},
		{"payload with float seq", mangled(`"seq":7`, `"seq":7.0`), attest.ErrPayload, protocol.ErrMalformed, attest.Reject},
		{"payload twice", sealLiveness(key, append(bytes.Clone(payload), payload...)), attest.ErrPayload, protocol.ErrMalformed, attest.Reject},
		{"payload not JSON", sealLiveness(key, []byte{0xff, 0x00}), attest.ErrPayload, protocol.ErrMalformed, attest.Reject},
		{"envelope with duplicate field", dupField, attest.ErrMalformed, nil, attest.Reject},
		{"envelope with reordered fields", reordered, attest.ErrMalformed, nil, attest.Reject},
		{"envelope with unknown field", field(bytes.Clone(good), 9, []byte("x")), attest.ErrMalformed, nil, attest.Reject},
		{"secp256k1 key", sealLiveness(secp, mustEncode(t, liveness(secpID, 7, t0))), attest.ErrKeyType, nil, attest.Reject},
		{"RSA key", sealLiveness(rsaKey, mustEncode(t, liveness(rsaID, 7, t0))), attest.ErrKeyType, nil, attest.Reject},
		{"zero seq", sealLiveness(key, mustEncode(t, liveness(id, 0, t0))), attest.ErrPayload, protocol.ErrInvalid, attest.Reject},
		{"bad state", sealLiveness(key, mustEncode(t, leaving)), attest.ErrPayload, protocol.ErrInvalid, attest.Reject},
		{"other subject signed by its own key", sealLiveness(otherKey, mustEncode(t, liveness(id, 7, t0))), attest.ErrSubject, nil, attest.Reject},
		{"subject not a peer ID", sealLiveness(key, mustEncode(t, func() protocol.Liveness { l := liveness(otherID, 7, t0); l.Peer = "mallory"; return l }())), attest.ErrSubject, nil, attest.Reject},
		{"from the future", future, attest.ErrFuture, nil, attest.Ignore},
		{"too old", old, attest.ErrTooOld, nil, attest.Ignore},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := attest.Verify(tc.raw, t0)
			if err == nil {
				t.Fatalf("accepted: %s seq %d", st.Kind, st.Seq)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if tc.also != nil && !errors.Is(err, tc.also) {
				t.Fatalf("error %v does not wrap %v", err, tc.also)
			}
			if v := attest.Classify(err); v != tc.verdict {
				t.Fatalf("Classify = %s, want %s", v, tc.verdict)
			}
			if r := attest.Reason(err); r == "ok" || r == "other" {
				t.Fatalf("Reason = %q", r)
			}
			// Only timing errors hand back the (otherwise valid) statement.
			if (st != nil) != (tc.verdict == attest.Ignore) {
				t.Fatalf("statement returned = %v with %v", st != nil, err)
			}
		})
	}
}

// TestEveryTruncationRejected: no prefix of a valid statement verifies.
func TestEveryTruncationRejected(t *testing.T) {
	key, id := fixedKey(t, 1)
	good := mustSign(t, key, liveness(id, 7, t0))
	for n := range len(good) {
		if _, err := attest.Verify(good[:n], t0); attest.Classify(err) != attest.Reject {
			t.Fatalf("prefix of %d/%d bytes: %v, want Reject", n, len(good), err)
		}
	}
}

// TestTimeWindowEdges pins the clock-disparity and age limits exactly.
func TestTimeWindowEdges(t *testing.T) {
	key, id := fixedKey(t, 1)
	raw := mustSign(t, key, liveness(id, 7, t0))
	for _, tc := range []struct {
		now  time.Time
		want error
	}{
		{t0.Add(-protocol.MaxClockDisparity), nil},
		{t0.Add(-protocol.MaxClockDisparity - time.Millisecond), attest.ErrFuture},
		{t0.Add(protocol.MaxLivenessAge), nil},
		{t0.Add(protocol.MaxLivenessAge + time.Millisecond), attest.ErrTooOld},
	} {
		st, err := attest.Verify(raw, tc.now)
		if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("Verify at t0%+v: %v, want %v", tc.now.Sub(t0), err, tc.want)
		}
		if st == nil || st.Signer != id {
			t.Errorf("Verify at t0%+v returned no statement", tc.now.Sub(t0))
		}
	}
}

// validator is what a gossip validator does with a statement: verify, then
// check and record the sequence number.
func validator(g *attest.SeqGuard) func(raw []byte, now time.Time) error {
	return func(raw []byte, now time.Time) error {
		st, err := attest.Verify(raw, now)
		if err != nil {
			return err
		}
		if err := g.Check(st); err != nil {
			return err
		}
		g.Accept(st, now)
		return nil
	}
}

func TestReplay(t *testing.T) {
	key, id := fixedKey(t, 1)
	g := attest.NewSeqGuard()
	validate := validator(g)
	raw := mustSign(t, key, liveness(id, 7, t0))
	if err := validate(raw, t0); err != nil {
		t.Fatalf("first delivery: %v", err)
	}
	if last, ok := g.Last(id, attest.KindLiveness); !ok || last != 7 {
		t.Fatalf("Last = %d, %v", last, ok)
	}
	steps := []struct {
		name string
		now  time.Time
		want error
	}{
		{"same bytes at once", t0, attest.ErrReplay},
		{"same bytes 30s later", t0.Add(30 * time.Second), attest.ErrReplay},
		// Gossipsub's seen cache (120 s) has forgotten the message by now;
		// the age limit and the sequence guard have not.
		{"same bytes 130s later", t0.Add(130 * time.Second), attest.ErrTooOld},
	}
	for _, s := range steps {
		err := validate(raw, s.now)
		if !errors.Is(err, s.want) || attest.Classify(err) != attest.Ignore {
			t.Fatalf("%s: %v (%s), want %v (ignore)", s.name, err, attest.Classify(err), s.want)
		}
	}
	// The guard on its own, without the age check, still knows seq 7.
	st, _ := attest.Verify(raw, t0.Add(130*time.Second))
	if err := g.Check(st); !errors.Is(err, attest.ErrReplay) {
		t.Fatalf("SeqGuard.Check after 130s: %v, want ErrReplay", err)
	}
	if g.Accept(st, t0.Add(130*time.Second)) {
		t.Fatal("SeqGuard.Accept took a replay")
	}
	// An older sequence is a replay too.
	older := mustSign(t, key, liveness(id, 6, t0.Add(time.Second)))
	if err := validate(older, t0.Add(time.Second)); !errors.Is(err, attest.ErrReplay) {
		t.Fatalf("older seq: %v, want ErrReplay", err)
	}
	// Once the guard forgets the signer (cutoff older than now minus the age
	// limit, as Forget requires), the age limit alone keeps the replay out.
	later := t0.Add(130 * time.Second)
	g.Forget(later.Add(-protocol.MaxLivenessAge))
	if _, ok := g.Last(id, attest.KindLiveness); ok {
		t.Fatal("Forget kept the signer")
	}
	if err := validate(raw, later); !errors.Is(err, attest.ErrTooOld) || attest.Classify(err) != attest.Ignore {
		t.Fatalf("replay after Forget: %v, want ErrTooOld (ignore)", err)
	}
	// A genuinely new statement is still accepted after Forget.
	if err := validate(mustSign(t, key, liveness(id, 8, later)), later); err != nil {
		t.Fatalf("fresh statement after Forget: %v", err)
	}
}

func TestSeqGuardSeparatesSignersAndKinds(t *testing.T) {
	keyA, idA := fixedKey(t, 1)
	keyB, idB := fixedKey(t, 2)
	g := attest.NewSeqGuard()
	validate := validator(g)
	if err := validate(mustSign(t, keyA, liveness(idA, 100, t0)), t0); err != nil {
		t.Fatal(err)
	}
	if err := validate(mustSign(t, keyB, liveness(idB, 5, t0)), t0); err != nil {
		t.Fatalf("another signer's lower seq: %v", err)
	}
	// A probe with a low seq from A is not a replay of A's liveness.
	st := &attest.Statement{Kind: attest.KindProbe, Signer: idA, Seq: 1}
	if err := g.Check(st); err != nil {
		t.Fatalf("probe seq checked against liveness seq: %v", err)
	}
}

func TestClassifyAndReason(t *testing.T) {
	for _, tc := range []struct {
		err     error
		verdict attest.Verdict
		reason  string
	}{
		{nil, attest.Accept, "ok"},
		{attest.ErrOversize, attest.Reject, "oversize"},
		{attest.ErrMalformed, attest.Reject, "malformed"},
		{attest.ErrKind, attest.Reject, "kind"},
		{attest.ErrSignature, attest.Reject, "signature"},
		{attest.ErrKeyType, attest.Reject, "key_type"},
		{attest.ErrPayload, attest.Reject, "payload"},
		{attest.ErrSubject, attest.Reject, "subject"},
		{attest.ErrFuture, attest.Ignore, "future"},
		{attest.ErrTooOld, attest.Ignore, "too_old"},
		{attest.ErrReplay, attest.Ignore, "replay"},
		{errors.New("something else"), attest.Reject, "other"},
	} {
		wrapped := tc.err
		if tc.err != nil {
			wrapped = errors.Join(errors.New("context"), tc.err)
		}
		if v := attest.Classify(wrapped); v != tc.verdict {
			t.Errorf("Classify(%v) = %s, want %s", tc.err, v, tc.verdict)
		}
		if r := attest.Reason(wrapped); r != tc.reason {
			t.Errorf("Reason(%v) = %q, want %q", tc.err, r, tc.reason)
		}
	}
	for v, s := range map[attest.Verdict]string{attest.Accept: "accept", attest.Ignore: "ignore", attest.Reject: "reject"} {
		if v.String() != s {
			t.Errorf("%d.String() = %q", v, v.String())
		}
	}
}
