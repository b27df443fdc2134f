package protocol

import (
	"errors"
	"strings"
	"testing"
)

func validProbe() ProbeResult {
	return ProbeResult{
		Observer: "12D3KooWObserver", Target: "12D3KooWTarget", Epoch: 7, Seq: 1, Time: 1700000000000,
		Bundle:    "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
		Challenge: "descent:0123456789abcdef0123456789abcdef:3.0.17", Outcome: OutcomePass, LatencyMS: 12,
	}
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
	}
	ok := validProbe()
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid result: %v", err)
	}
	two := validProbe()
	two.Challenge = "descent:0123456789abcdef0123456789abcdef:1.2,0.7"
	if err := two.Validate(); err != nil {
		t.Fatalf("two descents: %v", err)
	}
	leaf := validProbe()
	leaf.Challenge = "descent:0123456789abcdef0123456789abcdef:"
	if err := leaf.Validate(); err != nil {
		t.Fatalf("root-leaf challenge: %v", err)
	}
	for name, mod := range mods {
		p := validProbe()
		mod(&p)
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
	if err != nil || *got != p {
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
