package protocol_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/mirrornet/mirrornet/protocol"
)

// TestHoldingsDigestVector pins the digest: a peer in another language
// must compute the same bytes.
func TestHoldingsDigestVector(t *testing.T) {
	for _, tc := range []struct {
		set  []string
		want string
	}{
		// sha256 of no bytes.
		{nil, "1220e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		// sha256("\x05bafyA\x05bafyB").
		{[]string{"bafyA", "bafyB"}, "1220" + sha256hex("\x05bafyA\x05bafyB")},
	} {
		if got := protocol.HoldingsDigest(tc.set); got != tc.want {
			t.Errorf("HoldingsDigest(%q) = %s, want %s", tc.set, got, tc.want)
		}
	}
	// Order and framing matter: "ab"+"c" is not "a"+"bc".
	if protocol.HoldingsDigest([]string{"ab", "c"}) == protocol.HoldingsDigest([]string{"a", "bc"}) {
		t.Fatal("digest does not frame its entries")
	}
}

func TestHoldingsRoundTrip(t *testing.T) {
	h := protocol.Holdings{Peer: testPeer, Seq: 7, Time: 1_800_000_000_000, Bundles: []string{"bafyA", "bafyB"}}
	b, err := protocol.Encode(&h)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"peer":"` + testPeer + `","seq":7,"time":1800000000000,"bundles":["bafyA","bafyB"]}`
	if string(b) != want {
		t.Fatalf("canonical encoding changed:\n got %s\nwant %s", b, want)
	}
	got, err := protocol.DecodeHoldings(b)
	if err != nil || !reflect.DeepEqual(*got, h) {
		t.Fatalf("DecodeHoldings = %+v, %v", got, err)
	}
	if got.Digest() != protocol.HoldingsDigest(h.Bundles) {
		t.Fatal("Digest differs from HoldingsDigest of the list")
	}
	for _, tc := range []struct {
		name, data string
		want       error
	}{
		{"null bundles", strings.Replace(want, `["bafyA","bafyB"]`, `null`, 1), protocol.ErrNonCanonical},
		{"unsorted", strings.Replace(want, `["bafyA","bafyB"]`, `["bafyB","bafyA"]`, 1), protocol.ErrInvalid},
		{"duplicate", strings.Replace(want, `["bafyA","bafyB"]`, `["bafyA","bafyA"]`, 1), protocol.ErrInvalid},
		{"zero seq", strings.Replace(want, `"seq":7`, `"seq":0`, 1), protocol.ErrInvalid},
		{"unknown field", strings.Replace(want, `{"peer"`, `{"x":1,"peer"`, 1), protocol.ErrMalformed},
	} {
		if _, err := protocol.DecodeHoldings([]byte(tc.data)); !errors.Is(err, tc.want) {
			t.Errorf("%s: DecodeHoldings = %v, want %v", tc.name, err, tc.want)
		}
	}
}

// TestLivenessWithDigestDecodes: a statement naming its holdings by digest
// decodes the same through both decoders and re-encodes to its bytes.
func TestLivenessWithDigestDecodes(t *testing.T) {
	l := validLiveness()
	l.Holdings, l.HoldingsCount, l.Bundles = protocol.HoldingsDigest(l.Bundles), len(l.Bundles), nil
	l.TTL = 30_000
	b, err := protocol.Encode(&l)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte(`"bundles"`)) {
		t.Fatalf("digest-only statement lists bundles: %s", b)
	}
	a, err := protocol.DecodeLiveness(b)
	if err != nil {
		t.Fatal(err)
	}
	s, err := protocol.DecodeLivenessShared(bytes.Clone(b))
	if err != nil || !reflect.DeepEqual(a, s) || !reflect.DeepEqual(*a, l) {
		t.Fatalf("decoders disagree: %+v / %+v (%v)", a, s, err)
	}
	if a.Inline() {
		t.Fatal("digest-only statement reports inline bundles")
	}
}

// TestLivenessSizeFlatInHoldings: the liveness statement of a mirror
// holding 1,000 bundles is as small as one holding one: the list lives in
// the holdings statement.
func TestLivenessSizeFlatInHoldings(t *testing.T) {
	size := func(n int) int {
		set := make([]string, n)
		for i := range set {
			set[i] = fmt.Sprintf("bafybeig%051d", i) // a CIDv1's length
		}
		l := validLiveness()
		l.Holdings, l.HoldingsCount, l.Bundles = protocol.HoldingsDigest(set), n, nil
		b, err := protocol.Encode(&l)
		if err != nil {
			t.Fatal(err)
		}
		return len(b)
	}
	one, thousand := size(1), size(1000)
	if thousand > one+3 || thousand > 512 {
		t.Fatalf("payload of a 1,000-bundle mirror is %d bytes (1 bundle: %d)", thousand, one)
	}
}

func TestHoldingsRequestValidate(t *testing.T) {
	d := protocol.HoldingsDigest(nil)
	ok := protocol.HoldingsRequest{Want: []protocol.HoldingsRef{{Peer: testPeer, Digest: d}}}
	b, _ := protocol.Encode(&ok)
	if _, err := protocol.DecodeHoldingsRequest(b); err != nil {
		t.Fatal(err)
	}
	many := protocol.HoldingsRequest{}
	for range protocol.MaxHoldingsWant + 1 {
		many.Want = append(many.Want, protocol.HoldingsRef{Peer: testPeer, Digest: d})
	}
	for name, r := range map[string]protocol.HoldingsRequest{
		"empty":      {},
		"too many":   many,
		"no peer":    {Want: []protocol.HoldingsRef{{Digest: d}}},
		"bad digest": {Want: []protocol.HoldingsRef{{Peer: testPeer, Digest: "1220"}}},
	} {
		b, _ := protocol.Encode(&r)
		if _, err := protocol.DecodeHoldingsRequest(b); !errors.Is(err, protocol.ErrInvalid) {
			t.Errorf("%s: DecodeHoldingsRequest = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := protocol.DecodeHoldingsRequest(make([]byte, protocol.MaxHoldingsRequestSize+1)); !errors.Is(err, protocol.ErrTooLarge) {
		t.Errorf("oversize request: %v", err)
	}
}

// FuzzDecodeHoldings: no input panics; what is accepted is valid and its
// own canonical encoding.
func FuzzDecodeHoldings(f *testing.F) {
	f.Add([]byte(`{"peer":"p","seq":1,"time":1,"bundles":["a"]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := protocol.DecodeHoldings(data)
		if err != nil {
			return
		}
		if err := h.Validate(); err != nil {
			t.Fatalf("accepted an invalid statement: %v", err)
		}
		again, err := protocol.Encode(h)
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted non-canonical input:\n in %q\nout %q", data, again)
		}
	})
}

func sha256hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
