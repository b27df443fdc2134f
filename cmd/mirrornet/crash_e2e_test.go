package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/mirrornet/mirrornet/internal/bundle"
	"github.com/mirrornet/mirrornet/internal/store"
	"github.com/mirrornet/mirrornet/node"
)

// startNodeAt starts `mirrornet node` on loopback (local profile) with the
// given data directory, which may hold the state of an earlier run. The
// node.json of a killed run is removed first so the new one is waited for.
func startNodeAt(t testing.TB, data string, extra ...string) *proc {
	t.Helper()
	return startNodeAs(t, binPath, nil, data, extra...)
}

// startNodeAs is startNodeAt running the binary bin as the user cred
// (nil: this process's user).
func startNodeAs(t testing.TB, bin string, cred *syscall.Credential, data string, extra ...string) *proc {
	t.Helper()
	if err := os.Remove(filepath.Join(data, "node.json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	args := append([]string{"node", "--data", data, "--listen", "/ip4/127.0.0.1/tcp/0", "--http", "127.0.0.1:0",
		"--profile", "local", "--mdns=false", "--dht=false", "--log-level", "debug"}, extra...)
	cmd := exec.Command(bin, args...)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Env = append(os.Environ(), "HOME="+data)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, data: data, stderr: &stderr, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		err := <-p.done
		p.done <- err
		if t.Failed() {
			t.Logf("node %s stderr:\n%s", data, lastLines(stderr.String(), 30))
		}
	})
	waitFor(t, 20*time.Second, "node.json of "+data, func() (bool, string) {
		_, err := node.ReadInfo(data)
		select {
		case err := <-p.done:
			p.done <- err // for the cleanup, which waits for it
			t.Fatalf("node exited early: %v\n%s", err, stderr.String())
		default:
		}
		return err == nil, fmt.Sprint(err)
	})
	return p
}

// kill SIGKILLs p and waits for it to exit.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case err := <-p.done:
		p.done <- err // for Cleanup
	case <-time.After(guardSlack * 10 * time.Second):
		t.Fatal("killed node did not exit")
	}
}

// seededBytes returns n deterministic pseudo-random bytes.
func seededBytes(seed uint64, n int) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}

