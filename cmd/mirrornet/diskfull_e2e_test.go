package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/mirrornet/mirrornet/internal/bundle"
	"github.com/mirrornet/mirrornet/internal/store"
	"github.com/mirrornet/mirrornet/node"
)

// publishTree writes one file of n seeded bytes in its own directory,
// publishes it on p and returns its CID and block count.
func publishTree(t *testing.T, p *proc, seed uint64, n int) (cid.Cid, bundle.Result) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), fmt.Sprintf("app%d", seed))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "app.wasm"), seededBytes(seed, n), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := mirrornet(t, "publish", dir, "--data", p.data, "--json")
	if code != 0 {
		t.Fatalf("publish exit %d: %s", code, errOut)
	}
	var res node.ImportResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	c := cid.MustParse(res.CID)
	return c, bundle.Result{Root: c, Blocks: res.Blocks, Size: res.Size}
}

// TestE2EDiskFull: a mirror whose data directory is a tmpfs too small for a
// second bundle keeps serving the first, shows the second as fetching with a
// clear "no space" note in `ls`, and completes it once space is freed
// (unfollowing the first).
func TestE2EDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns nodes")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	data := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", data).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs: %v: %s", err, out)
	}
	// Registered after mount so it runs after the node is killed.
	t.Cleanup(func() {
		if err := syscall.Unmount(data, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", data, err)
		}
	})

	origin := startNode(t)
	first, _ := publishTree(t, origin, 1, 2<<20+1000)     // 3 leaves
	second, res2 := publishTree(t, origin, 2, 3<<20+1000) // does not fit beside the first
	boot := origin.info(t).Addrs[0]

	f := startNodeAt(t, data, "--bootstrap", boot, "--follow", first.String())
	waitFor(t, 30*time.Second, "first bundle held", func() (bool, string) {
		st, note := lsState(t, data, first)
		return st == store.StateHeld, st + " " + note
	})

	if _, errOut, code := mirrornet(t, "follow", second.String(), "--data", data); code != 0 {
		t.Fatalf("follow exit %d: %s", code, errOut)
	}
	waitFor(t, 30*time.Second, "a no-space note on the second bundle", func() (bool, string) {
		st, note := lsState(t, data, second)
		return st == store.StateFetching && strings.Contains(note, "no space left"), st + " " + note
	})
	out, _, code := mirrornet(t, "ls", "--data", data)
	if code != 0 || !strings.Contains(out, "no space left on device") {
		t.Fatalf("ls table does not show the error (exit %d):\n%s", code, out)
	}
	t.Logf("ls on the full disk:\n%s", out)
	if st, _ := lsState(t, data, first); st != store.StateHeld {
		t.Fatalf("first bundle is %q on a full disk", st)
	}
	// The full mirror still serves the first bundle, verified.
	url := f.info(t).HTTP + "/ipfs/" + first.String() + "?format=raw"
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s on a full disk: %s", url, resp.Status)
	}
	if sum := sha256.Sum256(body); !strings.HasSuffix(string(first.Hash()), string(sum[:])) {
		t.Fatal("root block served on a full disk does not match its CID")
	}

	// Free space: the second bundle completes on its own.
	if _, errOut, code := mirrornet(t, "unfollow", first.String(), "--data", data); code != 0 {
		t.Fatalf("unfollow exit %d: %s", code, errOut)
	}
	waitFor(t, 45*time.Second, "second bundle held after freeing space", func() (bool, string) {
		st, note := lsState(t, data, second)
		return st == store.StateHeld, st + " " + note
	})
	f.kill(t)
	if got := checkStore(t, data, second, res2); got != store.StateHeld {
		t.Fatalf("store says %q", got)
	}
}
