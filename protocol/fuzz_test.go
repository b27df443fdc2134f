package protocol_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/mirrornet/mirrornet/protocol"
)

// Seed corpora live in testdata/fuzz/<FuzzName>/ and run under plain
// `go test`. Regenerate the generated seeds with
//
//	go test ./protocol -run TestWriteFuzzSeeds -write-seeds
var writeSeeds = flag.Bool("write-seeds", false, "rewrite the generated fuzz seed corpora in testdata/fuzz")

// writeSeed writes one corpus file in the `go test fuzz v1` format.
func writeSeed(t *testing.T, fuzzName, name string, args ...any) {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		case string:
			fmt.Fprintf(&b, "string(%q)\n", v)
		case int:
			fmt.Fprintf(&b, "int(%d)\n", v)
		case int64:
			fmt.Fprintf(&b, "int64(%d)\n", v)
		case uint8:
			fmt.Fprintf(&b, "byte(%d)\n", v)
		default:
			t.Fatalf("writeSeed: unsupported %T", a)
		}
	}
	dir := filepath.Join("testdata", "fuzz", fuzzName)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func livenessSeeds(t *testing.T) map[string][]byte {
	t.Helper()
	enc := func(l protocol.Liveness) []byte {
		b, err := protocol.Encode(&l)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	l := validLiveness()
	full := l
	full.Region, full.Apps = "eu-west", []string{"app-a", "app-b"}
	leaving := l
	leaving.State = protocol.StateLeaving
	empty := l
	empty.Addrs, empty.Bundles = nil, nil
	good := enc(l)
	return map[string][]byte{
		"valid":         good,
		"valid-full":    enc(full),
		"valid-leaving": enc(leaving),
		"valid-empty":   enc(empty),
		"null-bundles":  bytes.Replace(good, []byte(`"bundles":["bafyA","bafyB"]`), []byte(`"bundles":null`), 1),
		"unknown-field": bytes.Replace(good, []byte(`{"peer"`), []byte(`{"x":1,"peer"`), 1),
		"spaced":        bytes.Replace(good, []byte(`":"up"`), []byte(`": "up"`), 1),
		"escaped":       bytes.Replace(good, []byte(`"up"`), []byte(`"\u0075p"`), 1),
		"empty":         {},
		"null":          []byte("null"),
		"nested":        bytes.Repeat([]byte("["), 10000),
	}
}

func frameSeeds() map[string][]byte {
	var two bytes.Buffer
	protocol.WriteFrame(&two, []byte("hello"))
	protocol.WriteFrame(&two, nil)
	return map[string][]byte{
		"two-frames":     two.Bytes(),
		"empty":          {},
		"huge-length":    {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
		"overlong":       {0x85, 0x80, 0x80, 0x00, 'a', 'b', 'c', 'd', 'e'},
		"overflow":       bytes.Repeat([]byte{0xff}, 11),
		"short":          {10, 'a'},
		"length-only":    {0x80},
		"at-limit-64KiB": append([]byte{0x80, 0x80, 0x04}, make([]byte, 16)...),
	}
}

func TestWriteFuzzSeeds(t *testing.T) {
	if !*writeSeeds {
		t.Skip("run with -write-seeds to regenerate the seed corpora")
	}
	for name, b := range livenessSeeds(t) {
		writeSeed(t, "FuzzDecodeLiveness", name, b)
		writeSeed(t, "FuzzDecodeCanonical", "liveness-"+name, b, uint8(0))
	}
	writeSeed(t, "FuzzDecodeCanonical", "sync-request", []byte(`{"kinds":["liveness","probe"]}`), uint8(1))
	writeSeed(t, "FuzzDecodeCanonical", "sync-request-empty", []byte(`{}`), uint8(1))
	writeSeed(t, "FuzzDecodeCanonical", "probe", []byte(`{"observer":"a","target":"b","epoch":1,"seq":1,"time":1,"bundle":"c","challenge":"d","outcome":"pass","latency_ms":1}`), uint8(2))
	for name, b := range frameSeeds() {
		writeSeed(t, "FuzzReadFrame", name, b, 1<<16)
	}
	writeSeed(t, "FuzzReadFrame", "small-limit", []byte{3, 'a', 'b', 'c', 4, 'a', 'b', 'c', 'd'}, 3)
}

// FuzzDecodeLiveness: no input panics, and whatever is accepted is valid and
// is exactly its own canonical encoding.
func FuzzDecodeLiveness(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := protocol.DecodeLiveness(data)
		// The sharing decoder accepts and refuses the same, with an error
		// of the same class, and decodes the same value.
		shared, serr := protocol.DecodeLivenessShared(bytes.Clone(data))
		if (err == nil) != (serr == nil) || !reflect.DeepEqual(l, shared) {
			t.Fatalf("DecodeLiveness = %+v, %v; DecodeLivenessShared = %+v, %v", l, err, shared, serr)
		}
		for _, class := range []error{protocol.ErrMalformed, protocol.ErrNonCanonical, protocol.ErrInvalid} {
			if errors.Is(err, class) != errors.Is(serr, class) {
				t.Fatalf("error classes differ: %v vs %v", err, serr)
			}
		}
		if err != nil {
			if l != nil {
				t.Fatal("error with a result")
			}
			if !errors.Is(err, protocol.ErrMalformed) && !errors.Is(err, protocol.ErrNonCanonical) && !errors.Is(err, protocol.ErrInvalid) {
				t.Fatalf("error outside the package's sentinels: %v", err)
			}
			return
		}
		if err := l.Validate(); err != nil {
			t.Fatalf("accepted an invalid statement: %v", err)
		}
		again, err := protocol.Encode(l)
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted non-canonical input:\n in %q\nout %q", data, again)
		}
	})
}

