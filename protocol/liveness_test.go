package protocol_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/mirrornet/mirrornet/protocol"
)

const testPeer = "12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5"

func validLiveness() protocol.Liveness {
	return protocol.Liveness{
		Peer: testPeer, State: protocol.StateUp, Seq: 1_800_000_000_000, Time: 1_800_000_000_000,
		Addrs: []string{"/ip4/127.0.0.1/tcp/4001", "/ip4/127.0.0.1/udp/4001/quic-v1"},
		HTTP:  "http://127.0.0.1:8080", Bundles: []string{"bafyA", "bafyB"}, Version: "v0.1.0",
	}
}

func TestLivenessValidate(t *testing.T) {
	long := strings.Repeat("x", protocol.MaxStringLen+1)
	many := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = string(rune('a'+i/26/26%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i%26))
		}
		return out
	}
	for _, tc := range []struct {
		name string
		edit func(*protocol.Liveness)
		ok   bool
	}{
		{"valid", func(*protocol.Liveness) {}, true},
		{"leaving", func(l *protocol.Liveness) { l.State = protocol.StateLeaving }, true},
		{"nil addrs", func(l *protocol.Liveness) { l.Addrs = nil }, true},
		{"empty bundles", func(l *protocol.Liveness) { l.Bundles = []string{} }, true},
		{"neither bundles nor holdings", func(l *protocol.Liveness) { l.Bundles = nil }, false},
		{"holdings digest only", func(l *protocol.Liveness) {
			l.Holdings, l.HoldingsCount, l.Bundles = protocol.HoldingsDigest(l.Bundles), len(l.Bundles), nil
		}, true},
		{"holdings digest and matching list", func(l *protocol.Liveness) {
			l.Holdings, l.HoldingsCount = protocol.HoldingsDigest(l.Bundles), len(l.Bundles)
		}, true},
		{"holdings digest and another list", func(l *protocol.Liveness) {
			l.Holdings, l.HoldingsCount = protocol.HoldingsDigest([]string{"bafyC", "bafyD"}), 2
		}, false},
		{"holdings count off", func(l *protocol.Liveness) {
			l.Holdings, l.HoldingsCount = protocol.HoldingsDigest(l.Bundles), 3
		}, false},
		{"count without digest", func(l *protocol.Liveness) { l.HoldingsCount = 2 }, false},
		{"digest not hex", func(l *protocol.Liveness) { l.Holdings, l.Bundles = strings.Repeat("Z", 68), nil }, false},
		{"digest not sha2-256", func(l *protocol.Liveness) { l.Holdings, l.Bundles = "1320"+strings.Repeat("0", 64), nil }, false},
		{"digest short", func(l *protocol.Liveness) { l.Holdings, l.Bundles = "1220abcd", nil }, false},
		{"negative count", func(l *protocol.Liveness) {
			l.Holdings, l.HoldingsCount, l.Bundles = protocol.HoldingsDigest(nil), -1, nil
		}, false},
		{"region and apps", func(l *protocol.Liveness) { l.Region, l.Apps = "eu", []string{"a", "b"} }, true},
		{"max bundles", func(l *protocol.Liveness) { l.Bundles = many(protocol.MaxBundles) }, true},
		{"empty peer", func(l *protocol.Liveness) { l.Peer = "" }, false},
		{"bad state", func(l *protocol.Liveness) { l.State = "down" }, false},
		{"empty state", func(l *protocol.Liveness) { l.State = "" }, false},
		{"zero seq", func(l *protocol.Liveness) { l.Seq = 0 }, false},
		{"zero time", func(l *protocol.Liveness) { l.Time = 0 }, false},
		{"negative time", func(l *protocol.Liveness) { l.Time = -1 }, false},
		{"long http", func(l *protocol.Liveness) { l.HTTP = long }, false},
		{"long version", func(l *protocol.Liveness) { l.Version = long }, false},
		{"long region", func(l *protocol.Liveness) { l.Region = long }, false},
		{"long addr", func(l *protocol.Liveness) { l.Addrs = []string{long} }, false},
		{"empty addr", func(l *protocol.Liveness) { l.Addrs = []string{""} }, false},
		{"too many addrs", func(l *protocol.Liveness) { l.Addrs = many(protocol.MaxAddrs + 1) }, false},
		{"too many bundles", func(l *protocol.Liveness) { l.Bundles = many(protocol.MaxBundles + 1) }, false},
		{"unsorted bundles", func(l *protocol.Liveness) { l.Bundles = []string{"b", "a"} }, false},
		{"duplicate bundles", func(l *protocol.Liveness) { l.Bundles = []string{"a", "a"} }, false},
		{"unsorted apps", func(l *protocol.Liveness) { l.Apps = []string{"b", "a"} }, false},
		{"empty app", func(l *protocol.Liveness) { l.Apps = []string{""} }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := validLiveness()
			tc.edit(&l)
			err := l.Validate()
			if tc.ok != (err == nil) {
				t.Fatalf("Validate = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, protocol.ErrInvalid) {
				t.Fatalf("Validate = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestLivenessRoundTrip(t *testing.T) {
	l := validLiveness()
	l.Addrs, l.Bundles = nil, nil
	b, err := protocol.Encode(&l)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"peer":"` + testPeer + `","state":"up","seq":1800000000000,"time":1800000000000,"addrs":[],"http":"http://127.0.0.1:8080","bundles":[],"version":"v0.1.0"}`
	if string(b) != want {
		t.Fatalf("canonical encoding changed:\n got %s\nwant %s", b, want)
	}
	got, err := protocol.DecodeLiveness(b)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := protocol.Encode(got)
	if !bytes.Equal(again, b) {
		t.Fatal("decode/encode is not the identity")
	}
}

func TestDecodeLivenessRejects(t *testing.T) {
	l := validLiveness()
	good, _ := protocol.Encode(&l)
	s := string(good)
	for _, tc := range []struct {
		name string
		data string
		want error
	}{
		{"empty", "", protocol.ErrMalformed},
		{"null", "null", protocol.ErrNonCanonical},
		{"empty object", "{}", protocol.ErrNonCanonical},
		{"array", "[]", protocol.ErrMalformed},
		{"space", strings.Replace(s, `":"up"`, `": "up"`, 1), protocol.ErrNonCanonical},
		{"leading space", " " + s, protocol.ErrNonCanonical},
		{"trailing newline", s + "\n", protocol.ErrNonCanonical},
		{"trailing object", s + "{}", protocol.ErrMalformed},
		{"unknown field", strings.Replace(s, `{"peer"`, `{"x":1,"peer"`, 1), protocol.ErrMalformed},
		{"duplicate key", strings.Replace(s, `{"peer"`, `{"peer":"x","peer"`, 1), protocol.ErrNonCanonical},
		{"reordered", strings.Replace(s, `"state":"up","seq":1800000000000`, `"seq":1800000000000,"state":"up"`, 1), protocol.ErrNonCanonical},
		{"null addrs", strings.Replace(s, `"addrs":["/ip4/127.0.0.1/tcp/4001","/ip4/127.0.0.1/udp/4001/quic-v1"]`, `"addrs":null`, 1), protocol.ErrNonCanonical},
		{"null bundles", strings.Replace(s, `"bundles":["bafyA","bafyB"]`, `"bundles":null`, 1), protocol.ErrNonCanonical},
		{"missing bundles", strings.Replace(s, `"bundles":["bafyA","bafyB"],`, ``, 1), protocol.ErrNoHoldings},
		{"empty region present", strings.Replace(s, `"version"`, `"region":"","version"`, 1), protocol.ErrNonCanonical},
		{"exponent", strings.Replace(s, `"seq":1800000000000`, `"seq":1.8e12`, 1), protocol.ErrMalformed},
		{"negative seq", strings.Replace(s, `"seq":1800000000000`, `"seq":-1`, 1), protocol.ErrMalformed},
		{"string seq", strings.Replace(s, `"seq":1800000000000`, `"seq":"1"`, 1), protocol.ErrMalformed},
		{"escaped", strings.Replace(s, `"state":"up"`, `"state":"\u0075p"`, 1), protocol.ErrNonCanonical},
		{"html unescaped", strings.Replace(s, `"v0.1.0"`, `"<v>"`, 1), protocol.ErrNonCanonical},
		{"invalid utf-8", strings.Replace(s, `"v0.1.0"`, "\"v\xff\"", 1), protocol.ErrNonCanonical},
		{"valid shape, bad state", strings.Replace(s, `"state":"up"`, `"state":"down"`, 1), protocol.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := protocol.DecodeLiveness([]byte(tc.data))
			if !errors.Is(err, tc.want) {
				t.Fatalf("DecodeLiveness = %+v, %v; want %v", l, err, tc.want)
			}
			l, err = protocol.DecodeLivenessShared([]byte(tc.data))
			if !errors.Is(err, tc.want) {
				t.Fatalf("DecodeLivenessShared = %+v, %v; want %v", l, err, tc.want)
			}
		})
	}
}

func TestSortUnique(t *testing.T) {
	got := protocol.SortUnique([]string{"c", "a", "b", "a", "c"})
	if strings.Join(got, ",") != "a,b,c" {
		t.Fatalf("SortUnique = %v", got)
	}
}

func TestFrames(t *testing.T) {
	var buf bytes.Buffer
	frames := [][]byte{[]byte("one"), {}, bytes.Repeat([]byte{7}, 300), []byte("last")}
	for _, f := range frames {
		if err := protocol.WriteFrame(&buf, f); err != nil {
			t.Fatal(err)
		}
	}
	r := bufio.NewReader(&buf)
	for i, want := range frames {
		got, err := protocol.ReadFrame(r, 300)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("frame %d: %q, %v", i, got, err)
		}
		if got == nil {
			t.Fatalf("frame %d: nil slice, want non-nil", i)
		}
	}
	if _, err := protocol.ReadFrame(r, 300); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		max  int
		want error
	}{
		{"over the limit", append([]byte{4}, "abcd"...), 3, protocol.ErrTooLarge},
		{"huge length, no allocation", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, protocol.MaxStatementSize, protocol.ErrTooLarge},
		{"short frame", append([]byte{10}, "abc"...), 100, protocol.ErrMalformed},
		{"truncated length", []byte{0x80}, 100, protocol.ErrMalformed},
		{"length overflows", bytes.Repeat([]byte{0xff}, 11), 100, protocol.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := protocol.ReadFrame(bufio.NewReader(bytes.NewReader(tc.data)), tc.max)
			if !errors.Is(err, tc.want) {
				t.Fatalf("ReadFrame = %v, want %v", err, tc.want)
			}
		})
	}
}

// DecodeLivenessShared decodes what DecodeLiveness does, but its strings
// are the payload's own bytes (escaped ones excepted), so a kept
// statement costs its bytes about once: the footprint beyond the payload
// is the struct and the string headers.
func TestDecodeLivenessSharedAliasesPayload(t *testing.T) {
	l := validLiveness()
	l.Region, l.Apps, l.TTL = "eu-west", []string{"app.example"}, 30_000
	for i := range protocol.MaxBundles - len(l.Bundles) {
		l.Bundles = append(l.Bundles, fmt.Sprintf("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa%06d", i))
	}
	l.Bundles = protocol.SortUnique(l.Bundles)
	data, err := protocol.Encode(&l)
	if err != nil {
		t.Fatal(err)
	}
	copied, err := protocol.DecodeLiveness(data)
	if err != nil {
		t.Fatal(err)
	}
	shared, err := protocol.DecodeLivenessShared(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(copied, shared) {
		t.Fatalf("decoders disagree:\n%+v\n%+v", copied, shared)
	}
	own, dup := shared.Footprint(data), copied.Footprint(data)
	if strs := 16 * int64(len(l.Addrs)+len(l.Bundles)+len(l.Apps)); own > strs+512 {
		t.Errorf("shared decode takes %d bytes beyond the %d-byte payload, want at most headers (%d) and the struct", own, len(data), strs)
	}
	if dup < int64(len(data))*3/4 {
		t.Errorf("copying decode's footprint %d bytes for a %d-byte payload: Footprint misses copied strings", dup, len(data))
	}

	// An escaped string is decoded (a copy), counted in the footprint.
	l = validLiveness()
	l.Version = "<v1>"
	data, _ = protocol.Encode(&l)
	shared, err = protocol.DecodeLivenessShared(data)
	if err != nil || shared.Version != "<v1>" {
		t.Fatalf("escaped version: %+v, %v", shared, err)
	}
	base := validLiveness()
	baseData, _ := protocol.Encode(&base)
	b, _ := protocol.DecodeLivenessShared(baseData)
	if got, want := shared.Footprint(data)-b.Footprint(baseData), int64(len("<v1>")); got != want {
		t.Errorf("escaped string counted as %d bytes, want %d", got, want)
	}
}
