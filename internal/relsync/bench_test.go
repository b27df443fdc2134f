package relsync_test

import (
	"fmt"
	"testing"

	"github.com/mirrornet/mirrornet/internal/relsync"
	"github.com/mirrornet/mirrornet/protocol"
)

// fullBook is a book at the bound on apps a mirror does not follow
// (1,024 apps), 8 records of 1 KiB each per app (real records are about
// 1 KiB).
func fullBook() []relsync.AppRecords {
	apps := make([]relsync.AppRecords, 1024)
	for i := range apps {
		a := relsync.AppRecords{App: appID(fmt.Sprint("bench", i)), Gen: uint64(i + 1)}
		for v := range 8 {
			raw := make([]byte, 1024)
			copy(raw, fmt.Sprint(i, v))
			a.Releases = append(a.Releases, relsync.Record{Version: uint64(v + 1), Raw: raw})
		}
		apps[i] = a
	}
	return apps
}

// BenchmarkSummarise: what a responder spends on its summary after the
// book changed: every app hashed (Full, the first time) against one app
// changed (OneChanged: the others' hashes reused).
func BenchmarkSummarise(b *testing.B) {
	apps := fullBook()
	b.Run("Full", func(b *testing.B) {
		for b.Loop() {
			relsync.Summarise(apps, nil)
		}
	})
	b.Run("OneChanged", func(b *testing.B) {
		prev := relsync.Summarise(apps, nil)
		for b.Loop() {
			apps[0].Gen++
			prev = relsync.Summarise(apps, prev)
		}
	})
	b.Run("SummaryBytes", func(b *testing.B) {
		s := relsync.Summarise(apps, nil)
		sum := s.Listed()
		raw, _ := protocol.Encode(&sum)
		for b.Loop() {
		}
		b.ReportMetric(float64(len(raw)), "bytes")
	})
}
