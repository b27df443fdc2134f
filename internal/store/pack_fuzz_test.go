package store

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecodeIndex: any bytes as an index file decode or fail with an
// error, never panic, and whatever decodes lists only records within what
// it covers.
func FuzzDecodeIndex(f *testing.F) {
	f.Add(encodeIndex(packIndex{sealed: true, covered: fileHdrSize}))
	f.Add(encodeIndex(packIndex{covered: 200, recs: []record{
		{kind: kindBlock, mh: []byte{0x12, 0x20, 1, 2, 3}, off: fileHdrSize, size: 100},
		{kind: kindTomb, mh: tombKey(1, 16), off: 150, size: 0},
	}}))
	f.Add([]byte("mirrornet-idx\x00\x00\x09"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ix, err := decodeIndex("x.idx", b)
		if err != nil {
			return
		}
		for _, r := range ix.recs {
			if r.off < fileHdrSize || r.end() > ix.covered {
				t.Fatalf("record %+v beyond covered %d", r, ix.covered)
			}
		}
	})
}

// FuzzScanPack: any bytes as a pack are scanned without a panic into
// records that lie within the file, one after another.
func FuzzScanPack(f *testing.F) {
	rec := append(recordHeader(kindBlock, []byte{0x12, 0x20, 9}, 4), 1, 2, 3, 4)
	tomb := recordHeader(kindTomb, tombKey(3, 99), 0)
	f.Add(append(append(packHeader(), rec...), tomb...))
	f.Add(append(packHeader(), rec[:10]...))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "f.pack")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		fh, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		recs, stop, err := scanPack(fh, fileHdrSize, int64(len(b)))
		if err != nil {
			return
		}
		at := int64(fileHdrSize)
		for _, r := range recs {
			if r.off != at || r.end() > int64(len(b)) {
				t.Fatalf("record %+v at %d of %d bytes", r, at, len(b))
			}
			at = r.end()
		}
		if len(b) >= fileHdrSize && stop != at {
			t.Fatalf("stopped at %d, last record ends at %d", stop, at)
		}
	})
}
