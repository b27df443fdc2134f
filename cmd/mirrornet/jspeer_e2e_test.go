package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mirrornet/mirrornet/attest"
)

// jspeerDir holds a mirrornet peer written in JavaScript from protocol/'s
// package doc (js-libp2p and @libp2p/gossipsub from npm, pinned by its
// package-lock.json). .ci/run installs its modules with `npm ci`.
const jspeerDir = "testdata/jspeer"

// needJSPeer returns the node binary, or skips (locally) or fails (in CI,
// where .ci/run installs everything) when the JS peer cannot run.
func needJSPeer(t *testing.T) string {
	t.Helper()
	nodeBin, err := exec.LookPath("node")
	missing := ""
	switch {
	case err != nil:
		missing = "node (Node.js) is not on PATH"
	default:
		if _, err := os.Stat(filepath.Join(jspeerDir, "node_modules", "libp2p")); err != nil {
			missing = jspeerDir + "/node_modules is missing (run `npm ci` in " + jspeerDir + ")"
		}
	}
	if missing != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the JavaScript interop peer cannot run in CI: %s", missing)
		}
		t.Skip("the JavaScript interop peer cannot run: " + missing + "; .ci/run installs it")
	}
	return nodeBin
}

// TestJSPeerVectors: the JavaScript peer's verdicts on the spec's test
// vectors are Go's (attest.Verify), reason for reason.
func TestJSPeerVectors(t *testing.T) {
	nodeBin := needJSPeer(t)
	path, _ := filepath.Abs("../../protocol/testdata/statements.json")
	cmd := exec.Command(nodeBin, "peer.mjs", "vectors", path)
	cmd.Dir = jspeerDir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node peer.mjs vectors: %v\n%s", err, stderrOf(err))
	}
	var file struct {
		Vectors []struct {
			Name      string `json:"name"`
			Statement string `json:"statement"`
			Now       int64  `json:"now"`
		} `json:"vectors"`
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	js := map[string][2]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var v struct{ Name, Verdict, Reason, Detail string }
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("JS peer printed %q: %v", line, err)
		}
		js[v.Name] = [2]string{v.Verdict, v.Reason}
	}
	if len(file.Vectors) == 0 || len(js) != len(file.Vectors) {
		t.Fatalf("JS peer judged %d vectors, the file has %d", len(js), len(file.Vectors))
	}
	for _, v := range file.Vectors {
		stmt, _ := hex.DecodeString(v.Statement)
		_, err := attest.Verify(stmt, time.UnixMilli(v.Now))
		goV := [2]string{attest.Classify(err).String(), attest.Reason(err)}
		if js[v.Name] != goV {
			t.Errorf("%s: JS says %v, Go says %v", v.Name, js[v.Name], goV)
		}
	}
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

// TestE2EJSPeer runs the JavaScript peer against a real mirror: it must
// receive the mirror's liveness statements over gossipsub (StrictNoSign, no
// author) and verify them with its own code; the mirror must accept the
// peer's valid statement (the signer shows up as a mirror) and reject its
// forged one (counted in /metrics, the signer unknown).
func TestE2EJSPeer(t *testing.T) {
	nodeBin := needJSPeer(t)
	m := startNode(t)
	mi := m.info(t)
	addr := mi.Addrs[0]

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, nodeBin, "peer.mjs", "join", addr)
	cmd.Dir = jspeerDir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		stdin.Close() // the peer stops when stdin closes
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cancel()
			<-done
		}
		if t.Failed() {
			t.Logf("JS peer stderr:\n%s", lastLines(stderr.String(), 30))
		}
	}()

	type event struct {
		Event   string `json:"event"`
		Signer  string `json:"signer"`
		Verdict string `json:"verdict"`
		Reason  string `json:"reason"`
		Detail  string `json:"detail"`
		Valid   string `json:"valid"`
		Forged  string `json:"forged"`
		Error   string `json:"error"`
	}
	events := make(chan event, 64)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var e event
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				events <- e
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()

	rejectsBefore := rejectedStatements(t, mi.HTTP)
	var valid, forged string
	verified := 0
	guard := time.After(90 * time.Second) // a failure guard, not a timing assertion
	for forged == "" {
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatalf("the JS peer exited before publishing: %v", <-done)
			}
			switch e.Event {
			case "statement":
				if e.Signer == mi.PeerID {
					if e.Verdict != "accept" {
						t.Fatalf("the JS peer judged the mirror's own statement %s (%s: %s)", e.Verdict, e.Reason, e.Detail)
					}
					verified++
				}
			case "published":
				valid, forged = e.Valid, e.Forged
			case "error":
				t.Logf("JS peer: %s", e.Error)
			}
		case <-guard:
			t.Fatalf("the JS peer did not verify a statement of the mirror and publish (verified %d)", verified)
		}
	}
	if verified == 0 {
		t.Fatal("the JS peer published before verifying the mirror's statement")
	}
	go func() {
		for range events {
		}
	}()

	waitFor(t, 60*time.Second, "the mirror accepts the JS peer's statement and rejects the forged one", func() (bool, string) {
		st := statusJSON(t, mi.HTTP)
		states := statesOf(st)
		if _, ok := states[forged]; ok {
			t.Fatalf("the mirror lists the forger %s: it accepted a forged statement", forged)
		}
		rejects := rejectedStatements(t, mi.HTTP)
		return states[valid] == "alive" && rejects > rejectsBefore,
			"states " + strings.TrimSpace(string(mustJSON(states))) + ", rejected " + strings.TrimSpace(string(mustJSON(rejects)))
	})
}

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }

// rejectedStatements sums mirrornet_statements_total{verdict="reject"}
// from a mirror's /metrics.
func rejectedStatements(t *testing.T, httpURL string) float64 {
	t.Helper()
	resp, err := http.Get(httpURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "mirrornet_statements_total{") && strings.Contains(line, `verdict="reject"`) {
			var v float64
			if f := strings.Fields(line); len(f) == 2 {
				_ = json.Unmarshal([]byte(f[1]), &v)
			}
			sum += v
		}
	}
	return sum
}
