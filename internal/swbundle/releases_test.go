package swbundle_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	sampledapp "github.com/mirrornet/mirrornet/examples/sample-dapp"
	"github.com/mirrornet/mirrornet/internal/browsertest"
	"github.com/mirrornet/mirrornet/internal/release"
	"github.com/mirrornet/mirrornet/internal/swbundle"
	"github.com/mirrornet/mirrornet/node"
	"github.com/mirrornet/mirrornet/protocol"
)

// installedWorker opens a {cid}.ipfs.localhost origin of a one-mirror
// network in Chromium and returns the tab once the worker controls it.
func installedWorker(t *testing.T) context.Context {
	t.Helper()
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
	return ctx
}

// releaseOutcome is what applying one signed release to a book gives.
type releaseOutcome struct {
	Verdict string `json:"verdict"`
	Reason  string `json:"reason"`
	Error   string `json:"error,omitempty"`
}

// goReason names a Go release error as the worker does.
func goReason(err error) string {
	for _, r := range []struct {
		err  error
		name string
	}{
		{release.ErrNotAnchored, "not_anchored"}, {release.ErrDuplicate, "duplicate"}, {release.ErrRollback, "rollback"},
		{release.ErrNameChange, "name_change"}, {release.ErrUnknownPrevious, "unknown_previous"},
		{release.ErrOldThreshold, "old_threshold"}, {release.ErrNewThreshold, "new_threshold"},
		{attest.ErrThreshold, "threshold"}, {attest.ErrUnknownSigner, "unknown_signer"}, {attest.ErrExpired, "expired"},
	} {
		if errors.Is(err, r.err) {
			return r.name
		}
	}
	return attest.Reason(err)
}

// goOutcomes applies raws in order to a fresh release.Book, as the Go
// side of a mirror does: attest.VerifyRelease, then Book.Apply (an
// expired record still extends the chain).
func goOutcomes(raws [][]byte, now time.Time) []releaseOutcome {
	book := release.NewBook()
	var out []releaseOutcome
	for _, raw := range raws {
		rel, err := attest.VerifyRelease(raw, now)
		expired := errors.Is(err, attest.ErrExpired) && rel != nil
		if err == nil || expired {
			if aerr := book.Apply(rel, now); aerr != nil {
				err = aerr
			}
		}
		o := releaseOutcome{Verdict: release.Verdict(err).String(), Reason: goReason(err)}
		if err == nil {
			o.Reason = "ok"
		}
		out = append(out, o)
	}
	return out
}

