package store

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// threadCPU is the CPU time (user and system) of the calling OS thread.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkFloor measures, in CPU time of the one thread doing it (so a
// loaded machine changes it less than wall time), what a replicated 1 MiB
// block costs at least besides the transport: sha256 (the verification;
// SHA-NI where the CPU has it), one copy in memory, and appending it to a
// file (into the page cache, no fsync), as Put does. Reported in
// cpu-ms/MiB. On a VM whose host reclaims the guest's free memory (free
// page reporting), appending into page cache that was freed a while ago
// costs several times more than into page cache freed just before: the
// "append" variant writes 256 MiB per file and deletes it, so it sees both.
func BenchmarkFloor(b *testing.B) {
	data := seeded(1, 1<<20)
	// run times fn, and not before (if set), which runs before each fn
	run := func(b *testing.B, before, fn func()) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		b.SetBytes(int64(len(data)))
		var cpu time.Duration
		for b.Loop() {
			if before != nil {
				before()
			}
			t0 := threadCPU()
			fn()
			cpu += threadCPU() - t0
		}
		b.ReportMetric(cpu.Seconds()*1e3/float64(b.N), "cpu-ms/MiB")
	}
	b.Run("sha256", func(b *testing.B) {
		var sum [32]byte
		run(b, nil, func() { sum = sha256.Sum256(data) })
		_ = sum
	})
	b.Run("copy", func(b *testing.B) {
		dst := make([]byte, len(data))
		run(b, nil, func() { copy(dst, data) })
	})
	b.Run("append", func(b *testing.B) {
		dir := b.TempDir()
		var f *os.File
		var off int64
		next := func() {
			if f != nil && off < 256<<20 {
				return
			}
			if f != nil {
				f.Close()
				os.Remove(f.Name())
			}
			var err error
			if f, err = os.Create(filepath.Join(dir, "pack")); err != nil {
				b.Fatal(err)
			}
			off = 0
		}
		run(b, next, func() {
			if _, err := f.WriteAt(data, off); err != nil {
				b.Fatal(err)
			}
			off += int64(len(data))
		})
		f.Close()
	})
}
