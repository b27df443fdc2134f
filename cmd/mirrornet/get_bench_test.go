package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// benchMiB reads a bundle size in MiB from the environment.
func benchMiB(name string, def int64) int64 {
	if v, err := strconv.ParseInt(os.Getenv(name), 10, 64); err == nil && v > 0 {
		return v
	}
	return def
}

// benchPublish publishes dir into the node with data directory data and
// returns its CID.
func benchPublish(b *testing.B, data, dir string) string {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, binPath, "publish", "--data", data, "--json", dir).Output()
	if err != nil {
		b.Fatalf("publish: %v", err)
	}
	var pub published
	if err := json.Unmarshal(out, &pub); err != nil || pub.CID == "" {
		b.Fatalf("publish printed %q (%v)", out, err)
	}
	return pub.CID
}

// timed runs a command to completion and returns its wall time and peak
// RSS.
func timed(b *testing.B, name string, args ...string) (time.Duration, int64) {
	b.Helper()
	cmd := exec.Command(name, args...)
	var errb strings.Builder
	cmd.Stderr = &errb
	cmd.Env = append(os.Environ(), "HOME="+b.TempDir())
	start := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("%s %v: %v: %s", name, args, err, errb.String())
	}
	return time.Since(start), cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10
}

// BenchmarkGetPeakRSS measures the peak resident memory of `mirrornet get`
// of a one-file bundle (MIRRORNET_BENCH_GET_MIB, default 1024) for -o,
// --car and --serve (served file read back over HTTP and checked). Goal:
// under 128 MiB for 1 GiB.
func BenchmarkGetPeakRSS(b *testing.B) {
	size := benchMiB("MIRRORNET_BENCH_GET_MIB", 1024) << 20
	src := filepath.Join(b.TempDir(), "site")
	os.Mkdir(src, 0o755)
	want := writeSeeded(b, filepath.Join(src, "big.bin"), 7, size)
	a := startNode(b)
	root := benchPublish(b, a.data, src)
	os.RemoveAll(src)
	boot := a.info(b).HTTP

	for _, mode := range []string{"-o", "--car", "--serve"} {
		b.Run(strings.TrimLeft(mode, "-"), func(b *testing.B) {
			var peak int64
			for b.Loop() {
				dst := b.TempDir()
				var rss int64
				switch mode {
				case "--serve":
					rss = serveAndRead(b, root, boot, want)
				default:
					out := filepath.Join(dst, "out")
					_, rss = timed(b, binPath, "get", root, mode, out, "--bootstrap", boot)
					os.RemoveAll(out)
				}
				peak = max(peak, rss)
			}
			b.ReportMetric(float64(peak)/(1<<20), "peak-rss-MiB")
			b.ReportMetric(float64(size>>20), "bundle-MiB")
		})
	}
}

// serveAndRead runs `get --serve`, reads the file back over HTTP, checks
// it, stops the process and returns its peak RSS.
func serveAndRead(b *testing.B, root, boot string, want [32]byte) int64 {
	b.Helper()
	cmd := exec.Command(binPath, "get", root, "--serve", "127.0.0.1:0", "--bootstrap", boot)
	cmd.Env = append(os.Environ(), "HOME="+b.TempDir())
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(stderr)
	url := ""
	for sc.Scan() {
		if _, rest, ok := strings.Cut(sc.Text(), " on http://"); ok {
			url = "http://" + strings.Fields(rest)[0]
			break
		}
	}
	if url == "" {
		b.Fatal("get --serve never said where it serves")
	}
	go io.Copy(io.Discard, stderr)
	resp, err := http.Get(url + "big.bin")
	if err != nil {
		b.Fatal(err)
	}
	h := sha256.New()
	_, err = io.Copy(h, resp.Body)
	resp.Body.Close()
	if err != nil || [32]byte(h.Sum(nil)) != want {
		b.Fatalf("served file differs (%v)", err)
	}
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()
	return cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10
}