// FuzzDecodeCanonical: for each payload struct, anything accepted is
// exactly what Encode writes for the result (one value, one byte form).
func FuzzDecodeCanonical(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, which byte) {
		var v any
		switch which % 3 {
		case 0:
			v = new(protocol.Liveness)
		case 1:
			v = new(protocol.SyncRequest)
		default:
			v = new(protocol.ProbeResult)
		}
		if err := protocol.DecodeCanonical(data, v); err != nil {
			if !errors.Is(err, protocol.ErrMalformed) && !errors.Is(err, protocol.ErrNonCanonical) {
				t.Fatalf("error outside the package's sentinels: %v", err)
			}
			return
		}
		plain, err := json.Marshal(v)
		if err != nil || !bytes.Equal(plain, data) {
			t.Fatalf("accepted bytes that do not re-encode to themselves:\n in %q\nout %q", data, plain)
		}
	})
}

// FuzzReadFrame: no input panics or makes ReadFrame return more than max
// bytes, and the frames read, written back, are read back the same.
func FuzzReadFrame(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, max int) {
		if max < 0 || max > protocol.MaxStatementSize {
			max = protocol.MaxStatementSize
		}
		r := bufio.NewReader(bytes.NewReader(data))
		var frames [][]byte
		for range 100 {
			b, err := protocol.ReadFrame(r, max)
			if err != nil {
				if err != io.EOF && !errors.Is(err, protocol.ErrMalformed) && !errors.Is(err, protocol.ErrTooLarge) {
					t.Fatalf("unexpected error: %v", err)
				}
				break
			}
			if b == nil || len(b) > max {
				t.Fatalf("frame of %d bytes (nil=%v) with limit %d", len(b), b == nil, max)
			}
			frames = append(frames, b)
		}
		var buf bytes.Buffer
		for _, b := range frames {
			if err := protocol.WriteFrame(&buf, b); err != nil {
				t.Fatal(err)
			}
		}
		r = bufio.NewReader(&buf)
		for i, want := range frames {
			got, err := protocol.ReadFrame(r, max)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("frame %d did not round-trip: %v", i, err)
			}
		}
		if _, err := protocol.ReadFrame(r, max); err != io.EOF {
			t.Fatalf("after the rewritten frames: %v, want io.EOF", err)
		}
	})
}
