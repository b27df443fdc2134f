package protocol

import (
	"encoding/hex"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

var testReceipt = ProbeReceipt{CID: "bafy", Time: 1, Sig: make([]byte, ReceiptSigSize)}.String()

const literalNonce = "0123456789abcdef0123456789abcdef"

// validRound is a round of epoch 7 whose nonce is no canary.
func validRound() uint64 {
	for r := uint64(0); ; r++ {
		if !IsCanary(ProbeNonce(7, r, "12D3KooWTarget", "12D3KooWObserver")) {
			return r
		}
	}
}

// withNonce replaces the literal nonce of a test challenge by the derived one.
func withNonce(p *ProbeResult) {
	n := ProbeNonce(p.Epoch, p.Round, p.Target, p.Observer)
	p.Challenge = strings.Replace(p.Challenge, literalNonce, hex.EncodeToString(n[:]), 1)
}

func validProbe() ProbeResult {
	p := ProbeResult{
		Observer: "12D3KooWObserver", Target: "12D3KooWTarget", Epoch: 7, Seq: 1, Time: 1700000000000,
		Bundle:    "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
		Challenge: "descent:" + literalNonce + ":3.0.17", Outcome: OutcomePass, LatencyMS: 12,
		Round: validRound(), Addr: "192.0.2.1", Receipts: []string{testReceipt},
	}
	withNonce(&p)
	return p
}

func TestProbeResultValidate(t *testing.T) {
	mods := map[string]func(p *ProbeResult){
		"empty observer":     func(p *ProbeResult) { p.Observer = "" },
		"empty target":       func(p *ProbeResult) { p.Target = "" },
		"self probe":         func(p *ProbeResult) { p.Target = p.Observer },
		"zero seq":           func(p *ProbeResult) { p.Seq = 0 },
		"zero time":          func(p *ProbeResult) { p.Time = 0 },
		"empty bundle":       func(p *ProbeResult) { p.Bundle = "" },
		"space in bundle":    func(p *ProbeResult) { p.Bundle = "baf y" },
		"long bundle":        func(p *ProbeResult) { p.Bundle = strings.Repeat("b", MaxStringLen+1) },
		"unknown outcome":    func(p *ProbeResult) { p.Outcome = "maybe" },
		"negative latency":   func(p *ProbeResult) { p.LatencyMS = -1 },
		"huge latency":       func(p *ProbeResult) { p.LatencyMS = MaxProbeLatency + 1 },
		"no challenge":       func(p *ProbeResult) { p.Challenge = "" },
		"wrong kind":         func(p *ProbeResult) { p.Challenge = "range:0123456789abcdef0123456789abcdef:" },
		"short nonce":        func(p *ProbeResult) { p.Challenge = "descent:0123:1" },
		"upper nonce":        func(p *ProbeResult) { p.Challenge = "descent:0123456789ABCDEF0123456789abcdef:1" },
		"bad path step":      func(p *ProbeResult) { p.Challenge = "descent:0123456789abcdef0123456789abcdef:1..2" },
		"leading zero step":  func(p *ProbeResult) { p.Challenge = "descent:0123456789abcdef0123456789abcdef:01" },
		"non-numeric step":   func(p *ProbeResult) { p.Challenge = "descent:0123456789abcdef0123456789abcdef:x" },
		"missing path colon": func(p *ProbeResult) { p.Challenge = "descent:0123456789abcdef0123456789abcdef" },
		"bad second descent": func(p *ProbeResult) { p.Challenge = "descent:0123456789abcdef0123456789abcdef:1.2,x" },
		"too many descents":  func(p *ProbeResult) { p.Challenge = "descent:0123456789abcdef0123456789abcdef:1,1,1,1,1,1,1,1,1" },
		"round too high":     func(p *ProbeResult) { p.Round = ProbeRoundsPerEpoch },
		"nonce of another round": func(p *ProbeResult) {
			p.Round++
			if IsCanary(ProbeNonce(p.Epoch, p.Round, p.Target, p.Observer)) {
				p.Round++
			}
			p.Challenge = "descent:" + literalNonce + ":1"
			withNonce(p)
			p.Round--
		},
		"chosen nonce":           func(p *ProbeResult) { p.Challenge = "descent:" + strings.Repeat("ab", 16) + ":1" },
		"canary kind, no canary": func(p *ProbeResult) { p.Challenge = "canary:" + literalNonce; withNonce(p) },
		"pass without receipt":   func(p *ProbeResult) { p.Receipts = nil },
		"too many receipts": func(p *ProbeResult) {
			p.Receipts = slices.Repeat([]string{testReceipt}, MaxProbeReceipts+1)
		},
		"huge receipt":       func(p *ProbeResult) { p.Receipts = []string{strings.Repeat("A", 2*MaxReceiptLen)} },
		"addr not IP":        func(p *ProbeResult) { p.Addr = "example.org" },
		"addr with port":     func(p *ProbeResult) { p.Addr = "192.0.2.1:80" },
		"addr not canonical": func(p *ProbeResult) { p.Addr = "2001:DB8::1" },
	}
	ok := validProbe()
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid result: %v", err)
	}
	two := validProbe()
	two.Challenge = "descent:0123456789abcdef0123456789abcdef:1.2,0.7"
	withNonce(&two)
	if err := two.Validate(); err != nil {
		t.Fatalf("two descents: %v", err)
	}
	leaf := validProbe()
	leaf.Challenge = "descent:0123456789abcdef0123456789abcdef:"
	withNonce(&leaf)
	if err := leaf.Validate(); err != nil {
		t.Fatalf("root-leaf challenge: %v", err)
	}
	for name, mod := range mods {
		p := validProbe()
		mod(&p)
		withNonce(&p)
		if err := p.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
}

func TestDecodeProbeResult(t *testing.T) {
	p := validProbe()
	b, err := Encode(&p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeProbeResult(b)
	if err != nil || !reflect.DeepEqual(*got, p) {
		t.Fatalf("round trip: %v %+v", err, got)
	}
	if _, err := DecodeProbeResult([]byte(strings.Replace(string(b), `"seq":1`, `"seq": 1`, 1))); !errors.Is(err, ErrNonCanonical) {
		t.Errorf("non-canonical: %v", err)
	}
	if _, err := DecodeProbeResult([]byte(strings.Replace(string(b), `{`, `{"extra":1,`, 1))); !errors.Is(err, ErrMalformed) {
		t.Errorf("unknown field: %v", err)
	}
	p.Outcome = "great"
	b, _ = Encode(&p)
	if _, err := DecodeProbeResult(b); !errors.Is(err, ErrInvalid) {
		t.Errorf("invalid outcome: %v", err)
	}
}

func FuzzDecodeProbeResult(f *testing.F) {
	p := validProbe()
	b, _ := Encode(&p)
	f.Add(b)
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := DecodeProbeResult(data)
		if err != nil {
			return
		}
		again, err := Encode(got)
		if err != nil || string(again) != string(data) {
			t.Fatalf("accepted payload does not re-encode identically")
		}
	})
}

