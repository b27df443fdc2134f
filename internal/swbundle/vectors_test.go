package swbundle_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	sampledapp "github.com/mirrornet/mirrornet/examples/sample-dapp"
	"github.com/mirrornet/mirrornet/internal/browsertest"
)

// The worker verifies statements exactly as the protocol says: every
// vector in protocol/testdata/statements.json gets, from the worker
// running in Chromium, the verdict and reason the vector names.
func TestWorkerVerifiesProtocolVectors(t *testing.T) {
	raw, err := os.ReadFile("../../protocol/testdata/statements.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Vectors []struct {
			Name      string `json:"name"`
			Statement string `json:"statement"`
			Now       int64  `json:"now"`
			Verdict   string `json:"verdict"`
			Reason    string `json:"reason"`
		} `json:"vectors"`
	}
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	if len(file.Vectors) < 10 {
		t.Fatalf("only %d vectors", len(file.Vectors))
	}

	br := browsertest.New(t, browsertest.Options{HostRules: []string{"MAP *.localhost 127.0.0.1"}})
	dir := t.TempDir()
	if err := sampledapp.WriteTo(dir); err != nil {
		t.Fatal(err)
	}
	a := startMirror(t, "A", nil)
	root := publishSample(t, a.dataDir, dir)
	waitUntil(t, 2*time.Minute, "A announces the app", func() (bool, string) {
		for _, s := range a.node.Status().Mirrors {
			if s.PeerID == a.node.ID().String() && slices.Contains(s.Bundles, root) {
				return true, ""
			}
		}
		return false, "not yet"
	})
	ctx := br.Tab(t)
	nctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	if err := chromedp.Do(nctx, chromedp.Navigate(appURL(root, a))); err != nil {
		t.Fatalf("navigate: %v", err)
	}
	cancel()
	if s := waitPage(t, ctx); !s.Controlled {
		t.Fatalf("worker not installed: %+v", s)
	}

	type answer struct {
		Verdict string `json:"verdict"`
		Reason  string `json:"reason"`
		Error   string `json:"error"`
	}
	for _, v := range file.Vectors {
		js := fmt.Sprintf(`fetch("/.mirrornet/verify?now=%d", {method: "POST",
			body: Uint8Array.from(%q.match(/../g).map(h => parseInt(h, 16)))}).then(r => r.json())`, v.Now, v.Statement)
		got, err := eval[answer](ctx, js)
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		if got.Verdict != v.Verdict || got.Reason != v.Reason {
			t.Errorf("%s: worker says %s/%s (%s), the vector %s/%s", v.Name, got.Verdict, got.Reason, got.Error, v.Verdict, v.Reason)
		}
	}
}
