package store

import (
	"bytes"
	"errors"
	"testing"
)

// GetInto reads into the caller's buffer when the block fits, into a new
// slice when it does not, and checks the bytes as Get does.
func TestGetInto(t *testing.T) {
	s := open(t, t.TempDir(), Options{VerifiedCache: -1}) // every read hashes
	c, data := rawBlock(seeded(3, 4096))
	if err := s.Put(c, data); err != nil {
		t.Fatal(err)
	}

	buf := make([]byte, 0, 8192)
	got, err := s.GetInto(c, buf)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("GetInto: %d bytes, %v", len(got), err)
	}
	if &got[0] != &buf[:1][0] {
		t.Error("a block that fits was not read into the buffer")
	}
	small := make([]byte, 0, 100)
	got, err = s.GetInto(c, small)
	if err != nil || !bytes.Equal(got, data) || cap(small) != 100 || &got[0] == &small[:1][0] {
		t.Fatalf("GetInto with a small buffer: %d bytes, %v", len(got), err)
	}

	// A block rewritten on disk fails the check through the buffer too,
	// and is removed.
	overwrite(t, s, c, bytes.Repeat([]byte("x"), 4096))
	if _, err := s.GetInto(c, buf); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("GetInto of a corrupt block: %v, want ErrCorrupt", err)
	}
	if present(s, c) {
		t.Fatal("corrupt block not removed")
	}
}
