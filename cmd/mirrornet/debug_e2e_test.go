package main

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestE2EDebugPprof: `mirrornet debug pprof` writes profiles of a running
// node that go tool pprof reads, through the admin socket; the public HTTP
// port serves no profile.
func TestE2EDebugPprof(t *testing.T) {
	m := startNode(t)
	dir := t.TempDir()
	for _, tc := range []struct{ args []string }{
		{[]string{"--seconds", "1"}},
		{[]string{"--profile", "heap"}},
		{[]string{"--profile", "goroutine"}},
	} {
		out := filepath.Join(dir, strings.Join(tc.args, "_")+".pb.gz")
		args := append([]string{"debug", "pprof", "--data", m.data, "-o", out}, tc.args...)
		if _, errOut, code := mirrornet(t, args...); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		cmd := exec.Command("go", "tool", "pprof", "-raw", out)
		if raw, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(raw), "PeriodType") {
			t.Fatalf("go tool pprof -raw %s (%v): %v\n%s", out, tc.args, err, raw)
		}
	}
	// Bad input: one line, nothing written.
	bad := filepath.Join(dir, "bad")
	if _, errOut, code := mirrornet(t, "debug", "pprof", "--data", m.data, "--profile", "nosuch", "-o", bad); code == 0 || !strings.Contains(errOut, "nosuch") {
		t.Errorf("unknown profile: exit %d, %q", code, errOut)
	}
	if _, err := os.Stat(bad); err == nil {
		t.Errorf("a failed download left %s", bad)
	}
	if _, errOut, code := mirrornet(t, "debug", "pprof", "--data", m.data, "--seconds", "0", "-o", bad); code != 2 {
		t.Errorf("--seconds 0: exit %d, %q", code, errOut)
	}

	// Never on the public port.
	base := m.info(t).HTTP
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/profile?seconds=1", "/debug/pprof/goroutine?debug=1"} {
		_, status := httpGet(t, base+p, "")
		if status != http.StatusNotFound {
			t.Errorf("public GET %s: status %d, want 404", p, status)
		}
	}
}
