package testnet

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	sampledapp "github.com/mirrornet/mirrornet/examples/sample-dapp"
)

// fakeNode is a stand-in for `mirrornet node`: it writes node.json and
// runs until signalled, unless FAKE_FAIL names its mirror (it then exits
// the way a node does when its port is taken) or FAKE_HANG does (it never
// writes node.json).
const fakeNode = `#!/bin/sh
[ "$1" = node ] || { echo "mirrornet: fake supports only node" >&2; exit 2; }
shift
while [ $# -gt 0 ]; do
  case "$1" in --data) data="$2"; shift;; --bootstrap) boot="$2"; shift;; esac
  shift
done
name=$(basename "$data")
echo "args ok, bootstrap=$boot"
if [ "$name" = "$FAKE_FAIL" ]; then
  echo "mirrornet: node: http: listen tcp 127.0.0.1:8083: bind: address already in use" >&2
  exit 1
fi
if [ "$name" != "$FAKE_HANG" ]; then
  printf '{"peer_id":"peer-%s","addrs":["/ip4/127.0.0.1/tcp/4001/p2p/peer-%s"],"http":"http://127.0.0.1:1"}' "$name" "$name" > "$data/node.json.tmp"
  mv "$data/node.json.tmp" "$data/node.json"
fi
exec sleep 600
`

func fakeBinary(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mirrornet")
	if err := os.WriteFile(p, []byte(fakeNode), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func testConfig(t *testing.T, nodes int) Config {
	cfg := DefaultConfig()
	cfg.Nodes = nodes
	cfg.Binary = fakeBinary(t)
	// Failure guards only (the fake nodes start in milliseconds), generous
	// for a machine whose cores are saturated.
	cfg.Timeout = 2 * time.Minute
	cfg.StopTimeout = 30 * time.Second
	return cfg
}

// gone reports whether no process (zombies included) has pid.
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	// A zombie has been killed but not reaped; Start/Stop must reap.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(f) > 0 && f[0] == "X"
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"zero nodes", func(c *Config) { c.Nodes = 0 }, "nodes: 0"},
		{"too many", func(c *Config) { c.Nodes = MaxNodes + 1 }, "nodes"},
		{"port range", func(c *Config) { c.HTTPPort = 65534 }, "http-port"},
		{"negative port", func(c *Config) { c.HTTPPort = -1 }, "http-port"},
		{"no profile", func(c *Config) { c.Profile = "" }, "profile"},
		{"no timeout", func(c *Config) { c.Timeout = 0 }, "timeout"},
	}
	def := DefaultConfig()
	if err := def.Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(&c)
			err := c.Validate()
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want ErrConfig naming %q", err, tc.want)
			}
		})
	}
}