// BenchmarkGetVsCurl times `mirrornet get -o` from one mirror against
// curl from a Go net/http file server serving the same bytes, in the same
// iteration: a one-file bundle (MIRRORNET_BENCH_CURL_MIB, default 256)
// against curl + sha256sum, and a 5,000-file bundle against curl | tar x.
// ratio = baseline time / get time (goal >= 1).
func BenchmarkGetVsCurl(b *testing.B) {
	a := startNode(b)
	boot := a.info(b).HTTP
	b.Run("one-file", func(b *testing.B) {
		size := benchMiB("MIRRORNET_BENCH_CURL_MIB", 256) << 20
		src := filepath.Join(b.TempDir(), "site")
		os.Mkdir(src, 0o755)
		sum := writeSeeded(b, filepath.Join(src, "big.bin"), 9, size)
		root := benchPublish(b, a.data, src)
		fs := httptest.NewServer(http.FileServer(http.Dir(src)))
		defer fs.Close()
		dst := b.TempDir()
		var tGet, tCurl time.Duration
		for b.Loop() {
			out := filepath.Join(dst, "out")
			d, _ := timed(b, binPath, "get", root, "-o", out, "--bootstrap", boot)
			tGet += d
			os.RemoveAll(out)
			f := filepath.Join(dst, "big.bin")
			start := time.Now()
			got, err := exec.Command("sh", "-c", fmt.Sprintf("curl -sf -o %s %s/big.bin && sha256sum %s", f, fs.URL, f)).Output()
			tCurl += time.Since(start)
			if err != nil || !strings.HasPrefix(string(got), hex.EncodeToString(sum[:])) {
				b.Fatalf("curl + sha256sum: %q %v", got, err)
			}
			os.Remove(f)
		}
		b.ReportMetric(float64(size)/tGet.Seconds()*float64(b.N)/1e6, "get-MB/s")
		b.ReportMetric(float64(size)/tCurl.Seconds()*float64(b.N)/1e6, "curl+sha256-MB/s")
		b.ReportMetric(tCurl.Seconds()/tGet.Seconds(), "ratio")
	})
	b.Run("5000-files", func(b *testing.B) {
		src := filepath.Join(b.TempDir(), "site")
		for i := range 5000 {
			p := filepath.Join(src, fmt.Sprintf("d%02d", i%50), fmt.Sprintf("f%04d.js", i))
			os.MkdirAll(filepath.Dir(p), 0o755)
			writeSeeded(b, p, uint64(1000+i), int64(512+(i*7919)%16384))
		}
		root := benchPublish(b, a.data, src)
		tarDir := b.TempDir()
		if out, err := exec.Command("tar", "cf", filepath.Join(tarDir, "site.tar"), "-C", src, ".").CombinedOutput(); err != nil {
			b.Fatalf("tar: %v %s", err, out)
		}
		fs := httptest.NewServer(http.FileServer(http.Dir(tarDir)))
		defer fs.Close()
		dst := b.TempDir()
		var tGet, tCurl time.Duration
		for b.Loop() {
			out := filepath.Join(dst, "out")
			d, _ := timed(b, binPath, "get", root, "-o", out, "--bootstrap", boot)
			tGet += d
			if n := countFiles(b, out); n != 5000 {
				b.Fatalf("get wrote %d files", n)
			}
			os.RemoveAll(out)
			x := filepath.Join(dst, "x")
			os.Mkdir(x, 0o755)
			start := time.Now()
			if out, err := exec.Command("sh", "-c", fmt.Sprintf("curl -sf %s/site.tar | tar x -C %s", fs.URL, x)).CombinedOutput(); err != nil {
				b.Fatalf("curl | tar x: %v %s", err, out)
			}
			tCurl += time.Since(start)
			os.RemoveAll(x)
		}
		b.ReportMetric(tGet.Seconds()*1000/float64(b.N), "get-ms")
		b.ReportMetric(tCurl.Seconds()*1000/float64(b.N), "curl|tar-ms")
		b.ReportMetric(tCurl.Seconds()/tGet.Seconds(), "ratio")
	})
}

func countFiles(b *testing.B, dir string) int {
	n := 0
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}
