package protocol

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sync"
)

// Errors returned by decoders in this package.
var (
	ErrMalformed    = errors.New("protocol: malformed payload")
	ErrNonCanonical = errors.New("protocol: payload is not in canonical encoding")
	ErrTooLarge     = errors.New("protocol: message exceeds size limit")
	ErrInvalid      = errors.New("protocol: invalid field")
	// ErrNoHoldings: a liveness statement says neither what it holds
	// (bundles) nor the digest of its holdings statement.
	ErrNoHoldings = errors.New("protocol: liveness carries neither bundles nor a holdings digest")
	// ErrHoldingsMismatch: a holdings list does not match the digest that
	// names it.
	ErrHoldingsMismatch = errors.New("protocol: holdings do not match their digest")
)

// Encode returns the canonical encoding of a payload struct of this package.
func Encode(v any) ([]byte, error) {
	if n, ok := v.(interface{ normalize() }); ok {
		n.normalize()
	}
	return json.Marshal(v)
}

// DecodeCanonical decodes data into v strictly (unknown fields, trailing
// data and type mismatches are errors) and checks that data is exactly the
// canonical encoding of the result.
//
// Valid input costs one json.Unmarshal and one re-encoding into a pooled
// buffer: no copy of data is made besides the decoded values themselves.
// Only input that fails takes the strict decoder again, to say why.
func DecodeCanonical(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err == nil && isCanonical(v, data) {
		return nil
	}
	// Unknown fields and duplicate keys pass json.Unmarshal but not the
	// comparison; the strict decoder tells them apart.
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && !rv.IsNil() {
		rv.Elem().SetZero()
	}
	return decodeStrict(data, v)
}

// decodeStrict is DecodeCanonical with a strict json.Decoder: slower (it
// copies data into its own buffer), but its errors name unknown fields.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data", ErrMalformed)
	}
	again, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if !bytes.Equal(again, data) {
		return ErrNonCanonical
	}
	return nil
}

// encodeBufs are re-encoding buffers for isCanonical, at most a
// statement's size each (larger ones are left to the collector).
var encodeBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// isCanonical reports whether data is exactly json.Marshal(v), without
// allocating the re-encoding.
func isCanonical(v any, data []byte) bool {
	b := encodeBufs.Get().(*bytes.Buffer)
	b.Reset()
	// An Encoder escapes HTML as json.Marshal does, and adds a newline.
	err := json.NewEncoder(b).Encode(v)
	out := b.Bytes()
	eq := err == nil && len(out) == len(data)+1 && out[len(data)] == '\n' && bytes.Equal(out[:len(data)], data)
	if b.Cap() <= 2*MaxStatementSize {
		encodeBufs.Put(b)
	}
	return eq
}

// WriteFrame writes b as one frame: a uvarint length, then the bytes.
func WriteFrame(w io.Writer, b []byte) error {
	var hdr [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[:], uint64(len(b)))
	if _, err := w.Write(hdr[:n]); err != nil {
		return err
	}
	if len(b) == 0 {
		return nil
	}
	_, err := w.Write(b)
	return err
}

// ReadFrame reads one frame of at most max bytes. An empty frame returns a
// zero-length, non-nil slice.
func ReadFrame(r *bufio.Reader, max int) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("%w: frame length: %v", ErrMalformed, err)
	}
	if n > uint64(max) {
		return nil, fmt.Errorf("%w: frame of %d bytes (limit %d)", ErrTooLarge, n, max)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("%w: short frame: %v", ErrMalformed, err)
	}
	return b, nil
}

func checkString(field, s string) error {
	if len(s) > MaxStringLen {
		return fmt.Errorf("%w: %s longer than %d bytes", ErrInvalid, field, MaxStringLen)
	}
	return nil
}

func checkStrings(field string, ss []string, max int) error {
	if len(ss) > max {
		return fmt.Errorf("%w: %s has %d entries (limit %d)", ErrInvalid, field, len(ss), max)
	}
	for _, s := range ss {
		if s == "" {
			return fmt.Errorf("%w: empty entry in %s", ErrInvalid, field)
		}
		if err := checkString(field, s); err != nil {
			return err
		}
	}
	return nil
}
