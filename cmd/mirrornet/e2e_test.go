package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mirrornet/mirrornet/node"
)

// guardSlack stretches every failure guard of the end-to-end tests (real
// processes in real time): they only stop a hung test.
const guardSlack = 4

// binPath is the mirrornet binary built once for the end-to-end tests,
// which drive it as a user would.
var binPath string

func TestMain(m *testing.M) {
	if dir := os.Getenv(fileServerEnv); dir != "" {
		serveFiles(dir) // a benchmark's baseline server
	}
	dir, err := os.MkdirTemp("", "mirrornet-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "mirrornet")
	build := exec.Command("go", "build", "-o", binPath, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build mirrornet:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is one running mirrornet process.
type proc struct {
	cmd    *exec.Cmd
	data   string
	stderr *bytes.Buffer
	done   chan error
}

// startNode starts `mirrornet node` on loopback with the local profile and
// a fresh data directory. Later flags win, so extra may override any.
func startNode(t testing.TB, extra ...string) *proc {
	t.Helper()
	return startNodeAt(t, t.TempDir(), extra...)
}

func (p *proc) info(t testing.TB) node.Info {
	t.Helper()
	info, err := node.ReadInfo(p.data)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// mirrornet runs the binary to completion and returns stdout, stderr and
// the exit code.
func mirrornet(t testing.TB, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// waitFor polls cond until it holds. within guards against a hung test and
// is never a speed goal: it is stretched guardSlack times, so that a
// machine whose cores are saturated by other work (and other engineers'
// processes) still passes; speed goals are benchmarks.
func waitFor(t testing.TB, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	within *= guardSlack
	deadline := time.Now().Add(within)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %s", what, within, detail)
		}
		<-tick.C
	}
}

func statusJSON(t *testing.T, httpURL string) node.Status {
	t.Helper()
	out, errOut, code := mirrornet(t, "status", "--http", httpURL, "--json")
	if code != 0 {
		t.Fatalf("status exit %d: %s", code, errOut)
	}
	var st node.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json is not JSON: %v\n%s", err, out)
	}
	return st
}

func statesOf(st node.Status) map[string]string {
	m := map[string]string{}
	for _, ms := range st.Mirrors {
		m[ms.PeerID] = ms.State
	}
	return m
}

func TestE2EThreeNodesAliveDeadLeft(t *testing.T) {
	a := startNode(t)
	boot := a.info(t).Addrs[0]
	b := startNode(t, "--bootstrap", boot)
	c := startNode(t, "--bootstrap", boot)
	ia, ib, ic := a.info(t), b.info(t), c.info(t)

	waitFor(t, 20*time.Second, "three alive in status --json", func() (bool, string) {
		st := statesOf(statusJSON(t, ia.HTTP))
		ok := len(st) == 3 && st[ia.PeerID] == "alive" && st[ib.PeerID] == "alive" && st[ic.PeerID] == "alive"
		return ok, fmt.Sprint(st)
	})

	// SIGKILL one: it turns dead.
	if err := b.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "killed node dead", func() (bool, string) {
		st := statesOf(statusJSON(t, ia.HTTP))
		return st[ib.PeerID] == "dead", fmt.Sprint(st)
	})

	// SIGTERM one: it leaves gracefully and exits 0.
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.done:
		if err != nil {
			t.Fatalf("SIGTERM: node exited with %v\n%s", err, c.stderr.String())
		}
		c.done <- err // for Cleanup
	case <-time.After(guardSlack * 15 * time.Second):
		t.Fatal("node did not exit after SIGTERM")
	}
	waitFor(t, 20*time.Second, "terminated node left", func() (bool, string) {
		st := statesOf(statusJSON(t, ia.HTTP))
		return st[ic.PeerID] == "left", fmt.Sprint(st)
	})
}

func TestE2EBadInput(t *testing.T) {
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"unknown flag", []string{"node", "--nope"}, 2, "flag provided but not defined: -nope"},
		{"malformed listen", []string{"node", "--listen", "/ip4/nonsense"}, 2, `listen: malformed multiaddr "/ip4/nonsense"`},
		{"malformed bootstrap", []string{"node", "--bootstrap", "/ip4/127.0.0.1/tcp/1"}, 2, `bootstrap`},
		{"bad profile", []string{"node", "--profile", "moon"}, 2, `profile`},
		{"status without node", []string{"status", "--http", "127.0.0.1:1"}, 1, "no node answers at http://127.0.0.1:1"},
		{"follow bad cid", []string{"follow", "not-a-cid"}, 2, `"not-a-cid" is neither a CID nor an app ID`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := mirrornet(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit code %d, want %d; stderr: %s", code, tc.code, errOut)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q does not contain %q", errOut, tc.want)
			}
			if n := strings.Count(strings.TrimSpace(errOut), "\n"); n > 0 {
				t.Errorf("want a one-line error, got %d lines: %q", n+1, errOut)
			}
		})
	}
}