// TestCanaries: about one nonce in CanaryOneIn is a canary; a canary result
// must say so, and needs no receipt (an honest one fails).
func TestCanaries(t *testing.T) {
	canaries := 0
	var canary ProbeResult
	for r := uint64(0); r < ProbeRoundsPerEpoch; r++ {
		for e := uint64(0); e < 16; e++ {
			n := ProbeNonce(e, r, "12D3KooWTarget", "12D3KooWObserver")
			if IsCanary(n) {
				canaries++
				canary = ProbeResult{Observer: "12D3KooWObserver", Target: "12D3KooWTarget", Epoch: e, Round: r, Seq: 1, Time: 1,
					Bundle: "bafy", Challenge: "canary:" + hex.EncodeToString(n[:]), Outcome: OutcomeFail}
			}
		}
	}
	if total := ProbeRoundsPerEpoch * 16; canaries < total/CanaryOneIn/2 || canaries > 2*total/CanaryOneIn {
		t.Errorf("%d canaries in %d nonces", canaries, total)
	}
	if err := canary.Validate(); err != nil {
		t.Fatalf("canary result: %v", err)
	}
	descent := canary
	descent.Challenge = "descent:" + strings.TrimPrefix(canary.Challenge, "canary:") + ":1"
	if err := descent.Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("a canary nonce put as a descent: %v", err)
	}
	n, _, _ := ChallengeNonce(canary.Challenge)
	if c := CanaryCID(n); !strings.HasPrefix(c, "bafkrei") || len(c) != 59 {
		t.Errorf("canary CID %q, want a CIDv1 raw sha2-256", c)
	}
}

func TestReceiptText(t *testing.T) {
	ok := ProbeReceipt{CID: "bafkreiabc", Time: 1700000000000, Sig: make([]byte, ReceiptSigSize)}
	got, err := ParseReceipt(ok.String())
	if err != nil || got.CID != ok.CID || got.Time != ok.Time || len(got.Sig) != ReceiptSigSize {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	sig := ok.String()[strings.LastIndex(ok.String(), ":"):]
	for name, s := range map[string]string{
		"empty":        "",
		"no cid":       ":1" + sig,
		"space in cid": "a b:1" + sig,
		"zero time":    "bafy:0" + sig,
		"padded time":  "bafy:01" + sig,
		"short sig":    "bafy:1:AAAA",
		"not base64":   "bafy:1:!!",
		"two parts":    "bafy:1",
		"huge":         strings.Repeat("b", MaxReceiptLen) + ":1" + sig,
	} {
		if _, err := ParseReceipt(s); err == nil {
			t.Errorf("%s: parsed %q", name, s)
		}
	}
	a := ReceiptSigningBytes([16]byte{1}, "bafy", "obs", 5)
	for _, b := range [][]byte{
		ReceiptSigningBytes([16]byte{2}, "bafy", "obs", 5), ReceiptSigningBytes([16]byte{1}, "bafz", "obs", 5),
		ReceiptSigningBytes([16]byte{1}, "bafy", "obt", 5), ReceiptSigningBytes([16]byte{1}, "bafy", "obs", 6),
	} {
		if string(a) == string(b) {
			t.Errorf("signing bytes ignore a field")
		}
	}
}
