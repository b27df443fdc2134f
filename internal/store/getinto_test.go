package store

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"unsafe"

	"github.com/ipfs/go-cid"
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

// GetManyInto reads blocks stored one after another in one call, into the
// caller's buffer, as many as fit; a block it cannot return ends the run,
// and asked for first it gives GetInto's error: a corrupt one is reported
// and dropped, whether or not the verified cache knew it.
func TestGetManyInto(t *testing.T) {
	for _, cache := range []int{0, -1} { // the store's default cache, none
		t.Run(fmt.Sprintf("cache=%d", cache), func(t *testing.T) {
			var reports []Corruption
			s := open(t, t.TempDir(), Options{VerifiedCache: cache, OnCorrupt: func(c Corruption) { reports = append(reports, c) }})
			var cs []cid.Cid
			var want [][]byte
			for i := range 40 {
				c, data := rawBlock(seeded(uint64(100+i), 500+(i*7919)%16000))
				if err := s.Put(c, data); err != nil {
					t.Fatal(err)
				}
				cs, want = append(cs, c), append(want, data)
			}
			within := func(b, buf []byte) bool {
				start := uintptr(unsafe.Pointer(unsafe.SliceData(buf[:1])))
				p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
				return p >= start && p+uintptr(len(b)) <= start+uintptr(cap(buf))
			}
			check := func(step string, got [][]byte, from int, buf []byte) {
				t.Helper()
				for i, b := range got {
					if !bytes.Equal(b, want[from+i]) {
						t.Fatalf("%s: block %d differs", step, from+i)
					}
					if !within(b, buf) {
						t.Fatalf("%s: block %d not read into the buffer", step, from+i)
					}
				}
			}
			buf := make([]byte, 1<<20)
			for pass := range 2 { // the second from the verified cache, if any
				got, err := s.GetManyInto(cs, buf)
				if err != nil || len(got) != len(cs) {
					t.Fatalf("pass %d: %d blocks, %v", pass, len(got), err)
				}
				check("all", got, 0, buf)
			}

			// A buffer for a few blocks: the ones that fit.
			small := make([]byte, 20000)
			got, err := s.GetManyInto(cs[3:], small)
			if err != nil || len(got) < 1 || len(got) >= 10 {
				t.Fatalf("small buffer: %d blocks, %v", len(got), err)
			}
			check("small buffer", got, 3, small)

			// A block not stored ends the run; first, it is not found.
			missing, _ := rawBlock([]byte("not stored"))
			got, err = s.GetManyInto([]cid.Cid{cs[0], cs[1], missing, cs[2]}, buf)
			if err != nil || len(got) != 2 {
				t.Fatalf("run up to a missing block: %d blocks, %v", len(got), err)
			}
			if _, err := s.GetManyInto([]cid.Cid{missing, cs[0]}, buf); !errors.Is(err, ErrNotFound) {
				t.Fatalf("missing block first: %v, want ErrNotFound", err)
			}

			// A block rotted on disk ends the run; asked for first it is
			// reported, dropped and ErrCorrupt; the rest read on.
			overwrite(t, s, cs[20], bytes.Repeat([]byte("x"), 64))
			got, err = s.GetManyInto(cs, buf)
			if err != nil || len(got) != 20 {
				t.Fatalf("run up to a corrupt block: %d blocks, %v", len(got), err)
			}
			check("before the corrupt block", got, 0, buf)
			if _, err := s.GetManyInto(cs[20:], buf); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("corrupt block first: %v, want ErrCorrupt", err)
			}
			if present(s, cs[20]) || len(reports) != 1 || !reports[0].Cid.Equals(cs[20]) {
				t.Fatalf("corrupt block: present %v, reports %+v", present(s, cs[20]), reports)
			}
			got, err = s.GetManyInto(cs[21:], buf)
			if err != nil || len(got) != len(cs)-21 {
				t.Fatalf("after the corrupt block: %d blocks, %v", len(got), err)
			}
			check("after the corrupt block", got, 21, buf)
		})
	}
}
