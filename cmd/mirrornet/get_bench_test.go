package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
// ratio = baseline time / get time (goal >= 1), the median of the
// iterations' own ratios.
//
// Both sides are treated alike: each server is a process of its own (the
// mirror is `mirrornet node` at its default log level, the file server
// this test binary re-executed), both serve from the page cache, each
// timed command starts after a sync (so neither pays for the other's dirty
// pages), the two run in alternating order, and outputs are kept until the
// end (ext4 allocates inodes slowly near inodes freed in the last 30 s, so
// deleting one side's tree would slow the other's). Outputs go to
// MIRRORNET_BENCH_DIR if set (for example a file system of its own, away
// from other processes' churn), else the test's temporary directory.
func BenchmarkGetVsCurl(b *testing.B) {
	a := startNode(b, "--log-level", "info")
	boot := a.info(b).HTTP
	b.Run("one-file", func(b *testing.B) {
		size := benchMiB("MIRRORNET_BENCH_CURL_MIB", 256) << 20
		src := filepath.Join(b.TempDir(), "site")
		os.Mkdir(src, 0o755)
		sum := writeSeeded(b, filepath.Join(src, "big.bin"), 9, size)
		root := benchPublish(b, a.data, src)
		fsURL := startFileServer(b, src)
		want := hex.EncodeToString(sum[:])
		get := func(dst string) { timed(b, binPath, "get", root, "-o", dst, "--bootstrap", boot) }
		old := oldGet(b, root, boot)
		check := func(dst string) {
			if got := fileSum(b, filepath.Join(dst, "big.bin")); hex.EncodeToString(got[:]) != want {
				b.Fatal("get wrote other bytes")
			}
		}
		curl := func(dst string) {
			f := dst + ".bin"
			got, err := exec.Command("sh", "-c", fmt.Sprintf("curl -sf -o %s %s/big.bin && sha256sum %s", f, fsURL, f)).Output()
			if err != nil || !strings.HasPrefix(string(got), want) {
				b.Fatalf("curl + sha256sum: %q %v", got, err)
			}
		}
		r := runVersus(b, get, curl, old, check)
		r.report(b, "curl+sha256")
		b.ReportMetric(float64(size)/r.median(r.get)/1e6, "get-MB/s")
		b.ReportMetric(float64(size)/r.median(r.base)/1e6, "curl+sha256-MB/s")
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
		fsURL := startFileServer(b, tarDir)
		get := func(dst string) { timed(b, binPath, "get", root, "-o", dst, "--bootstrap", boot) }
		// The same get without making the tree durable before the rename
		// (curl and tar do not either).
		others := append(oldGet(b, root, boot), &contender{name: "no-sync", run: func(dst string) {
			timed(b, binPath, "get", root, "-o", dst, "--bootstrap", boot, "--no-sync")
		}})
		check := func(dst string) {
			if n := countFiles(b, dst); n != 5000 {
				b.Fatalf("get wrote %d files", n)
			}
		}
		curl := func(dst string) {
			os.Mkdir(dst, 0o755)
			if out, err := exec.Command("sh", "-c", fmt.Sprintf("curl -sf %s/site.tar | tar x -C %s", fsURL, dst)).CombinedOutput(); err != nil {
				b.Fatalf("curl | tar x: %v %s", err, out)
			}
		}
		r := runVersus(b, get, curl, others, check)
		r.report(b, "curl|tar")
	})
}

// versus holds the per-iteration times of runVersus.
type versus struct {
	get, base, ratio []float64 // seconds; baseline / get
	others           []*contender
}

// contender is another command timed in every iteration beside get and
// the baseline, into a directory of its own: get with other flags, or
// another binary's get (oldGet). Reported as NAME-get-ms and NAME-ratio
// (baseline / its time).
type contender struct {
	name     string
	run      func(dst string)
	t, ratio []float64
}

// oldGetEnv names another mirrornet binary (say, main before a change)
// whose `get` runs in every iteration too, into a directory of its own:
// the two binaries are compared in the same minutes, against the same
// baseline and the same state of the file system.
const oldGetEnv = "MIRRORNET_BENCH_OLD_BIN"

