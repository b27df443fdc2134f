package swbundle_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/libp2p/go-libp2p/core/crypto"

	sampledapp "github.com/mirrornet/mirrornet/examples/sample-dapp"
	"github.com/mirrornet/mirrornet/internal/browsertest"
	"github.com/mirrornet/mirrornet/internal/release"
	"github.com/mirrornet/mirrornet/internal/swbundle"
	"github.com/mirrornet/mirrornet/node"
	"github.com/mirrornet/mirrornet/protocol"
)

// An --app host gets the worker too: the page loads from the app's
// current release (the status page names the app and the version), and
// when the mirror the browser came through dies the same origin keeps
// working from another mirror bound to the app.
func TestBrowserAppHost(t *testing.T) {
	br := browsertest.New(t, browsertest.Options{HostRules: []string{"MAP *.localhost 127.0.0.1"}})
	sk, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := release.PublicKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	set := release.MaintainerSetOf(1, pub)
	app := protocol.DeriveAppID("sample", set)
	bind := func(c *node.Config) { c.Apps = []string{"app.localhost=" + app} }

	dir := t.TempDir()
	if err := sampledapp.WriteTo(dir); err != nil {
		t.Fatal(err)
	}
	a := startMirror(t, "A", nil, bind)
	b := startMirror(t, "B", a.node.Addrs(), bind)
	var root string
	for _, m := range []*mirror{a, b} {
		root = publishSample(t, m.dataDir, dir)
	}
	rec, err := release.Sign(release.Params{Name: "sample", Version: 1, Maintainers: set, Time: time.Now(), CID: root}, sk)
	if err != nil {
		t.Fatal(err)
	}
	ac, err := node.DialAdmin(a.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	var res node.ReleaseResult
	if err := ac.Post(context.Background(), "/admin/v1/release", node.ReleaseRequest{Release: rec}, &res); err != nil {
		t.Fatalf("release: %v", err)
	}
	waitServesRelease(t, []*mirror{a, b}, "app.localhost", app, 1, root)

	ctx := br.Tab(t)
	u := "http://app.localhost:" + a.port + "/"
	nctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	if err := chromedp.Do(nctx, chromedp.Navigate(u)); err != nil {
		t.Fatalf("navigate: %v", err)
	}
	cancel()
	s := waitPage(t, ctx)
	br.Screenshot(t, ctx, "01-app-host-through-A")
	if s.Error != "" || s.Visits != "1" || !s.Controlled {
		t.Fatalf("app host: %+v; want the app from the worker", s)
	}
	raw, err := eval[string](ctx, `fetch("/.mirrornet/?format=json").then(r => r.text())`)
	if err != nil || !strings.Contains(raw, `"app": "`+app+`"`) || !strings.Contains(raw, `"release_version": 1`) || !strings.Contains(raw, `"root": "`+root+`"`) {
		t.Fatalf("status on the app host names no app, version or root: %s (%v)", raw, err)
	}

	// A hard reload (Shift+reload) bypasses the worker: the mirror's
	// bootstrap page gives the page back to it, verified again.
	ignore := true
	if _, err := chromedp.Call(ctx, page.Reload, page.ReloadParams{IgnoreCache: &ignore}); err != nil {
		t.Fatalf("hard reload: %v", err)
	}
	waitUntil(t, 2*time.Minute, "the worker to serve the page after a hard reload", func() (bool, string) {
		s, err := readPage(ctx)
		return err == nil && s.Visits == "2" && s.Controlled, fmt.Sprintf("%+v %v", s, err)
	})
	// ... without giving up on the worker (the bootstrap page's fallback
	// for browsers that cannot run it sets this cookie).
	if cookies, err := eval[string](ctx, `document.cookie`); err != nil || strings.Contains(cookies, swbundle.DirectCookie) {
		t.Fatalf("after a hard reload the bootstrap page fell back to direct serving: cookies %q (%v)", cookies, err)
	}

	a.kill()
	reload(t, ctx)
	s = waitPage(t, ctx)
	br.Screenshot(t, ctx, "02-app-host-after-A-died")
	if s.Error != "" || s.Visits != "3" {
		t.Fatalf("after A died: %+v; want the app with visits 3", s)
	}
	st := readStatus(t, ctx)
	if served, _, _ := st.mirror(b.url); served == 0 {
		t.Fatalf("B served nothing after A died: %+v", st)
	}
}
