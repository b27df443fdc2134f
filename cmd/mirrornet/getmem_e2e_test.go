package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	car "github.com/ipld/go-car/v2"
)

// writeSeeded writes n seeded pseudo-random bytes to p and returns their
// sha256.
func writeSeeded(t testing.TB, p string, seed uint64, n int64) [32]byte {
	t.Helper()
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.NewChaCha8(key), n); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

func fileSum(t testing.TB, p string) [32]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// runMeasured runs the binary and returns its peak resident set (bytes).
//
// The peak is measured by a tiny launcher, not taken from this process's
// wait: Linux counts into a child's ru_maxrss the resident set of the
// process that forked it (at exec, the old address space's high-water mark
// is kept), and Go forks with the parent's memory shared, so a wait here
// would report this test process's own peak (which depends on the tests it
// ran before and on the race detector), not mirrornet's. The launcher's
// few MiB are what the exec inherits instead.
func runMeasured(t testing.TB, env []string, args ...string) (int64, string) {
	t.Helper()
	launcher := rssLauncher(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out := filepath.Join(t.TempDir(), "maxrss")
	cmd := exec.CommandContext(ctx, launcher, append([]string{out, binPath}, args...)...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %v: %s", args, err, errb.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("%v: launcher wrote no peak RSS: %v", args, err)
	}
	kib, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("%v: launcher's peak RSS %q: %v", args, b, err)
	}
	return kib << 10, errb.String() // Linux reports KiB
}

// rssLauncherSrc runs its arguments after the first as a command, writes
// the command's peak RSS (KiB) to the file named by the first, and exits
// with the command's status.
const rssLauncherSrc = `package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

func main() {
	cmd := exec.Command(os.Args[2], os.Args[3:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	if cmd.ProcessState == nil {
		fmt.Fprintln(os.Stderr, "rss launcher:", err)
		os.Exit(2)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if err := os.WriteFile(os.Args[1], []byte(strconv.FormatInt(ru.Maxrss, 10)), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "rss launcher:", err)
		os.Exit(2)
	}
	os.Exit(cmd.ProcessState.ExitCode())
}
`

var (
	rssLauncherOnce sync.Once
	rssLauncherPath string
	rssLauncherErr  error
)

// rssLauncher builds the launcher once (plain go build: no race detector,
// a few MiB resident).
func rssLauncher(t testing.TB) string {
	t.Helper()
	rssLauncherOnce.Do(func() {
		dir := filepath.Join(filepath.Dir(binPath), "rsslauncher")
		if rssLauncherErr = os.MkdirAll(dir, 0o755); rssLauncherErr != nil {
			return
		}
		if rssLauncherErr = os.WriteFile(filepath.Join(dir, "main.go"), []byte(rssLauncherSrc), 0o644); rssLauncherErr != nil {
			return
		}
		build := exec.Command("go", "build", "-o", "rsslauncher", "main.go")
		build.Dir = dir
		build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=", "GO111MODULE=on")
		var msg []byte
		if msg, rssLauncherErr = build.CombinedOutput(); rssLauncherErr != nil {
			rssLauncherErr = fmt.Errorf("%w: %s", rssLauncherErr, msg)
			return
		}
		rssLauncherPath = filepath.Join(dir, "rsslauncher")
	})
	if rssLauncherErr != nil {
		t.Fatalf("build the RSS launcher: %v", rssLauncherErr)
	}
	return rssLauncherPath
}

// `mirrornet get` of a bundle several times larger than the memory it is
// allowed completes, verifies, and never holds the bundle in memory: its
// peak RSS stays far below the bundle's size, for -o and --car alike.
func TestE2EGetLargerThanMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 192 MiB several times")
	}
	const size = 192 << 20
	const limit = 96 << 20 // peak RSS allowed; the in-memory client needs > size
	src := filepath.Join(t.TempDir(), "site")
	os.Mkdir(src, 0o755)
	want := writeSeeded(t, filepath.Join(src, "big.bin"), 42, size)

	a := startNode(t)
	pub := publishJSON(t, a.data, src)
	env := []string{"GOMEMLIMIT=48MiB", "HOME=" + t.TempDir()}
	dst := t.TempDir()

	out := filepath.Join(dst, "out")
	rss, _ := runMeasured(t, env, "get", pub.CID, "-o", out, "--bootstrap", a.info(t).HTTP)
	if got := fileSum(t, filepath.Join(out, "big.bin")); got != want {
		t.Fatal("get -o wrote other bytes")
	}
	t.Logf("get -o of %d MiB: peak RSS %.1f MiB", size>>20, float64(rss)/(1<<20))
	if rss > limit {
		t.Errorf("get -o of %d MiB peaked at %.1f MiB of RSS, over %d MiB", size>>20, float64(rss)/(1<<20), limit>>20)
	}
	os.RemoveAll(out)

	car := filepath.Join(dst, "app.car")
	rss, _ = runMeasured(t, env, "get", pub.CID, "--car", car, "--bootstrap", a.info(t).HTTP)
	if fi, err := os.Stat(car); err != nil || fi.Size() < size {
		t.Fatalf("get --car wrote %v (%v)", fi, err)
	}
	if got := carFileSum(t, car, pub.CID); got != want {
		t.Fatal("get --car wrote a CAR whose leaves are not the file")
	}
	t.Logf("get --car of %d MiB: peak RSS %.1f MiB", size>>20, float64(rss)/(1<<20))
	if rss > limit {
		t.Errorf("get --car of %d MiB peaked at %.1f MiB of RSS, over %d MiB", size>>20, float64(rss)/(1<<20), limit>>20)
	}
	if ents, _ := os.ReadDir(dst); len(ents) != 1 {
		t.Errorf("left behind in the output directory: %v", ents)
	}
}

// carFileSum checks a CARv1's single root and every block's hash, and
// returns the sha256 of its raw leaves in order: the file's bytes for a
// one-file bundle written depth-first.
func carFileSum(t testing.TB, p, root string) [32]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br, err := car.NewBlockReader(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	if len(br.Roots) != 1 || br.Roots[0].String() != root {
		t.Fatalf("CAR roots %v, want %s", br.Roots, root)
	}
	h := sha256.New()
	for {
		blk, err := br.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if sum, err := blk.Cid().Prefix().Sum(blk.RawData()); err != nil || !sum.Equals(blk.Cid()) {
			t.Fatalf("CAR block %s does not match its CID", blk.Cid())
		}
		if blk.Cid().Type() == cid.Raw {
			h.Write(blk.RawData())
		}
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}
