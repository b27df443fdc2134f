package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// BenchmarkPublishVsSha256sum times the shipped `mirrornet publish
// --offline FILE` (the CID only) and `mirrornet publish FILE` (imported
// into a running node's pack store, made durable) against `sha256sum
// FILE` on the same file, in the same iteration: a new file of seeded
// random bytes each iteration (MIRRORNET_BENCH_IMPORT_MIB, default 256),
// synced and in the page cache for all three, which run in rotating order
// after a sync each. x-sha256sum = sha256sum's time / publish's time (goal
// >= 0.7), the median of the iterations' own ratios.
func BenchmarkPublishVsSha256sum(b *testing.B) {
	a := startNode(b, "--log-level", "info")
	size := benchMiB("MIRRORNET_BENCH_IMPORT_MIB", 256) << 20
	dir := b.TempDir()
	run := func(name string, args ...string) float64 {
		syscall.Sync()
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), "HOME="+a.data)
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%s %v: %v: %s", name, args, err, out)
		}
		return time.Since(start).Seconds()
	}
	var offline, online []float64
	i := 0
	for b.Loop() {
		f := filepath.Join(dir, fmt.Sprintf("data%d.bin", i))
		writeSeeded(b, f, uint64(500+i), size)
		sha := 0.0
		steps := []func(){
			func() { sha = run("sha256sum", f) },
			func() { offline = append(offline, run(binPath, "publish", "--offline", f)) },
			func() { online = append(online, run(binPath, "publish", "--data", a.data, f)) },
		}
		for k := range steps {
			steps[(k+i)%len(steps)]()
		}
		offline[i], online[i] = sha/offline[i], sha/online[i]
		if testing.Verbose() {
			b.Logf("iteration %d: sha256sum %.3f s, x-sha256sum offline %.2f, into the store %.2f, load %s", i, sha, offline[i], online[i], loadAvg())
		}
		i++
	}
	r := &versus{}
	b.ReportMetric(r.median(offline), "x-sha256sum-offline")
	b.ReportMetric(r.median(online), "x-sha256sum-store")
	b.ReportMetric(float64(size>>20), "MiB")
}
