package attest_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/protocol"
)

// manyCIDs is a sorted set of n CIDv1-length strings.
func manyCIDs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("bafybeig%051d", i)
	}
	return out
}

func TestHoldingsSignVerify(t *testing.T) {
	key, id := fixedKey(t, 1)
	otherKey, other := fixedKey(t, 2)
	now := time.UnixMilli(1_800_000_000_000)
	set := manyCIDs(1000)
	h := protocol.Holdings{Peer: id.String(), Seq: 1, Time: now.UnixMilli(), Bundles: set}
	raw, err := attest.SignHoldings(key, h)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) <= protocol.MaxStatementSize/2 || len(raw) > protocol.MaxHoldingsSize {
		t.Fatalf("1,000-bundle holdings statement is %d bytes", len(raw))
	}
	ref := protocol.HoldingsRef{Peer: id.String(), Digest: protocol.HoldingsDigest(set)}
	// Holdings never age out: a fresh liveness statement names them.
	st, err := attest.VerifyHoldings(raw, ref, now.Add(30*24*time.Hour))
	if err != nil || st.Kind != attest.KindHoldings || len(st.Holdings.Bundles) != 1000 {
		t.Fatalf("VerifyHoldings = %v, %v", st, err)
	}

	// The liveness statement of that mirror names the set by digest and
	// stays small.
	l := liveness(id, 2, now)
	l.Bundles, l.Holdings, l.HoldingsCount = nil, ref.Digest, len(set)
	lraw := mustSign(t, key, l)
	if len(lraw) > 600 {
		t.Fatalf("liveness statement of a 1,000-bundle mirror is %d bytes", len(lraw))
	}
	if st, err := attest.Verify(lraw, now); err != nil || st.Liveness.Holdings != ref.Digest {
		t.Fatalf("Verify(liveness) = %v, %v", st, err)
	}

	otherRaw, err := attest.SignHoldings(otherKey, protocol.Holdings{Peer: other.String(), Seq: 1, Time: now.UnixMilli(), Bundles: set})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		raw  []byte
		ref  protocol.HoldingsRef
		want error
	}{
		{"same set signed by another key", otherRaw, ref, attest.ErrHoldings},
		{"another set", raw, protocol.HoldingsRef{Peer: id.String(), Digest: protocol.HoldingsDigest(set[:999])}, attest.ErrHoldings},
		{"a liveness statement", lraw, ref, attest.ErrKind},
		{"holdings payload under the liveness domain", seal(t, key, protocol.DomainLiveness, protocol.PayloadHoldings, mustEncodeHoldings(t, h)), ref, attest.ErrSignature},
		{"holdings payload as liveness", seal(t, key, protocol.DomainLiveness, protocol.PayloadLiveness, mustEncodeHoldings(t, h)), ref, attest.ErrPayload},
	} {
		_, err := attest.VerifyHoldings(tc.raw, tc.ref, now)
		if !errors.Is(err, tc.want) || attest.Classify(err) != attest.Reject {
			t.Errorf("%s: VerifyHoldings = %v, want %v (reject)", tc.name, err, tc.want)
		}
	}
	if r := attest.Reason(fmt.Errorf("x: %w", attest.ErrHoldings)); r != "holdings_mismatch" {
		t.Errorf("Reason = %q", r)
	}
}

// TestLivenessWithoutHoldingsRefused: a statement that says neither what
// it holds nor the digest of its holdings is refused with that reason.
func TestLivenessWithoutHoldingsRefused(t *testing.T) {
	key, id := fixedKey(t, 1)
	now := time.UnixMilli(1_800_000_000_000)
	l := liveness(id, 1, now)
	payload := []byte(fmt.Sprintf(`{"peer":%q,"state":"up","seq":1,"time":%d,"addrs":[],"http":"","version":"v"}`, l.Peer, l.Time))
	_, err := attest.Verify(seal(t, key, protocol.DomainLiveness, protocol.PayloadLiveness, payload), now)
	if !errors.Is(err, attest.ErrPayload) || !errors.Is(err, protocol.ErrNoHoldings) {
		t.Fatalf("Verify = %v, want ErrPayload wrapping ErrNoHoldings", err)
	}
}

func TestHoldingsSizeLimit(t *testing.T) {
	key, id := fixedKey(t, 1)
	// A statement of a size every other kind is refused at still fits
	// holdings; past MaxHoldingsSize signing refuses.
	big := protocol.Holdings{Peer: id.String(), Seq: 1, Time: 1, Bundles: manyCIDs(protocol.MaxHoldings)}
	if raw, err := attest.SignHoldings(key, big); err != nil || len(raw) <= protocol.MaxStatementSize {
		t.Fatalf("SignHoldings(%d) = %d bytes, %v", protocol.MaxHoldings, len(raw), err)
	}
	big.Bundles = append(big.Bundles, "x")
	if _, err := attest.SignHoldings(key, big); !errors.Is(err, attest.ErrPayload) {
		t.Fatalf("SignHoldings over MaxHoldings = %v", err)
	}
}

func mustEncodeHoldings(t testing.TB, h protocol.Holdings) []byte {
	t.Helper()
	b, err := protocol.Encode(&h)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
