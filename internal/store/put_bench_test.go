package store

import "testing"

// BenchmarkPut measures Put of 1 MiB blocks: hash, temp file, writeback
// started, rename; no fsync (MarkHeld makes a bundle durable at once).
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
