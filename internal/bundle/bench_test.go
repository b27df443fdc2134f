package bundle

import (
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
)

const benchSize = 128 << 20

func benchFile(b *testing.B) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "data.bin")
	if err := os.WriteFile(path, seeded(42, benchSize), 0o644); err != nil {
		b.Fatal(err)
	}
	return path
}

func sha256File(b *testing.B, path string, buf []byte) {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, buf); err != nil {
		b.Fatal(err)
	}
	_ = h.Sum(nil)
}

// BenchmarkImport imports a 128 MiB file (blocks discarded) and compares it
// with reading and sha256-hashing the same file, the work `sha256sum` does.
// The two run alternately in every iteration so both see the same machine
// load; x-sha256 is import throughput divided by sha256 throughput (goal
// >= 0.5). MB/s is the import's.
func BenchmarkImport(b *testing.B) {
	path := benchFile(b)
	buf := make([]byte, 1<<20)
	sha256File(b, path, buf) // warm the page cache
	var shaTime, importTime time.Duration
	b.SetBytes(benchSize)
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		t0 := time.Now()
		sha256File(b, path, buf)
		shaTime += time.Since(t0)
		b.StartTimer()
		t0 = time.Now()
		if _, err := Import(b.Context(), path, func(blocks.Block) error { return nil }, nil); err != nil {
			b.Fatal(err)
		}
		importTime += time.Since(t0)
	}
	b.ReportMetric(float64(shaTime)/float64(importTime), "x-sha256")
	b.ReportMetric(float64(benchSize)*float64(b.N)/shaTime.Seconds()/1e6, "sha256-MB/s")
}
