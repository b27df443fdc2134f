package bundle

import (
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"testing"

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

// BenchmarkImport imports a 128 MiB file (blocks discarded) and reports its
// throughput as a ratio of reading and sha256-hashing the same file, the work
// `sha256sum` does. Compare the two sub-benchmarks' MB/s.
func BenchmarkImport(b *testing.B) {
	path := benchFile(b)
	var shaNs, importNs float64
	b.Run("sha256", func(b *testing.B) {
		b.SetBytes(benchSize)
		buf := make([]byte, 1<<20)
		for b.Loop() {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			h := sha256.New()
			if _, err := io.CopyBuffer(h, f, buf); err != nil {
				b.Fatal(err)
			}
			f.Close()
			_ = h.Sum(nil)
		}
		shaNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	b.Run("import", func(b *testing.B) {
		b.SetBytes(benchSize)
		for b.Loop() {
			if _, err := Import(b.Context(), path, func(blocks.Block) error { return nil }, nil); err != nil {
				b.Fatal(err)
			}
		}
		importNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		if shaNs > 0 {
			b.ReportMetric(shaNs/importNs, "x-sha256")
		}
	})
}
