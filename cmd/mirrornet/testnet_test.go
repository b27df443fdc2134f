package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mirrornet/mirrornet/internal/testnet"
)

// processGone reports whether pid no longer exists (or is a zombie
// nobody will wait for: reparented to init after its parent exited).
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && (f[0] == "Z" || f[0] == "X")
}

func assertAllGone(t *testing.T, rec testnet.Record) {
	t.Helper()
	if len(rec.Mirrors) == 0 {
		t.Fatal("testnet.json records no mirror")
	}
	for _, m := range rec.Mirrors {
		if m.PID <= 0 {
			t.Errorf("%s has no PID in testnet.json", m.Name)
			continue
		}
		if !processGone(m.PID) {
			t.Errorf("%s (pid %d) is still running", m.Name, m.PID)
		}
	}
}

// TestTestnetDemo runs the README's "run the main job" command: the whole
// disaster-recovery story on loopback, five mirrors.
func TestTestnetDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five mirrors")
	}
	dir := filepath.Join(t.TempDir(), "net")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, "testnet", "--demo", "--json", "--dir", dir)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	defer func() {
		if t.Failed() {
			t.Logf("narration:\n%s", stderr.String())
			logs, _ := filepath.Glob(filepath.Join(dir, "mirror-*.log"))
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				t.Logf("%s:\n%s", l, lastLines(string(b), 15))
			}
		}
	}()
	if err != nil {
		t.Fatalf("testnet --demo: %v", err)
	}
	var rep testnet.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, stdout.String())
	}
	var names []string
	for _, s := range rep.Steps {
		names = append(names, s.Name)
		if !s.OK {
			t.Errorf("step %s failed: %s", s.Name, s.Detail)
		}
		t.Logf("%-12s %8s  %s", s.Name, s.Took.Round(time.Millisecond), s.Detail)
	}
	t.Logf("total %s", rep.Total.Round(time.Millisecond))
	wantSteps := []string{testnet.StepStart, testnet.StepPublish, testnet.StepReplicate, testnet.StepStop, testnet.StepResolve}
	if !slices.Equal(names, wantSteps) {
		t.Fatalf("steps %v, want %v in that order", names, wantSteps)
	}
	if rep.Nodes != 5 || rep.CID != sampleDappCID(t) {
		t.Errorf("nodes %d cid %s: want 5 and the sample dapp's CID", rep.Nodes, rep.CID)
	}

	// Independently of the report: the origin was stopped before the app was
	// resolved, only from survivors, and what was resolved is the app.
	rec, err := testnet.ReadRecord(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Mirrors) != 5 || rec.App != rep.CID {
		t.Fatalf("testnet.json: %d mirrors, app %q", len(rec.Mirrors), rec.App)
	}
	if slices.Contains(rep.Survivors, rec.Mirrors[0].HTTP) || len(rep.Survivors) != 4 {
		t.Errorf("light client bootstrapped from %v; origin is %s", rep.Survivors, rec.Mirrors[0].HTTP)
	}
	origin, _ := os.ReadFile(rec.Mirrors[0].Log)
	if !strings.Contains(string(origin), "leaving") {
		t.Errorf("mirror-0's log does not show it leaving:\n%s", lastLines(string(origin), 10))
	}
	files, err := testnet.VerifyDir(filepath.Join(dir, "resolved"), os.DirFS("../../examples/sample-dapp/site"))
	if err != nil {
		t.Fatalf("resolved app: %v", err)
	}
	if len(files) != 4 || !slices.Equal(files, rep.Files) {
		t.Errorf("resolved files %v, report says %v", files, rep.Files)
	}
	assertAllGone(t, rec)
}