// crashTree writes an app of a few MiB with many blocks: small files and
// one file of several 1 MiB chunks.
func crashTree(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "app")
	for i := range 40 {
		p := filepath.Join(dir, fmt.Sprintf("d%d", i%4), fmt.Sprintf("f%02d.js", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, seededBytes(uint64(i), 20000+i*1500), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "app.wasm"), seededBytes(99, 3<<20+4321), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// packBytes is how many bytes the pack files of a node's store hold: blocks
// reach the disk by being appended to them.
func packBytes(data string) int64 {
	var n int64
	paths, _ := filepath.Glob(filepath.Join(data, "blocks", "packs", "*.pack"))
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// recordedHeld reads the store's bundle list as a crash left it.
func recordedHeld(t *testing.T, data string, root cid.Cid) bool {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(data, "blocks", "bundles.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	var recs []struct{ Root, State string }
	if err := json.Unmarshal(raw, &recs); err != nil {
		t.Fatalf("bundles.json torn after a crash: %v", err)
	}
	for _, r := range recs {
		if r.Root == root.String() && r.State == store.StateHeld {
			return true
		}
	}
	return false
}

// checkStore opens a stopped node's store and returns the bundle's state;
// a held bundle must have every block present and verified.
func checkStore(t *testing.T, data string, root cid.Cid, want bundle.Result) string {
	t.Helper()
	s, err := store.Open(filepath.Join(data, "blocks"), store.Options{})
	if err != nil {
		t.Fatalf("reopening the store: %v", err)
	}
	defer s.Close()
	state := "absent"
	for _, b := range s.Bundles() {
		if b.Root.Equals(root) {
			state = b.State
		}
	}
	if state == store.StateHeld {
		n := 0
		if err := bundle.Walk(t.Context(), root, s.Get, func(cid.Cid, []byte) error { n++; return nil }); err != nil {
			t.Fatalf("held bundle does not verify: %v", err)
		}
		if n != want.Blocks {
			t.Fatalf("held bundle has %d blocks, want %d", n, want.Blocks)
		}
	}
	return state
}

func lsState(t *testing.T, data string, root cid.Cid) (string, string) {
	t.Helper()
	out, errOut, code := mirrornet(t, "ls", "--data", data, "--json")
	if code != 0 {
		return "", fmt.Sprintf("ls exit %d: %s", code, errOut)
	}
	var list []node.BundleStatus
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("ls --json: %v\n%s", err, out)
	}
	for _, b := range list {
		if b.CID == root.String() {
			return b.State, b.Error
		}
	}
	return "absent", ""
}

// TestE2ECrashDuringFetch: an origin publishes a bundle of a few MiB; a
// follower started with --follow is SIGKILLed at a seeded random moment of
// its fetch (after a random share of the bundle's bytes reached its disk,
// or after a random delay), in 20 trials. After each kill the bundle as the
// crash left it is absent, fetching, or held and complete (never held and
// partial); the follower restarted on the same --data reports it fetching
// then held, or held, in `ls --json`, and the held bundle verifies block by
// block.
func TestE2ECrashDuringFetch(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns nodes")
	}
	tree := crashTree(t)
	origin := startNode(t)
	out, errOut, code := mirrornet(t, "publish", tree, "--data", origin.data, "--json")
	if code != 0 {
		t.Fatalf("publish exit %d: %s", code, errOut)
	}
	var pub node.ImportResult
	if err := json.Unmarshal([]byte(out), &pub); err != nil {
		t.Fatal(err)
	}
	root := cid.MustParse(pub.CID)
	want := bundle.Result{Root: root, Blocks: pub.Blocks, Size: pub.Size}
	boot := origin.info(t).Addrs[0]
	args := []string{"--bootstrap", boot, "--follow", root.String()}

	rng := rand.New(rand.NewPCG(2026, 1124))
	const trials = 20
	outcomes := map[string]int{}
	start := time.Now()
	for trial := range trials {
		data := t.TempDir()
		f := startNodeAt(t, data, args...)
		// Kill after the bytes of about k blocks reached the disk (k from 0
		// to all), or, every third trial, after a random delay (which may
		// land before the fetch starts or after it ends).
		k := rng.IntN(want.Blocks + 1)
		kBytes := int64(k) * want.Size / int64(want.Blocks)
		delay := time.Duration(rng.IntN(120)) * time.Millisecond
		byDelay := trial%3 == 2
		deadline := time.Now().Add(delay)
		if !byDelay {
			deadline = time.Now().Add(20 * time.Second)
		}
		tick := time.NewTicker(time.Millisecond)
		for time.Now().Before(deadline) && (byDelay || packBytes(data) < kBytes) {
			<-tick.C
		}
		tick.Stop()
		f.kill(t)
		atKill := packBytes(data)

		held := recordedHeld(t, data, root)
		state := checkStore(t, data, root, want)
		if held && state != store.StateHeld {
			t.Fatalf("trial %d: bundles.json said held but the store found it incomplete", trial)
		}
		outcomes["after kill: "+state]++

		f = startNodeAt(t, data, args...)
		var seen []string
		waitFor(t, 30*time.Second, fmt.Sprintf("trial %d: bundle held after restart", trial), func() (bool, string) {
			st, note := lsState(t, data, root)
			if len(seen) == 0 || seen[len(seen)-1] != st {
				seen = append(seen, st)
			}
			return st == store.StateHeld, st + " " + note
		})
		for i, st := range seen {
			if st == store.StateHeld && i != len(seen)-1 {
				t.Fatalf("trial %d: states after restart %v: held went back", trial, seen)
			}
			if st != store.StateHeld && st != store.StateFetching && st != "absent" {
				t.Fatalf("trial %d: state %q", trial, st)
			}
		}
		f.kill(t)
		if got := checkStore(t, data, root, want); got != store.StateHeld {
			t.Fatalf("trial %d: after restart and fetch the store says %q", trial, got)
		}
		t.Logf("trial %d: killed with %d/%d bytes in packs (k=%d, delay=%v, byDelay=%v): %s; after restart: %v",
			trial, atKill, want.Size, k, delay, byDelay, state, seen)
	}
	t.Logf("%d trials in %v: %v", trials, time.Since(start).Round(time.Millisecond), outcomes)
	if outcomes["after kill: "+store.StateFetching] == 0 {
		t.Errorf("no kill landed during a fetch: %v", outcomes)
	}

	// As a user would check it: with the origin gone, the light client gets
	// the app from the restarted follower alone, verified, byte for byte.
	f := startNodeAt(t, t.TempDir(), args...)
	waitFor(t, 30*time.Second, "last follower holds the bundle", func() (bool, string) {
		st, note := lsState(t, f.data, root)
		return st == store.StateHeld, st + " " + note
	})
	f.kill(t)
	origin.kill(t)
	f = startNodeAt(t, f.data, args...)
	dst := filepath.Join(t.TempDir(), "got")
	if _, errOut, code := mirrornet(t, "get", root.String(), "--bootstrap", f.info(t).HTTP, "-o", dst); code != 0 {
		t.Fatalf("get from the restarted follower: exit %d: %s", code, errOut)
	}
	_ = filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(tree, p)
		a, _ := os.ReadFile(p)
		b, err := os.ReadFile(filepath.Join(dst, rel))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs after get (%v)", rel, err)
		}
		return nil
	})
}
