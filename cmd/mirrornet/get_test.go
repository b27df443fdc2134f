package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// rawMirror serves one raw block (a single-file bundle); lie flips its
// bytes.
func rawMirror(t *testing.T, data []byte, lie bool) (*httptest.Server, cid.Cid) {
	t.Helper()
	c, err := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}.Sum(data)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ipfs/"+c.String() {
			http.NotFound(w, r)
			return
		}
		if r.Method == http.MethodHead {
			return
		}
		body := data
		if lie {
			body = bytes.ToUpper(data)
		}
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv, c
}

func runCmd(t *testing.T, env map[string]string, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, func(k string) string { return env[k] }, &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

func TestGetWritesVerifiedFile(t *testing.T) {
	data := []byte("hello, mirrornet")
	srv, c := rawMirror(t, data, false)
	dir := t.TempDir()
	out := filepath.Join(dir, "app")
	stdout, _, err := runCmd(t, map[string]string{"MIRRORNET_BOOTSTRAP": srv.URL}, "get", c.String(), "-o", out, "--json")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("output %q, %v", got, err)
	}
	var summary struct {
		CID     string           `json:"cid"`
		Bytes   int64            `json:"bytes"`
		Mirrors map[string]int64 `json:"mirrors"`
		Dropped []any            `json:"dropped"`
	}
	if err := json.Unmarshal([]byte(stdout), &summary); err != nil {
		t.Fatalf("--json output %q: %v", stdout, err)
	}
	if summary.CID != c.String() || summary.Bytes != int64(len(data)) || summary.Mirrors[srv.URL] != int64(len(data)) || summary.Dropped == nil {
		t.Fatalf("summary %+v", summary)
	}
}

func TestGetFailsClosed(t *testing.T) {
	srv, c := rawMirror(t, []byte("hello"), true)
	dir := t.TempDir()
	out := filepath.Join(dir, "app")
	_, _, err := runCmd(t, nil, "get", c.String(), "-o", out, "--bootstrap", srv.URL)
	if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), srv.URL+": hash mismatch") {
		t.Fatalf("err = %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("failed get left %v", ents)
	}
}

func TestGetBadInput(t *testing.T) {
	srv, c := rawMirror(t, []byte("hello"), false)
	dir := t.TempDir()
	existing := filepath.Join(dir, "exists")
	os.Mkdir(existing, 0o755)
	for _, tc := range []struct {
		name, want string
		args       []string
	}{
		{"malformed cid", "malformed CID", []string{"get", "bafynot", "--bootstrap", srv.URL}},
		{"bad bootstrap", "malformed bootstrap", []string{"get", c.String(), "--bootstrap", "127.0.0.1:80", "-o", filepath.Join(dir, "x")}},
		{"existing output", "already exists", []string{"get", c.String(), "--bootstrap", srv.URL, "-o", existing}},
		{"unwritable output", "cannot write", []string{"get", c.String(), "--bootstrap", srv.URL, "--car", filepath.Join(dir, "no", "such", "x.car")}},
		{"two outputs", "at most one", []string{"get", c.String(), "--bootstrap", srv.URL, "-o", "a", "--car", "b"}},
		{"no bootstrap", "--bootstrap", []string{"get", c.String(), "-o", filepath.Join(dir, "y")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := runCmd(t, nil, tc.args...)
			if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v, want a one-line usage error with %q", err, tc.want)
			}
		})
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("bad input left %v", ents)
	}
}

func TestGetServe(t *testing.T) {
	data := []byte("served, verified")
	srv, c := rawMirror(t, data, false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		var stdout bytes.Buffer
		err := run(ctx, []string{"get", c.String(), "--bootstrap", srv.URL, "--serve", "127.0.0.1:0"},
			func(string) string { return "" }, &stdout, pw)
		pw.Close()
		done <- err
	}()
	sc := bufio.NewScanner(pr)
	var base string
	for sc.Scan() {
		if _, rest, ok := strings.Cut(sc.Text(), " on "); ok {
			base, _, _ = strings.Cut(rest, " ")
			break
		}
	}
	go io.Copy(io.Discard, pr)
	if base == "" {
		t.Fatalf("no serving line; get returned %v", <-done)
	}
	resp, err := http.Get(base)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(body, data) {
		t.Fatalf("served %q", body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("get --serve after cancel: %v", err)
	}
}
