package attest

import (
	"bytes"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"

	"github.com/mirrornet/mirrornet/protocol"
)

func envelopeSeeds(t testing.TB) [][]byte {
	key, _, err := crypto.GenerateEd25519Key(bytes.NewReader(bytes.Repeat([]byte{7}, 64)))
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(key)
	l := protocol.Liveness{Peer: id.String(), State: protocol.StateUp, Seq: 1, Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli(),
		Addrs: []string{"/ip4/192.0.2.1/tcp/4001"}, HTTP: "http://192.0.2.1:8080", Bundles: []string{"bafyA"}, Version: "v1"}
	good, err := SignLiveness(key, l)
	if err != nil {
		t.Fatal(err)
	}
	for range 300 { // a payload whose length needs a two-byte varint
		l.Bundles = append(l.Bundles, "bafyB")
	}
	l.Bundles = protocol.SortUnique(l.Bundles)
	l.Addrs = append(l.Addrs, string(bytes.Repeat([]byte("a"), 200)))
	big, err := SignLiveness(key, l)
	if err != nil {
		t.Fatal(err)
	}
	secp, _, err := crypto.GenerateSecp256k1Key(bytes.NewReader(bytes.Repeat([]byte{3}, 64)))
	if err != nil {
		t.Fatal(err)
	}
	env, err := record.Seal(&rawRecord{spec: specFor(KindLiveness), payload: []byte(`{}`)}, secp)
	if err != nil {
		t.Fatal(err)
	}
	secpRaw, _ := env.Marshal()
	badSig := bytes.Clone(good)
	badSig[len(badSig)-1] ^= 1
	return [][]byte{good, big, secpRaw, badSig, good[:len(good)-1], append(bytes.Clone(good), 0), {}}
}

// The in-place reader takes every genuine statement (else the flood
// would still copy them).
func TestEnvelopeFastPathTakesGenuineStatements(t *testing.T) {
	for i, raw := range envelopeSeeds(t)[:2] {
		f, ok := parseEnvelope(raw)
		if !ok {
			t.Fatalf("seed %d: canonical Ed25519 envelope not read in place", i)
		}
		if !checkSignature(f, protocol.DomainLiveness) {
			t.Fatalf("seed %d: signature does not verify on the fast path", i)
		}
	}
}

// FuzzVerifyPathsAgree: the in-place path and go-libp2p's record path
// accept the same envelopes, refuse the others for the same reason, and
// read the same kind, signer and payload.
func FuzzVerifyPathsAgree(f *testing.F) {
	for _, s := range envelopeSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		fs, fid, fp, ferr := openEnvelope(raw)
		ss, sid, sp, serr := openEnvelopeSlow(raw)
		if Reason(ferr) != Reason(serr) {
			t.Fatalf("fast path: %v; record path: %v", ferr, serr)
		}
		if ferr == nil && (fs.kind != ss.kind || fid != sid || !bytes.Equal(fp, sp)) {
			t.Fatalf("paths read different envelopes: %s %s %q vs %s %s %q", fs.kind, fid, fp, ss.kind, sid, sp)
		}
	})
}
