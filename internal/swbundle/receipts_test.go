package swbundle_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/browsertest"
)

// workerReceipts is the receipts part of the worker's status JSON.
type workerReceipts struct {
	Receipts *struct {
		Client    string   `json:"client"`
		Sent      int      `json:"sent"`
		Witnesses []string `json:"witnesses"`
		Last      []string `json:"last"`
		Error     string   `json:"error"`
	} `json:"receipts"`
}

func readReceipts(t testing.TB, ctx context.Context) workerReceipts {
	t.Helper()
	raw, err := eval[string](ctx, `fetch("/.mirrornet/?format=json").then(r => r.text())`)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	var w workerReceipts
	if err := json.Unmarshal([]byte(raw), &w); err != nil {
		t.Fatalf("status JSON: %v", err)
	}
	return w
}

// The service worker signs a delivery receipt per mirror that served the
// app's verified bytes, with a key it keeps in IndexedDB, and posts them
// to two mirrors, which accept them (202 from the real receipts handler,
// which verifies every receipt); the receipts verify with Go's attest,
// name the app's root and the mirrors' peer IDs, and keep one client key
// across page loads.
func TestBrowserSendsReceipts(t *testing.T) {
	br := browsertest.New(t, browsertest.Options{HostRules: []string{"MAP *.localhost 127.0.0.1"}})
	a, b, c, root := threeMirrors(t)
	ctx := br.Tab(t)
	nctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	if err := chromedp.Do(nctx, chromedp.Navigate(appURL(root, a))); err != nil {
		t.Fatalf("navigate: %v", err)
	}
	cancel()
	if s := waitPage(t, ctx); s.Error != "" {
		t.Fatalf("page: %+v", s)
	}
	var w workerReceipts
	waitUntil(t, 2*time.Minute, "the worker's receipts to be witnessed", func() (bool, string) {
		w = readReceipts(t, ctx)
		return w.Receipts != nil && w.Receipts.Sent > 0 && len(w.Receipts.Witnesses) == 2, fmt.Sprintf("%+v", w.Receipts)
	})
	peers := []string{a.node.ID().String(), b.node.ID().String(), c.node.ID().String()}
	for _, u := range w.Receipts.Witnesses {
		if u != a.url && u != b.url && u != c.url {
			t.Fatalf("witness %s is none of the mirrors", u)
		}
	}
	for _, s := range w.Receipts.Last {
		raw, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		st, err := attest.Verify(raw, time.Now())
		if err != nil || st.Kind != attest.KindReceipt {
			t.Fatalf("a receipt the worker signed does not verify in Go: %v", err)
		}
		r := st.Receipt
		if r.CID != root || r.Client != w.Receipts.Client || r.Bytes == 0 || !slices.Contains(peers, r.Mirror) {
			t.Fatalf("receipt %+v (root %s, mirrors %v)", r, root, peers)
		}
	}
	client := w.Receipts.Client
	// The key is kept: after a reload the worker signs as the same client.
	reload(t, ctx)
	waitPage(t, ctx)
	waitUntil(t, 2*time.Minute, "receipts after the reload", func() (bool, string) {
		w = readReceipts(t, ctx)
		return w.Receipts != nil && w.Receipts.Client != "", fmt.Sprintf("%+v", w.Receipts)
	})
	if w.Receipts.Client != client {
		t.Fatalf("client key changed across page loads: %s, then %s", client, w.Receipts.Client)
	}
}