// The worker decides which release is current exactly as the Go code
// does: for each case (records applied in order to an empty book), the
// worker in Chromium gives every record the verdict and reason that
// attest.VerifyRelease and release.Book give it, and the case's expected
// outcome says which rule each one exercises.
func TestWorkerReleaseRulesMatchGo(t *testing.T) {
	now := time.UnixMilli(1_800_000_000_000)
	key := func() crypto.PrivKey {
		k, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	k1, k2, k3 := key(), key(), key()
	pub := func(k crypto.PrivKey) string { s, _ := release.PublicKey(k); return s }
	set := release.MaintainerSetOf(2, pub(k1), pub(k2))
	set23 := release.MaintainerSetOf(2, pub(k2), pub(k3))
	app := protocol.DeriveAppID("sample", set)
	cid1 := "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
	sign := func(p release.Params, keys ...crypto.PrivKey) []byte {
		t.Helper()
		if p.Name == "" {
			p.Name = "sample"
		}
		if p.CID == "" {
			p.CID = cid1
		}
		if p.Maintainers.Keys == nil {
			p.Maintainers = set
		}
		if p.Time.IsZero() {
			p.Time = now.Add(-time.Hour)
		}
		raw, err := release.Sign(p, keys...)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	v := func(n uint64) release.Params { return release.Params{App: app, Version: n} }
	edit := func(raw []byte, f func(*protocol.SignedRelease)) []byte {
		t.Helper()
		s, err := protocol.DecodeSignedRelease(raw)
		if err != nil {
			t.Fatal(err)
		}
		f(s)
		out, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	// resign replaces the record and signs it again with keys, as is.
	resign := func(record []byte, keys ...crypto.PrivKey) []byte {
		t.Helper()
		msg := signingBuffer(record)
		s := protocol.SignedRelease{Release: record}
		for _, k := range keys {
			sig, err := k.Sign(msg)
			if err != nil {
				t.Fatal(err)
			}
			s.Signatures = append(s.Signatures, protocol.ReleaseSignature{Key: pub(k), Sig: sig})
		}
		slices.SortFunc(s.Signatures, func(a, b protocol.ReleaseSignature) int {
			if c := strings.Compare(a.Key, b.Key); c != 0 {
				return c
			}
			return bytes.Compare(a.Sig, b.Sig)
		})
		out, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	recordOf := func(p release.Params) []byte {
		t.Helper()
		if p.Name == "" {
			p.Name = "sample"
		}
		p.CID, p.Time = cid1, now.Add(-time.Hour)
		rec, err := p.Record()
		if err != nil {
			t.Fatal(err)
		}
		b, err := protocol.Encode(&rec)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good1 := sign(v(1), k1, k2)
	rec1 := func() []byte { s, _ := protocol.DecodeSignedRelease(good1); return s.Release }()
	secp, _, err := crypto.GenerateSecp256k1Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	secpPeer, err := peer.IDFromPublicKey(secp.GetPublic())
	if err != nil {
		t.Fatal(err)
	}
	secpID := secpPeer.String()
	secpSet := protocol.MaintainerSet{Keys: protocol.SortUnique([]string{pub(k1), secpID}), Threshold: 1}

	cases := []struct {
		name string
		raws [][]byte
		want []string // verdict/reason per record
	}{
		{"valid", [][]byte{good1}, []string{"accept/ok"}},
		{"under threshold", [][]byte{sign(v(1), k1)}, []string{"reject/threshold"}},
		{"one key signs twice", [][]byte{edit(sign(v(1), k1), func(s *protocol.SignedRelease) {
			s.Signatures = append(s.Signatures, s.Signatures[0])
		})}, []string{"reject/threshold"}},
		{"flipped signature", [][]byte{edit(good1, func(s *protocol.SignedRelease) { s.Signatures[1].Sig[7] ^= 1 })}, []string{"reject/signature"}},
		{"signed by an outsider too", [][]byte{resign(rec1, k1, k2, k3)}, []string{"reject/unknown_signer"}},
		{"unsigned", [][]byte{edit(good1, func(s *protocol.SignedRelease) { s.Signatures = []protocol.ReleaseSignature{} })}, []string{"reject/malformed"}},
		{"not canonical", [][]byte{append([]byte(nil), bytes.Replace(good1, []byte(`,"signatures"`), []byte(`, "signatures"`), 1)...)}, []string{"reject/malformed"}},
		{"garbage", [][]byte{[]byte(`{"release":"not base64!","signatures":[]}`)}, []string{"reject/malformed"}},
		{"record not canonical", [][]byte{resign(bytes.Replace(rec1, []byte(`{"app"`), []byte(`{ "app"`), 1), k1, k2)}, []string{"reject/payload"}},
		{"record field renamed", [][]byte{resign(bytes.Replace(rec1, []byte(`"cid"`), []byte(`"CID"`), 1), k1, k2)}, []string{"reject/payload"}},
		{"oversize", [][]byte{edit(good1, func(s *protocol.SignedRelease) { s.Release = append(s.Release, make([]byte, 70<<10)...) })}, []string{"reject/oversize"}},
		{"secp256k1 maintainer", [][]byte{func() []byte {
			rec := protocol.Release{App: protocol.DeriveAppID("sample", secpSet), Name: "sample", Version: 1, CID: cid1,
				Time: now.Add(-time.Hour).UnixMilli(), Expires: now.Add(time.Hour).UnixMilli(), Maintainers: secpSet}
			raw, err := attest.SignRelease(rec, k1)
			if err != nil {
				t.Fatal(err)
			}
			return raw
		}()}, []string{"reject/key_type"}},
		{"not anchored", [][]byte{sign(release.Params{App: protocol.DeriveAppID("other", set), Name: "sample", Version: 1}, k1, k2)}, []string{"ignore/not_anchored"}},
		{"rollback", [][]byte{sign(v(2), k1, k2), good1}, []string{"accept/ok", "ignore/rollback"}},
		{"duplicate", [][]byte{good1, good1}, []string{"accept/ok", "ignore/duplicate"}},
		{"name change", [][]byte{good1, sign(release.Params{App: app, Name: "renamed", Version: 2}, k1, k2)}, []string{"accept/ok", "reject/name_change"}},
		{"new set without previous", [][]byte{good1, sign(release.Params{App: app, Version: 2, Maintainers: set23}, k2, k3)}, []string{"accept/ok", "ignore/unknown_previous"}},
		{"rotation without the old threshold", [][]byte{good1, sign(release.Params{App: app, Version: 2, Maintainers: set23, Previous: &set}, k2, k3)}, []string{"accept/ok", "reject/old_threshold"}},
		{"rotation", [][]byte{good1, sign(release.Params{App: app, Version: 2, Maintainers: set23, Previous: &set}, k1, k2, k3),
			sign(release.Params{App: app, Version: 3, Maintainers: set23}, k2, k3), resign(recordOf(release.Params{App: app, Version: 4, Maintainers: set23}), k1, k2, k3)},
			[]string{"accept/ok", "accept/ok", "accept/ok", "reject/unknown_signer"}},
		{"expired still blocks rollback", [][]byte{sign(release.Params{App: app, Version: 2, Time: now.Add(-48 * time.Hour), TTL: time.Hour}, k1, k2), good1},
			[]string{"ignore/expired", "ignore/rollback"}},
		{"future", [][]byte{sign(release.Params{App: app, Version: 1, Time: now.Add(time.Minute)}, k1, k2)}, []string{"ignore/future"}},
	}

	for _, c := range cases {
		got := goOutcomes(c.raws, now)
		for i, o := range got {
			if o.Verdict+"/"+o.Reason != c.want[i] {
				t.Fatalf("%s: Go gives record %d %s/%s, the case expects %s", c.name, i, o.Verdict, o.Reason, c.want[i])
			}
		}
	}

	ctx := installedWorker(t)
	for _, c := range cases {
		list := make([]string, len(c.raws))
		for i, r := range c.raws {
			list[i] = base64.StdEncoding.EncodeToString(r)
		}
		body, _ := json.Marshal(list)
		js := fmt.Sprintf(`fetch("/.mirrornet/verify-release?now=%d", {method: "POST", body: %q}).then(r => r.json())`, now.UnixMilli(), string(body))
		got, err := eval[struct {
			Results []releaseOutcome `json:"results"`
		}](ctx, js)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if len(got.Results) != len(c.want) {
			t.Fatalf("%s: worker gave %d results, want %d", c.name, len(got.Results), len(c.want))
		}
		for i, o := range got.Results {
			if o.Verdict+"/"+o.Reason != c.want[i] {
				t.Errorf("%s: worker gives record %d %s/%s (%s), Go %s", c.name, i, o.Verdict, o.Reason, o.Error, c.want[i])
			}
		}
	}
}

// signingBuffer is what a maintainer signs for record.
func signingBuffer(record []byte) []byte {
	var b []byte
	for _, f := range [][]byte{[]byte(protocol.DomainRelease), []byte(protocol.PayloadRelease), record} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

// writeVariant writes the sample dapp with its heading replaced.
func writeVariant(t *testing.T, heading string) string {
	t.Helper()
	dir := t.TempDir()
	if err := sampledapp.WriteTo(dir); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "index.html")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if heading != "" {
		if !bytes.Contains(b, []byte("<h1>Still here.</h1>")) {
			t.Fatal("sample dapp has no <h1>Still here.</h1>")
		}
		b = bytes.Replace(b, []byte("<h1>Still here.</h1>"), []byte("<h1>"+heading+"</h1>"), 1)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// configOf reads the worker config a mirror serves for host.
func configOf(m *mirror, host string) (swbundle.WorkerConfig, error) {
	var cfg swbundle.WorkerConfig
	req, _ := http.NewRequest("GET", m.direct+swbundle.ConfigPath, nil)
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return cfg, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return cfg, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return cfg, json.NewDecoder(resp.Body).Decode(&cfg)
}

// releaseStatus is the release part of the worker's status JSON.
type releaseStatus struct {
	App      string `json:"app"`
	Version  int    `json:"release_version"`
	Latest   int    `json:"release_latest"`
	Rejected int    `json:"releases_rejected"`
	Root     string `json:"root"`
	Events   []struct {
		What string `json:"what"`
	} `json:"events"`
}

func readReleaseStatus(ctx context.Context) (releaseStatus, error) {
	var st releaseStatus
	raw, err := eval[string](ctx, `fetch("/.mirrornet/?format=json").then(r => r.text())`)
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal([]byte(raw), &st)
}

// On an app host the worker serves the release its maintainers signed,
// verified in the browser, not the one a mirror names: it follows a new
// release (two of two maintainers signed), keeps it when the mirror it
// came through then offers an older record, an under-threshold one and
// one with a bad signature for a bundle of its own, and a fresh visitor
// who reaches only that lying mirror gets the error page, never its
// bundle.
func TestBrowserAppHostVerifiesRelease(t *testing.T) {
	br := browsertest.New(t, browsertest.Options{HostRules: []string{"MAP *.localhost 127.0.0.1"}})
	key := func() crypto.PrivKey {
		k, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	k1, k2 := key(), key()
	p1, _ := release.PublicKey(k1)
	p2, _ := release.PublicKey(k2)
	set := release.MaintainerSetOf(2, p1, p2)
	app := protocol.DeriveAppID("sample", set)
	const host = "app.localhost"
	bind := func(c *node.Config) { c.Apps = []string{host + "=" + app} }

	a := startMirror(t, "A", nil, bind)
	b := startMirror(t, "B", a.node.Addrs(), bind)
	v1dir, v2dir, evilDir := writeVariant(t, ""), writeVariant(t, "Still here, version 2."), writeVariant(t, "Hacked.")
	var root1, root2 string
	for _, m := range []*mirror{a, b} {
		root1 = publishSample(t, m.dataDir, v1dir)
		root2 = publishSample(t, m.dataDir, v2dir)
	}
	rootEvil := publishSample(t, a.dataDir, evilDir) // only the liar holds it
	sign := func(version uint64, cid string, keys ...crypto.PrivKey) []byte {
		t.Helper()
		raw, err := release.Sign(release.Params{App: app, Name: "sample", Version: version, Maintainers: set, Time: time.Now(), CID: cid}, keys...)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	publish := func(raw []byte) {
		t.Helper()
		ac, err := node.DialAdmin(a.dataDir)
		if err != nil {
			t.Fatal(err)
		}
		var res node.ReleaseResult
		if err := ac.Post(context.Background(), "/admin/v1/release", node.ReleaseRequest{Release: raw}, &res); err != nil {
			t.Fatalf("release: %v", err)
		}
	}
	servesVersion := func(v uint64, root string) {
		t.Helper()
		waitServesRelease(t, []*mirror{a, b}, host, app, v, root)
	}
	good1 := sign(1, root1, k1, k2)
	publish(good1)
	servesVersion(1, root1)

	// 1. The first visit installs the worker, which verifies release 1.
	ctx := br.Tab(t)
	u := "http://" + host + ":" + a.port + "/"
	nctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	if err := chromedp.Do(nctx, chromedp.Navigate(u)); err != nil {
		t.Fatalf("navigate: %v", err)
	}
	cancel()
	s := waitPage(t, ctx)
	br.Screenshot(t, ctx, "01-release-1")
	if s.Error != "" || s.Heading != "Still here." || s.Visits != "1" {
		t.Fatalf("first visit: %+v; want release 1's page", s)
	}
	if st, err := readReleaseStatus(ctx); err != nil || st.App != app || st.Version != 1 || st.Root != root1 {
		t.Fatalf("status: %+v (%v); want app %s release 1 (%s)", st, err, app, root1)
	}

	// 2. Release 2, signed by both maintainers: the worker verifies it
	// and moves to it on a later load.
	publish(sign(2, root2, k1, k2))
	servesVersion(2, root2)
	waitUntil(t, 2*time.Minute, "the page to show release 2", func() (bool, string) {
		reload(t, ctx)
		s := waitPage(t, ctx)
		return s.Heading == "Still here, version 2.", fmt.Sprintf("%+v", s)
	})
	br.Screenshot(t, ctx, "02-release-2")

	// 3. A lies: its config names its own bundle as version 3 and
	// carries release 1 (older), a version 3 signed by one maintainer of
	// two, and a version 3 whose second signature is broken.
	under := sign(3, rootEvil, k1)
	forged := func() []byte {
		sr, err := protocol.DecodeSignedRelease(sign(3, rootEvil, k1, k2))
		if err != nil {
			t.Fatal(err)
		}
		sr.Signatures[1].Sig[0] ^= 1
		raw, _ := json.Marshal(sr)
		return raw
	}()
	lie := func(c *swbundle.WorkerConfig) {
		c.Root, c.Version, c.Releases = rootEvil, 3, [][]byte{good1, under, forged}
	}
	a.config.Store(&lie)
	waitUntil(t, 2*time.Minute, "the worker to read and refuse A's records", func() (bool, string) {
		reload(t, ctx)
		s := waitPage(t, ctx)
		if s.Heading != "Still here, version 2." {
			t.Fatalf("with A lying the page changed: %+v", s)
		}
		st, err := readReleaseStatus(ctx)
		return err == nil && st.Rejected >= 2, fmt.Sprintf("%+v %v", st, err)
	})
	for range 2 {
		reload(t, ctx)
		if s := waitPage(t, ctx); s.Error != "" || s.Heading != "Still here, version 2." || strings.Contains(s.Body, "Hacked") {
			t.Fatalf("with A lying: %+v; want release 2's page", s)
		}
	}
	br.Screenshot(t, ctx, "03-A-lies-release-2-kept")
	st, err := readReleaseStatus(ctx)
	if err != nil || st.Version != 2 || st.Latest != 2 || st.Root != root2 {
		t.Fatalf("status with A lying: %+v (%v); want release 2 (%s)", st, err, root2)
	}
	var events strings.Builder
	for _, e := range st.Events {
		events.WriteString(e.What + "\n")
	}
	for _, want := range []string{"required maintainers signed", "does not verify"} {
		if !strings.Contains(events.String(), want) {
			t.Errorf("no event says %q:\n%s", want, events.String())
		}
	}

	// 4. A fresh visitor who reaches only A (its seeds name only itself
	// and its statements carry no release record) gets the error page:
	// nothing A offers verifies, and A's bundle is never shown.
	a.seeds.Store(&[]string{a.url})
	a.stripReleases.Store(true)
	lie2 := func(c *swbundle.WorkerConfig) {
		c.Root, c.Version, c.Releases = rootEvil, 3, [][]byte{under, forged}
	}
	a.config.Store(&lie2)
	fresh := br.IsolatedTab(t)
	nctx, cancel = context.WithTimeout(fresh, 30*time.Second)
	if err := chromedp.Do(nctx, chromedp.Navigate(u)); err != nil {
		t.Logf("navigate: %v", err)
	}
	cancel()
	s = waitPage(t, fresh)
	br.Screenshot(t, fresh, "04-fresh-visitor-only-liar")
	if s.Error == "" || strings.Contains(s.Body, "Hacked") || strings.Contains(s.Body, "Still here") {
		t.Fatalf("fresh visitor through the lying mirror: %+v; want the error page", s)
	}
	if !strings.Contains(s.Body, "no release record of app "+app) {
		t.Errorf("error page does not say no release verified:\n%s", s.Body)
	}
}