func TestStartRecordsAndStopCleansUp(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	t.Setenv("MIRRORNET_FOLLOW", "must-not-reach-children")
	cfg := testConfig(t, 3)
	tn, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tn.Stop() })
	rec, err := ReadRecord(tn.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Mirrors) != 3 || rec.PID != os.Getpid() {
		t.Fatalf("record %+v: want 3 mirrors and this pid", rec)
	}
	for i, m := range rec.Mirrors {
		if m.PID <= 0 || gone(m.PID) || m.PeerID == "" || m.Stopped {
			t.Fatalf("mirror %d in record: %+v", i, m)
		}
	}
	// Mirrors 1..N-1 bootstrap from mirror 0's node.json.
	for i := 1; i < 3; i++ {
		log, _ := os.ReadFile(rec.Mirrors[i].Log)
		if !strings.Contains(string(log), "bootstrap=/ip4/127.0.0.1/tcp/4001/p2p/peer-mirror-0") {
			t.Fatalf("mirror-%d did not bootstrap from mirror-0: %q", i, log)
		}
	}
	if log, _ := os.ReadFile(rec.Mirrors[0].Log); !strings.Contains(string(log), "bootstrap=\n") {
		t.Fatalf("mirror-0 got a bootstrap: %q", log)
	}
	if err := tn.StopMirror(1); err != nil {
		t.Fatal(err)
	}
	if !gone(rec.Mirrors[1].PID) {
		t.Fatal("StopMirror returned with the process still there")
	}
	if rec2, _ := ReadRecord(tn.Dir()); !rec2.Mirrors[1].Stopped || rec2.Mirrors[0].Stopped {
		t.Fatalf("record after StopMirror(1): %+v", rec2.Mirrors)
	}
	if err := tn.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-tn.Failed():
		t.Fatalf("Failed reported a mirror that was stopped on purpose: %v", err)
	default:
	}
	for _, m := range rec.Mirrors {
		if !gone(m.PID) {
			t.Fatalf("%s (pid %d) still running after Stop", m.Name, m.PID)
		}
	}
	if _, err := os.Stat(tn.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary dir %s not removed: %v", tn.Dir(), err)
	}
	if err := tn.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestGivenDirIsKeptAndStaleNodeJSONIgnored(t *testing.T) {
	cfg := testConfig(t, 2)
	cfg.Dir = filepath.Join(t.TempDir(), "net")
	// A node.json from an earlier run must not count as "up".
	os.MkdirAll(filepath.Join(cfg.Dir, "mirror-1"), 0o700)
	os.WriteFile(filepath.Join(cfg.Dir, "mirror-1", "node.json"), []byte(`{"peer_id":"stale","addrs":["/x"]}`), 0o644)
	t.Setenv("FAKE_HANG", "mirror-1")
	cfg.Timeout = 2 * time.Second
	_, err := Start(context.Background(), cfg)
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "mirror-1") {
		t.Fatalf("Start = %v, want a timeout naming mirror-1", err)
	}
	rec, rerr := ReadRecord(cfg.Dir)
	if rerr != nil {
		t.Fatalf("given dir not kept: %v", rerr)
	}
	for _, m := range rec.Mirrors {
		if !gone(m.PID) {
			t.Fatalf("%s (pid %d) left running after a failed Start", m.Name, m.PID)
		}
	}
	// Running again in the same --dir would silently bring that state
	// back: refused, in one line that says what to do.
	_, err = Start(context.Background(), cfg)
	if !errors.Is(err, ErrDir) || !strings.Contains(err.Error(), "holds an earlier testnet") {
		t.Fatalf("second Start in the same dir = %v", err)
	}
}

func TestFailedMirrorStopsEveryOther(t *testing.T) {
	cfg := testConfig(t, 4)
	cfg.Dir = t.TempDir()
	t.Setenv("FAKE_FAIL", "mirror-2")
	_, err := Start(context.Background(), cfg)
	if !errors.Is(err, ErrStart) {
		t.Fatalf("Start = %v, want ErrStart", err)
	}
	for _, want := range []string{"mirror-2", "127.0.0.1:8083: bind: address already in use"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
	rec, _ := ReadRecord(cfg.Dir)
	if len(rec.Mirrors) != 4 {
		t.Fatalf("record has %d mirrors, want all 4 spawned", len(rec.Mirrors))
	}
	for _, m := range rec.Mirrors {
		if !gone(m.PID) {
			t.Fatalf("%s (pid %d) left running after a failed Start", m.Name, m.PID)
		}
	}
}

func TestCancelledStartLeavesNothing(t *testing.T) {
	cfg := testConfig(t, 2)
	cfg.Dir = t.TempDir()
	t.Setenv("FAKE_HANG", "mirror-0")
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := Start(ctx, cfg)
		errc <- err
	}()
	// Cancel once mirror-0 is recorded as spawned.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if rec, err := ReadRecord(cfg.Dir); err == nil && len(rec.Mirrors) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("mirror-0 never spawned")
		}
		select {
		case err := <-errc:
			t.Fatalf("Start returned early: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Start = %v, want context.Canceled", err)
	}
	rec, _ := ReadRecord(cfg.Dir)
	if pid := rec.Mirrors[0].PID; !gone(pid) {
		t.Fatalf("mirror-0 (pid %d) left running", pid)
	}
}

func TestUnwritableDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	cfg := testConfig(t, 1)
	cfg.Dir = filepath.Join(file, "sub")
	_, err := Start(context.Background(), cfg)
	if !errors.Is(err, ErrDir) || !strings.Contains(err.Error(), cfg.Dir) {
		t.Fatalf("Start = %v, want ErrDir naming %s", err, cfg.Dir)
	}
}

func TestMissingBinary(t *testing.T) {
	cfg := testConfig(t, 1)
	cfg.Binary = filepath.Join(t.TempDir(), "nope")
	cfg.Dir = t.TempDir()
	_, err := Start(context.Background(), cfg)
	if !errors.Is(err, ErrStart) || !strings.Contains(err.Error(), "mirror-0") {
		t.Fatalf("Start = %v, want ErrStart naming mirror-0", err)
	}
}

func TestVerifyDir(t *testing.T) {
	want := fstest.MapFS{
		"index.html":   {Data: []byte("<p>hi</p>")},
		"img/logo.svg": {Data: []byte("<svg/>")},
	}
	write := func(t *testing.T, files map[string]string) string {
		dir := t.TempDir()
		for name, data := range files {
			p := filepath.Join(dir, filepath.FromSlash(name))
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.WriteFile(p, []byte(data), 0o644)
		}
		return dir
	}
	good := map[string]string{"index.html": "<p>hi</p>", "img/logo.svg": "<svg/>"}
	files, err := VerifyDir(write(t, good), want)
	if err != nil || len(files) != 2 {
		t.Fatalf("VerifyDir(identical) = %v, %v", files, err)
	}
	cases := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"missing", map[string]string{"index.html": "<p>hi</p>"}, "img/logo.svg is missing"},
		{"extra", map[string]string{"index.html": "<p>hi</p>", "img/logo.svg": "<svg/>", "x.js": ""}, "unexpected file x.js"},
		{"changed", map[string]string{"index.html": "<p>HI</p>", "img/logo.svg": "<svg/>"}, "index.html"},
		{"truncated", map[string]string{"index.html": "<p>hi</p>", "img/logo.svg": "<svg"}, "img/logo.svg"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := VerifyDir(write(t, tc.files), want)
			if !errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("VerifyDir = %v, want ErrVerify naming %q", err, tc.want)
			}
		})
	}
}

func TestDemoNeedsTwoNodes(t *testing.T) {
	cfg := testConfig(t, 1)
	_, err := Demo(context.Background(), cfg)
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("Demo(1 node) = %v, want ErrConfig", err)
	}
}

func TestFailedReportsAMirrorKilledFromOutside(t *testing.T) {
	cfg := testConfig(t, 2)
	cfg.Dir = t.TempDir()
	tn, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tn.Stop()
	if err := syscall.Kill(tn.Mirrors()[1].PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-tn.Failed():
		if !errors.Is(err, ErrStart) || !strings.Contains(err.Error(), "mirror-1") || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("Failed() = %v, want mirror-1 killed", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("Failed() did not report the killed mirror")
	}
	if err := tn.WaitAlive(context.Background()); !errors.Is(err, ErrStart) {
		t.Fatalf("WaitAlive with a dead mirror = %v, want ErrStart", err)
	}
}

func TestCheckServedUsesSubdomainHost(t *testing.T) {
	index, _ := fs.ReadFile(sampledapp.FS, "index.html")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.Host, "bafyapp.ipfs.localhost:") {
			w.Write(index)
			return
		}
		http.Error(w, "wrong host "+r.Host, http.StatusBadRequest)
	}))
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	ctx := context.Background()
	if err := checkServed(ctx, "http://bafyapp.ipfs.localhost:"+strconv.Itoa(port)+"/", "index.html"); err != nil {
		t.Fatal(err)
	}
	err := checkServed(ctx, "http://other.ipfs.localhost:"+strconv.Itoa(port)+"/", "index.html")
	if !errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), "400") {
		t.Fatalf("wrong app: %v, want ErrVerify with the status", err)
	}
	if err := checkServed(ctx, "http://bafyapp.ipfs.localhost:"+strconv.Itoa(port)+"/", "app.js"); !errors.Is(err, ErrVerify) {
		t.Fatalf("different bytes: %v, want ErrVerify", err)
	}
}
