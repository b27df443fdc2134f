package swbundle_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	sampledapp "github.com/mirrornet/mirrornet/examples/sample-dapp"
	"github.com/mirrornet/mirrornet/internal/browsertest"
)

// bigFileSize puts the app over the worker's whole-app CAR budget (16 MiB
// declared by the root's links), so the worker takes it block by block.
const bigFileSize = 17<<20 + 12345

// An app larger than one CAR is fetched block by block, every block
// verified: opened through A, the page and a 17 MiB file in it arrive
// intact over ?format=raw requests; with A gone and B flipping a byte in
// every block it sends, B is dropped at its first block and C delivers
// the rest, intact.
func TestBrowserLargeAppBlockByBlock(t *testing.T) {
	br := browsertest.New(t, browsertest.Options{HostRules: []string{"MAP *.localhost 127.0.0.1"}})
	dir := t.TempDir()
	if err := sampledapp.WriteTo(dir); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, bigFileSize)
	r := rand.NewChaCha8([32]byte{1, 2, 3})
	r.Read(big)
	if err := os.WriteFile(filepath.Join(dir, "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(big)
	want := hex.EncodeToString(sum[:])

	a, b, c, root := threeMirrorsOf(t, dir)
	ctx := br.Tab(t)
	nctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	if err := chromedp.Do(nctx, chromedp.Navigate(appURL(root, a))); err != nil {
		t.Fatalf("navigate: %v", err)
	}
	cancel()
	s := waitPage(t, ctx)
	br.Screenshot(t, ctx, "01-large-app-through-A")
	if s.Error != "" || s.Visits != "1" || s.CSS != "576px" {
		t.Fatalf("first visit: %+v; want the app with its stylesheet", s)
	}
	// The big file, fetched by the page through the worker.
	const digestJS = `fetch("/big.bin").then(r => r.ok ? r.arrayBuffer() : Promise.reject(new Error("HTTP " + r.status)))
		.then(b => crypto.subtle.digest("SHA-256", b))
		.then(d => Array.from(new Uint8Array(d)).map(x => x.toString(16).padStart(2, "0")).join(""))`
	digest := func() string {
		t.Helper()
		ectx, cancel := context.WithTimeout(ctx, 120*time.Second)
		defer cancel()
		got, err := chromedp.Run(ectx, chromedp.Evaluate[string](digestJS, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("fetch big.bin in the page: %v", err)
		}
		return got
	}
	if got := digest(); got != want {
		t.Fatalf("big.bin through the worker: sha256 %s, want %s", got, want)
	}
	st := readStatus(t, ctx)
	var events strings.Builder
	for _, e := range st.Events {
		events.WriteString(e.What + "\n")
	}
	if !strings.Contains(events.String(), "too large for one CAR") {
		t.Fatalf("the worker did not take the block-by-block path:\n%s", events.String())
	}
	if n := a.raws.Load() + b.raws.Load() + c.raws.Load(); n < bigFileSize>>20 {
		t.Fatalf("mirrors answered %d block requests, want at least %d (one per MiB of big.bin)", n, bigFileSize>>20)
	}

	// A dies; B flips a byte in every block it sends; C is slower than
	// the hedge delay, so B is asked for the first block whichever of the
	// two the worker tries first.
	a.kill()
	b.lieRaw.Store(true)
	c.delay.Store(int64(400 * time.Millisecond))
	reload(t, ctx)
	s = waitPage(t, ctx)
	br.Screenshot(t, ctx, "02-B-tampers-blocks-C-serves")
	if s.Error != "" || s.Visits != "2" || s.CSS != "576px" {
		t.Fatalf("with A dead and B tampering: %+v; want the app with its stylesheet, visits 2", s)
	}
	c.delay.Store(0)
	if got := digest(); got != want {
		t.Fatalf("big.bin with B tampering: sha256 %s, want %s", got, want)
	}
	st = readStatus(t, ctx)
	if _, dropped, _ := st.mirror(b.url); !strings.Contains(dropped, "does not match its CID") {
		t.Fatalf("B sent tampered blocks but was not dropped for it: %+v", st)
	}
	if served, _, _ := st.mirror(c.url); served < bigFileSize>>20 {
		t.Fatalf("C served %d blocks, want at least %d: %+v", served, bigFileSize>>20, st)
	}
}