// startTestnet starts `mirrornet testnet ARGS` and returns once it prints
// that it is ready, with its directory.
func startTestnet(t *testing.T, args ...string) (*exec.Cmd, string, string, chan error, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(binPath, append([]string{"testnet"}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	type readyMsg struct{ dir, out string }
	ready := make(chan readyMsg, 1)
	var stdout bytes.Buffer
	go func() {
		sc := bufio.NewScanner(out)
		dir := ""
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(&stdout, line)
			if d, ok := strings.CutPrefix(line, "testnet: directory "); ok {
				dir, _, _ = strings.Cut(d, " (")
			}
			if strings.HasPrefix(line, "testnet: ready") {
				ready <- readyMsg{dir, stdout.String()}
			}
		}
		io.Copy(io.Discard, out)
		done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
	})
	select {
	case r := <-ready:
		if r.dir == "" {
			t.Fatalf("testnet did not print its directory:\n%s", r.out)
		}
		return cmd, r.dir, r.out, done, &stderr
	case err := <-done:
		t.Fatalf("testnet exited before ready: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("testnet not ready within 2m")
	}
	return nil, "", "", nil, nil
}

func interruptAndWait(t *testing.T, cmd *exec.Cmd, done chan error, stderr *bytes.Buffer) {
	t.Helper()
	signalAndWait(t, cmd, done, stderr, os.Interrupt)
}

func signalAndWait(t *testing.T, cmd *exec.Cmd, done chan error, stderr *bytes.Buffer, sig os.Signal) {
	t.Helper()
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("testnet exited with %v after %v: %s", err, sig, stderr.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("testnet did not exit within 1m of %v", sig)
	}
}

func TestTestnetSIGINTStopsEveryMirrorAndCleansUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts mirrors")
	}
	t.Run("temporary dir", func(t *testing.T) {
		cmd, dir, out, done, stderr := startTestnet(t, "--nodes", "3")
		// It prints every mirror's view and the app's URL on it.
		for i := 0; i < 3; i++ {
			row := regexp.MustCompile(fmt.Sprintf(`(?m)^mirror-%d +\d+ +12D3KooW\w+ +[1-3]/3 +http://127\.0\.0\.1:\d+/api/v1/status +http://%s\.ipfs\.localhost:\d+/$`, i, sampleDappCID(t)))
			if !row.MatchString(out) {
				t.Errorf("no status row for mirror-%d with its view, status and app URLs:\n%s", i, out)
			}
		}
		rec, err := testnet.ReadRecord(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(rec.Mirrors) != 3 || rec.PID != cmd.Process.Pid {
			t.Fatalf("testnet.json: %+v", rec)
		}
		for _, m := range rec.Mirrors {
			if processGone(m.PID) {
				t.Fatalf("%s (pid %d) not running while the testnet is ready", m.Name, m.PID)
			}
		}
		interruptAndWait(t, cmd, done, stderr)
		assertAllGone(t, rec)
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("temporary directory %s left behind (%v)", dir, err)
		}
	})
	t.Run("SIGHUP (terminal closed)", func(t *testing.T) {
		cmd, dir, _, done, stderr := startTestnet(t, "--nodes", "2")
		rec, err := testnet.ReadRecord(dir)
		if err != nil {
			t.Fatal(err)
		}
		signalAndWait(t, cmd, done, stderr, syscall.SIGHUP)
		assertAllGone(t, rec)
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("temporary directory %s left behind after SIGHUP (%v)", dir, err)
		}
	})
	t.Run("given dir is kept", func(t *testing.T) {
		given := filepath.Join(t.TempDir(), "net")
		cmd, dir, _, done, stderr := startTestnet(t, "--nodes", "2", "--dir", given)
		if dir != given {
			t.Fatalf("testnet runs in %s, not --dir %s", dir, given)
		}
		interruptAndWait(t, cmd, done, stderr)
		rec, err := testnet.ReadRecord(given)
		if err != nil {
			t.Fatalf("--dir not kept: %v", err)
		}
		assertAllGone(t, rec)
		for _, m := range rec.Mirrors {
			if !m.Stopped {
				t.Errorf("%s not recorded as stopped", m.Name)
			}
		}
	})
}

// freeRun finds n consecutive free loopback ports.
func freeRun(t *testing.T, n int) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		base := l.Addr().(*net.TCPAddr).Port
		l.Close()
		ok := base+n <= 65535
		for i := 1; ok && i < n; i++ {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(base+i))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no run of free ports")
	return 0
}

func TestTestnetBadInput(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"zero nodes", []string{"--nodes", "0"}, 2, "nodes: 0"},
		{"negative nodes", []string{"--nodes", "-3"}, 2, "nodes: -3"},
		{"demo of one", []string{"--demo", "--nodes", "1"}, 2, "at least one survivor"},
		{"json without demo", []string{"--json"}, 2, "--json needs --demo"},
		{"unwritable dir", []string{"--nodes", "1", "--dir", filepath.Join(file, "sub")}, 1, filepath.Join(file, "sub")},
		{"bad port", []string{"--http-port", "70000"}, 2, "http-port"},
		{"bad env", nil, 2, "MIRRORNET_NODES"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"testnet"}, tc.args...)
			if tc.name == "bad env" {
				t.Setenv("MIRRORNET_NODES", "five")
			}
			_, errOut, code := mirrornet(t, args...)
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d naming %q", code, errOut, tc.code, tc.want)
			}
			if n := strings.Count(strings.TrimSpace(errOut), "\n"); n > 0 {
				t.Errorf("want a one-line error, got %d lines: %q", n+1, errOut)
			}
		})
	}

	t.Run("port in use", func(t *testing.T) {
		base := freeRun(t, 3)
		taken := base + 2 // mirror-2's port: mirrors 0 and 1 start first
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(taken))
		if err != nil {
			t.Skipf("port %d taken meanwhile: %v", taken, err)
		}
		defer l.Close()
		dir := filepath.Join(t.TempDir(), "net")
		_, errOut, code := mirrornet(t, "testnet", "--nodes", "3", "--http-port", strconv.Itoa(base), "--dir", dir)
		if code != 1 || !strings.Contains(errOut, "mirror-2") || !strings.Contains(errOut, strconv.Itoa(taken)) || !strings.Contains(errOut, "in use") {
			t.Fatalf("exit %d, stderr %q; want exit 1 naming mirror-2, port %d in use", code, errOut, taken)
		}
		if n := strings.Count(strings.TrimSpace(errOut), "\n"); n > 0 {
			t.Errorf("want a one-line error, got %d lines: %q", n+1, errOut)
		}
		rec, err := testnet.ReadRecord(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(rec.Mirrors) != 3 {
			t.Fatalf("testnet.json records %d mirrors, want 3 started", len(rec.Mirrors))
		}
		assertAllGone(t, rec)
	})
}