// oldGet is `get -o` with the binary oldGetEnv names (as contender
// "old"), if any.
func oldGet(b *testing.B, root, boot string) []*contender {
	bin := os.Getenv(oldGetEnv)
	if bin == "" {
		return nil
	}
	return []*contender{{name: "old", run: func(dst string) { timed(b, bin, "get", root, "-o", dst, "--bootstrap", boot) }}}
}

// runVersus runs get, base and every contender once per iteration into
// fresh directories (kept until the benchmark ends), in rotating order,
// each after a sync and timed alone; check (untimed) inspects get's and
// the contenders' output.
func runVersus(b *testing.B, get, base func(dst string), others []*contender, check func(dst string)) *versus {
	root := os.Getenv("MIRRORNET_BENCH_DIR")
	if root == "" {
		root = b.TempDir()
	} else {
		var err error
		if root, err = os.MkdirTemp(root, "getvscurl-"); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(root) })
	}
	r := &versus{others: others}
	one := func(f func(string), dst string) float64 {
		syscall.Sync()
		start := time.Now()
		f(dst)
		return time.Since(start).Seconds()
	}
	i := 0
	for b.Loop() {
		var tg, tb float64
		to := make([]float64, len(others))
		runs := []func(){
			func() { tg = one(get, filepath.Join(root, fmt.Sprintf("get%d", i))) },
			func() { tb = one(base, filepath.Join(root, fmt.Sprintf("base%d", i))) },
		}
		for k, o := range others {
			runs = append(runs, func() { to[k] = one(o.run, filepath.Join(root, fmt.Sprintf("%s%d", o.name, i))) })
		}
		for k := range runs {
			runs[(i+k)%len(runs)]()
		}
		check(filepath.Join(root, fmt.Sprintf("get%d", i)))
		r.get, r.base, r.ratio = append(r.get, tg), append(r.base, tb), append(r.ratio, tb/tg)
		line := fmt.Sprintf("iteration %d: get %.3f s, baseline %.3f s, ratio %.2f", i, tg, tb, tb/tg)
		for k, o := range others {
			check(filepath.Join(root, fmt.Sprintf("%s%d", o.name, i)))
			o.t, o.ratio = append(o.t, to[k]), append(o.ratio, tb/to[k])
			line += fmt.Sprintf("; %s get %.3f s, ratio %.2f", o.name, to[k], tb/to[k])
		}
		if testing.Verbose() {
			b.Logf("%s, load %s", line, loadAvg())
		}
		i++
	}
	return r
}

func (r *versus) median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (r *versus) report(b *testing.B, base string) {
	b.ReportMetric(r.median(r.get)*1000, "get-ms")
	b.ReportMetric(r.median(r.base)*1000, base+"-ms")
	b.ReportMetric(r.median(r.ratio), "ratio")
	b.ReportMetric(slices.Min(r.ratio), "ratio-min")
	for _, o := range r.others {
		b.ReportMetric(r.median(o.t)*1000, o.name+"-get-ms")
		b.ReportMetric(r.median(o.ratio), o.name+"-ratio")
	}
	if l, err := strconv.ParseFloat(strings.Fields(loadAvg())[0], 64); err == nil {
		b.ReportMetric(l, "load1")
	}
}

// loadAvg is the first three fields of /proc/loadavg ("" elsewhere).
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(data))[:3], " ")
}

// startFileServer serves dir with net/http's FileServer from a process of
// its own (this test binary, re-executed: see TestMain) and returns its
// base URL.
func startFileServer(b *testing.B, dir string) string {
	b.Helper()
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), fileServerEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		b.Fatalf("file server: %v", err)
	}
	return "http://" + strings.TrimSpace(line)
}

// fileServerEnv makes the test binary a plain net/http file server of the
// directory it names (the benchmarks' baseline server).
const fileServerEnv = "MIRRORNET_BENCH_FILESERVER"

// serveFiles is the file server process: it prints its address and serves
// until killed.
func serveFiles(dir string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr())
	http.Serve(ln, http.FileServer(http.Dir(dir)))
	os.Exit(1)
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
