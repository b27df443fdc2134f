package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mirrornet/mirrornet/node"
)

// writeSite writes a tiny app whose page says version.
func writeSite(t *testing.T, version string) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"index.html":    "<!doctype html><title>demo " + version + "</title><script src=js/app.js></script>",
		"js/app.js":     "console.log('demo " + version + "')",
		"assets/a.txt":  strings.Repeat("mirrornet ", 5000),
		"assets/v.json": `{"version": "` + version + `"}`,
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

type lsRow struct {
	CID   string `json:"cid"`
	State string `json:"state"`
}

func lsJSON(t *testing.T, data string) (string, []lsRow) {
	t.Helper()
	out, errOut, code := mirrornet(t, "ls", "--data", data, "--json")
	if code != 0 {
		t.Fatalf("ls: exit %d: %s", code, errOut)
	}
	var rows []lsRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("ls --json: %v: %s", err, out)
	}
	return out, rows
}

func holdsOnly(t *testing.T, data, c string) (bool, string) {
	out, rows := lsJSON(t, data)
	return len(rows) == 1 && rows[0].CID == c && rows[0].State == "held", out
}

// TestE2EReleaseFollowGet: two maintainers release v1 with threshold 2; a
// mirror started with --follow APP-ID picks it up, then v2 by itself; the
// light client gets v2 by app ID; status --app shows it; bad releases fail
// with one line and publish nothing.
func TestE2EReleaseFollowGet(t *testing.T) {
	keys := t.TempDir()
	k1, k2 := filepath.Join(keys, "alice.key"), filepath.Join(keys, "bob.key")
	for _, k := range []string{k1, k2} {
		if _, errOut, code := mirrornet(t, "keygen", k); code != 0 {
			t.Fatalf("keygen: exit %d: %s", code, errOut)
		}
	}
	origin := startNode(t)
	oi := origin.info(t)

	site1 := writeSite(t, "v1")
	out, errOut, code := mirrornet(t, "release", site1, "--data", origin.data, "--app", "demo", "--version", "1",
		"--key", k1, "--key", k2, "--threshold", "2", "--repo", "https://example.org/demo.git", "--commit", "c0ffee",
		"--build", "make dist", "--json")
	if code != 0 {
		t.Fatalf("release v1: exit %d: %s", code, errOut)
	}
	var r1 map[string]any
	if err := json.Unmarshal([]byte(out), &r1); err != nil {
		t.Fatalf("release --json printed %q: %v", out, err)
	}
	app, _ := r1["app"].(string)
	cid1, _ := r1["cid"].(string)
	if len(r1) != 3 || !strings.HasPrefix(app, "app-b") || r1["version"] != float64(1) || cid1 == "" {
		t.Fatalf(`release --json printed %s, want {"app": "APP-ID", "version": 1, "cid": "..."}`, out)
	}

	follower := startNode(t, "--bootstrap", oi.Addrs[0], "--follow", app)
	waitFor(t, 30*time.Second, "follower holds v1", func() (bool, string) { return holdsOnly(t, follower.data, cid1) })

	// v2, by app ID this time, declaring one builder.
	builder := filepath.Join(keys, "builder.key")
	builderPub, errOut, code := mirrornet(t, "keygen", builder)
	if code != 0 {
		t.Fatalf("keygen: exit %d: %s", code, errOut)
	}
	site2 := writeSite(t, "v2")
	out, errOut, code = mirrornet(t, "release", site2, "--data", origin.data, "--app", app, "--version", "2",
		"--key", k1, "--key", k2, "--threshold", "2", "--builder", strings.TrimSpace(builderPub), "--json")
	if code != 0 {
		t.Fatalf("release v2: exit %d: %s", code, errOut)
	}
	var r2 node.ReleaseResult
	if err := json.Unmarshal([]byte(out), &r2); err != nil || r2.App != app || r2.Version != 2 || r2.CID == cid1 {
		t.Fatalf("release v2 printed %q (%v)", out, err)
	}
	waitFor(t, 30*time.Second, "follower holds v2 only", func() (bool, string) { return holdsOnly(t, follower.data, r2.CID) })

	// The light client resolves the app by ID through the follower.
	dest := filepath.Join(t.TempDir(), "out")
	if _, errOut, code := mirrornet(t, "get", app, "-o", dest, "--bootstrap", follower.info(t).HTTP); code != 0 {
		t.Fatalf("get APP-ID: exit %d: %s", code, errOut)
	}
	sameTree(t, site2, dest)
	// APP-ID@1 resolves to v1, which no mirror keeps any more: both moved
	// on to v2 once it was held.
	dest1 := filepath.Join(t.TempDir(), "out1")
	if _, errOut, code := mirrornet(t, "get", app+"@1", "-o", dest1, "--bootstrap", oi.HTTP); code == 0 ||
		!strings.Contains(errOut, "demo v1") || !strings.Contains(errOut, "no mirror delivered "+cid1) {
		t.Fatalf("get APP-ID@1: exit %d: %s", code, errOut)
	}

	// status --app.
	out, errOut, code = mirrornet(t, "status", "--http", oi.HTTP, "--app", app, "--json")
	if code != 0 {
		t.Fatalf("status --app: exit %d: %s", code, errOut)
	}
	var st node.AppStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --app --json: %v: %s", err, out)
	}
	if st.App != app || st.Name != "demo" || st.Version != 2 || st.CID != r2.CID || st.Status != "current" ||
		st.Expires == "" || st.Integrity != "unverified" || st.Maintainers.Threshold != 2 {
		t.Fatalf("status --app: %+v", st)
	}
	waitFor(t, 20*time.Second, "both mirrors listed as holders", func() (bool, string) {
		out, _, _ := mirrornet(t, "status", "--http", oi.HTTP, "--app", app, "--json")
		var st node.AppStatus
		json.Unmarshal([]byte(out), &st)
		return len(st.Holders) == 2, out
	})
	if out, errOut, code := mirrornet(t, "status", "--http", oi.HTTP, "--app", app); code != 0 || !strings.Contains(out, "v2 "+r2.CID) {
		t.Fatalf("status --app: exit %d: %s%s", code, out, errOut)
	}

	// The declared builder rebuilds v2 and signs it; verify hands the
	// attestation to the origin, which gossips it: verified · 1 builder.
	out, errOut, code = mirrornet(t, "verify", "--source", site2, "--build", "true", "--out", ".", "--app", app+"@2",
		"--key", builder, "--data", origin.data)
	if code != 0 || !strings.Contains(out, "result:   match") || !strings.Contains(out, "gossiped") {
		t.Fatalf("verify --key: exit %d: %s%s", code, out, errOut)
	}
	for _, p := range []*proc{origin, follower} {
		waitFor(t, 20*time.Second, "attestation reaches the mirror", func() (bool, string) {
			out, _, _ := mirrornet(t, "status", "--http", p.info(t).HTTP, "--app", app, "--json")
			var st node.AppStatus
			json.Unmarshal([]byte(out), &st)
			return st.Integrity == "verified" && len(st.Builders) == 1, out
		})
	}
	resp, err := http.Get(oi.HTTP + "/badge/app/" + app + "/integrity.json")
	if err != nil {
		t.Fatal(err)
	}
	badgeJSON, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(badgeJSON), `"message":"verified · 1 builder"`) ||
		!strings.Contains(resp.Header.Get("Cache-Control"), "max-age=") {
		t.Fatalf("integrity badge: %s %s %v", resp.Status, badgeJSON, resp.Header)
	}

	// Bad input: one line, non-zero, nothing published.
	before, _ := lsJSON(t, origin.data)
	loose := filepath.Join(keys, "loose.key")
	raw, _ := os.ReadFile(k1)
	os.WriteFile(loose, raw, 0o644)
	os.Chmod(loose, 0o644)
	site3 := writeSite(t, "v3")
	unknown := "app-b" + strings.Repeat("a", 52)
	base := []string{"release", site3, "--data", origin.data, "--threshold", "2"}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"missing key", []string{"--app", app, "--version", "3", "--key", k1, "--key", filepath.Join(keys, "nope.key")}, "key file not found"},
		{"key mode 0644", []string{"--app", app, "--version", "3", "--key", k1, "--key", loose}, "mode 0644"},
		{"version 0", []string{"--app", app, "--version", "0", "--key", k1, "--key", k2}, "not a positive integer"},
		{"version abc", []string{"--app", app, "--version", "abc", "--key", k1, "--key", k2}, "not a positive integer"},
		{"rollback", []string{"--app", app, "--version", "1", "--key", k1, "--key", k2}, "rollback"},
		{"unknown app", []string{"--app", unknown, "--version", "1", "--key", k1, "--key", k2}, "unknown app"},
		{"too few keys", []string{"--app", app, "--version", "3", "--key", k1}, "threshold"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := mirrornet(t, append(append([]string{}, base...), tc.args...)...)
			if code == 0 {
				t.Fatalf("exit 0, want an error")
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q does not contain %q", errOut, tc.want)
			}
			if n := strings.Count(strings.TrimSpace(errOut), "\n"); n > 0 {
				t.Errorf("want a one-line error, got %d lines: %q", n+1, errOut)
			}
		})
	}
	if after, _ := lsJSON(t, origin.data); after != before {
		t.Fatalf("a refused release changed the node's bundles:\nbefore %s\nafter  %s", before, after)
	}
	if out, _, _ := mirrornet(t, "status", "--http", oi.HTTP, "--app", app, "--json"); !strings.Contains(out, `"version": 2`) {
		t.Fatalf("a refused release changed the current release: %s", out)
	}
	// Rotation: carol alone (threshold 1) replaces alice and bob, signed by
	// both thresholds; the follower moves to v3. Without the old set's
	// signatures the same rotation is refused.
	k3 := filepath.Join(keys, "carol.key")
	if _, errOut, code := mirrornet(t, "keygen", k3); code != 0 {
		t.Fatalf("keygen: exit %d: %s", code, errOut)
	}
	if _, errOut, code := mirrornet(t, "release", site3, "--data", origin.data, "--app", app, "--version", "3",
		"--key", k3, "--previous-key", k1, "--previous-threshold", "1"); code == 0 || !strings.Contains(errOut, "maintainer change") {
		t.Fatalf("rotation with the wrong previous set: exit %d: %s", code, errOut)
	}
	out, errOut, code = mirrornet(t, "release", site3, "--data", origin.data, "--app", app, "--version", "3",
		"--key", k3, "--previous-key", k1, "--previous-key", k2, "--previous-threshold", "2", "--json")
	var r3 node.ReleaseResult
	if code != 0 || json.Unmarshal([]byte(out), &r3) != nil || r3.App != app || r3.Version != 3 {
		t.Fatalf("rotation release: exit %d: %s%s", code, out, errOut)
	}
	waitFor(t, 30*time.Second, "follower holds v3 only", func() (bool, string) { return holdsOnly(t, follower.data, r3.CID) })

	// status --app of an unknown app: one line, non-zero.
	if _, errOut, code := mirrornet(t, "status", "--http", oi.HTTP, "--app", unknown); code == 0 || !strings.Contains(errOut, "unknown app") ||
		strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
		t.Fatalf("status --app unknown: exit %d, stderr %q", code, errOut)
	}
}