func TestE2ECorruptKeyIsNotReplaced(t *testing.T) {
	data := t.TempDir()
	key := filepath.Join(data, "identity.key")
	if err := os.WriteFile(key, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := mirrornet(t, "node", "--data", data, "--listen", "/ip4/127.0.0.1/tcp/0", "--http", "", "--mdns=false", "--dht=false")
	if code == 0 || !strings.Contains(errOut, "identity.key is corrupt") {
		t.Fatalf("exit %d, stderr %q: want a clear corrupt-key error", code, errOut)
	}
	if b, _ := os.ReadFile(key); string(b) != "garbage" {
		t.Fatal("corrupt key file was replaced")
	}
}

func TestE2EUnwritableDataDir(t *testing.T) {
	if os.Geteuid() == 0 {
		// root writes anywhere; use a path under a regular file instead.
		f := filepath.Join(t.TempDir(), "file")
		os.WriteFile(f, nil, 0o600)
		_, errOut, code := mirrornet(t, "node", "--data", filepath.Join(f, "sub"), "--http", "", "--mdns=false", "--dht=false")
		if code == 0 || !strings.Contains(errOut, "data directory") {
			t.Fatalf("exit %d, stderr %q: want a data directory error", code, errOut)
		}
		return
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o500)
	_, errOut, code := mirrornet(t, "node", "--data", filepath.Join(dir, "d"), "--http", "", "--mdns=false", "--dht=false")
	if code == 0 || !strings.Contains(errOut, "data directory") {
		t.Fatalf("exit %d, stderr %q: want a data directory error", code, errOut)
	}
}

// sampleDir is the sample dapp shipped in the repository.
func sampleDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../../examples/sample-dapp/site")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "index.html")); err != nil {
		t.Fatalf("sample dapp missing: %v", err)
	}
	return dir
}

// sameTree fails the test unless got holds exactly want's files and bytes.
func sameTree(t *testing.T, want, got string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(want, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		a, _ := os.ReadFile(p)
		b, err := os.ReadFile(filepath.Join(got, rel))
		if err != nil {
			t.Errorf("%s missing from output: %v", rel, err)
			return nil
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs", rel)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	m := 0
	filepath.WalkDir(got, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			m++
		}
		return nil
	})
	if n != m || n == 0 {
		t.Errorf("output has %d files, want %d", m, n)
	}
}

// TestE2EPublishFollowGet is the light client as a new user runs it: three
// mirrors on loopback, publish on one, the others follow, the origin goes
// away, and `mirrornet get CID -o out` brings back exactly the app.
func TestE2EPublishFollowGet(t *testing.T) {
	a := startNode(t)
	ia := a.info(t)
	b := startNode(t, "--bootstrap", ia.HTTP)
	c := startNode(t, "--bootstrap", ia.Addrs[0])
	site := sampleDir(t)

	pub := publishJSON(t, a.data, site)
	offline, _, _ := mirrornet(t, "publish", "--offline", site)
	if strings.TrimSpace(offline) != pub.CID {
		t.Fatalf("publish --offline gives %q, the node %q", offline, pub.CID)
	}
	for _, p := range []*proc{b, c} {
		if _, errOut, code := mirrornet(t, "follow", "--data", p.data, pub.CID); code != 0 {
			t.Fatalf("follow: exit %d: %s", code, errOut)
		}
	}
	for _, p := range []*proc{b, c} {
		waitFor(t, 30*time.Second, "follower holds the app", func() (bool, string) {
			out, errOut, _ := mirrornet(t, "ls", "--data", p.data, "--json")
			var list []struct {
				CID   string `json:"cid"`
				State string `json:"state"`
				Bytes int64  `json:"bytes"`
			}
			json.Unmarshal([]byte(out), &list)
			return len(list) == 1 && list[0].CID == pub.CID && list[0].State == "held" && list[0].Bytes == pub.Size, out + errOut
		})
	}

	// The origin goes down.
	a.cmd.Process.Signal(syscall.SIGKILL)
	<-a.done
	a.done <- nil

	dir := t.TempDir()
	dest := filepath.Join(dir, "out")
	out, errOut, code := mirrornet(t, "get", pub.CID, "-o", dest, "--bootstrap", b.info(t).HTTP, "--bootstrap", ia.HTTP, "--json")
	if code != 0 {
		t.Fatalf("get: exit %d: %s", code, errOut)
	}
	sameTree(t, site, dest)
	var sum struct {
		CID   string `json:"cid"`
		Bytes int64  `json:"bytes"`
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil || sum.CID != pub.CID {
		t.Errorf("get --json printed %q (%v)", out, err)
	}

	// A second get into the same path is refused and leaves it as it was.
	_, errOut, code = mirrornet(t, "get", pub.CID, "-o", dest, "--bootstrap", b.info(t).HTTP)
	if code == 0 || !strings.Contains(errOut, dest) {
		t.Errorf("get into an existing path: exit %d, stderr %q", code, errOut)
	}
	sameTree(t, site, dest)
}

// published is what `mirrornet publish --json` prints.
type published struct {
	CID    string `json:"cid"`
	Size   int64  `json:"size"`
	Blocks int    `json:"blocks"`
}

// publishJSON publishes dir into the node with data directory data and
// returns what `publish --json` printed, failing the test unless it names
// a CID, a size and a block count.
func publishJSON(t *testing.T, data, dir string) published {
	t.Helper()
	out, errOut, code := mirrornet(t, "publish", "--data", data, "--json", dir)
	if code != 0 {
		t.Fatalf("publish: exit %d: %s", code, errOut)
	}
	var pub published
	if err := json.Unmarshal([]byte(out), &pub); err != nil || pub.CID == "" || pub.Blocks == 0 || pub.Size == 0 {
		t.Fatalf("publish --json printed %q (%v)", out, err)
	}
	return pub
}
