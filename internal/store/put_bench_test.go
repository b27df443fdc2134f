package store

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"

	"github.com/mirrornet/mirrornet/internal/bundle"
	"github.com/mirrornet/mirrornet/internal/store/layout1"
)

// BenchmarkPut measures Put of 1 MiB blocks: hash, append to the active
// pack, writeback started; no fsync (MarkHeld makes a bundle durable at
// once).
func BenchmarkPut(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	data := make([][]byte, 64)
	for i := range data {
		data[i] = seeded(uint64(i), 1<<20)
	}
	b.SetBytes(64 << 20)
	for b.Loop() {
		for _, d := range data {
			c, _ := rawBlock(d)
			if err := s.Put(c, d); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		for _, d := range data {
			c, _ := rawBlock(d)
			if err := s.Delete(c); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
	}
}

// BenchmarkImportIntoStore imports a 128 MiB file (unixfs-v1-2025, 1 MiB
// raw leaves) and compares it with reading and sha256-hashing the same
// file, the work `sha256sum` does, in the same iteration so both see the
// same machine load. x-sha256 is import throughput divided by sha256
// throughput (wall clock); x-sha256-cpu the same by the process's CPU time
// (user + system), which a loaded machine disturbs less. Modes:
//   - offline: blocks discarded (`publish --offline`);
//   - packs: into an empty pack store with PutVerified (the importer hashed
//     the blocks: an in-process import), then MarkHeld (every block
//     durable);
//   - packs-put: the same with Put, which hashes every block again (what
//     the node does with blocks an admin client streams to it);
//   - files: PutVerified and MarkHeld into the file-per-block store that
//     packs replaced (layout1).
func BenchmarkImportIntoStore(b *testing.B) {
	const size = 128 << 20
	path := filepath.Join(b.TempDir(), "data.bin")
	if err := os.WriteFile(path, seeded(42, size), 0o644); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	hashFile := func() {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.CopyBuffer(h, f, buf); err != nil {
			b.Fatal(err)
		}
	}
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	hashFile() // warm the page cache
	type sink struct {
		put  func(blocks.Block) error
		held func(cid.Cid) error
		done func()
	}
	modes := []struct {
		name string
		open func(dir string) sink
	}{
		{"offline", func(string) sink {
			return sink{func(blocks.Block) error { return nil }, func(cid.Cid) error { return nil }, func() {}}
		}},
		{"packs", func(dir string) sink {
			s, err := Open(dir, Options{})
			if err != nil {
				b.Fatal(err)
			}
			return sink{func(blk blocks.Block) error { return s.PutVerified(blk.Cid(), blk.RawData()) },
				func(c cid.Cid) error { _, err := s.MarkHeld(c); return err }, func() { s.Close() }}
		}},
		{"packs-put", func(dir string) sink {
			s, err := Open(dir, Options{})
			if err != nil {
				b.Fatal(err)
			}
			return sink{func(blk blocks.Block) error { return s.Put(blk.Cid(), blk.RawData()) },
				func(c cid.Cid) error { _, err := s.MarkHeld(c); return err }, func() { s.Close() }}
		}},
		{"files", func(dir string) sink {
			s, err := layout1.Open(dir, layout1.Options{})
			if err != nil {
				b.Fatal(err)
			}
			return sink{func(blk blocks.Block) error { return s.PutVerified(blk.Cid(), blk.RawData()) },
				func(c cid.Cid) error { _, err := s.MarkHeld(c); return err }, func() { s.Close() }}
		}},
	}
	for _, mode := range modes {
		b.Run(mode.name, func(b *testing.B) {
			var shaTime, importTime, shaCPU, importCPU time.Duration
			b.SetBytes(size)
			n := 0
			for b.Loop() {
				b.StopTimer()
				t0, c0 := time.Now(), cpu()
				hashFile()
				shaTime += time.Since(t0)
				shaCPU += cpu() - c0
				sk := mode.open(filepath.Join(b.TempDir(), fmt.Sprint(n)))
				n++
				b.StartTimer()
				t0, c0 = time.Now(), cpu()
				res, err := bundle.Import(b.Context(), path, sk.put, nil)
				if err != nil {
					b.Fatal(err)
				}
				if err := sk.held(res.Root); err != nil {
					b.Fatal(err)
				}
				importTime += time.Since(t0)
				importCPU += cpu() - c0
				b.StopTimer()
				sk.done()
				b.StartTimer()
			}
			b.ReportMetric(float64(shaTime)/float64(importTime), "x-sha256")
			b.ReportMetric(float64(shaCPU)/float64(importCPU), "x-sha256-cpu")
			b.ReportMetric(float64(size)*float64(n)/shaTime.Seconds()/1e6, "sha256-MB/s")
		})
	}
}
