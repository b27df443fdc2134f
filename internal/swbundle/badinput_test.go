package swbundle_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"github.com/mirrornet/mirrornet/attest"
	sampledapp "github.com/mirrornet/mirrornet/examples/sample-dapp"
	"github.com/mirrornet/mirrornet/internal/browsertest"
	"github.com/mirrornet/mirrornet/protocol"
)

// fakeSource is a hostile statement source and mirror: its statement
// stream holds garbage, a forged signature, a genuine statement naming a
// malformed URL and a genuine statement for itself; it serves honest
// blocks (taken from a real mirror) but pads every CAR with one extra,
// valid, 256 KiB block, past any budget the app's DAG declares.
type fakeSource struct {
	url      string
	upstream string // a real mirror's gateway
	root     string
	self     crypto.PrivKey
	other    crypto.PrivKey
}

func frame(b []byte) []byte {
	return append(binary.AppendUvarint(nil, uint64(len(b))), b...)
}

func signed(t testing.TB, key crypto.PrivKey, http, root string) []byte {
	t.Helper()
	id, _ := peer.IDFromPrivateKey(key)
	now := time.Now().UnixMilli()
	raw, err := attest.SignLiveness(key, protocol.Liveness{
		Peer: id.String(), State: protocol.StateUp, Seq: uint64(now), Time: now,
		Addrs: []string{}, HTTP: http, Bundles: []string{root}, Version: "fake",
	})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func (f *fakeSource) handler(t testing.TB) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		switch {
		case r.URL.Path == protocol.HTTPStatementsPath:
			forged := signed(t, f.other, "http://127.0.0.1:1", f.root)
			forged[len(forged)-1] ^= 0x01
			var body []byte
			body = append(body, frame([]byte("this is not a signed envelope"))...)
			body = append(body, frame(forged)...)
			body = append(body, frame(signed(t, f.other, "ftp://user@evil.example/x?y", f.root))...)
			body = append(body, frame(signed(t, f.self, f.url, f.root))...)
			body = append(body, 0) // end frame
			w.Write(body)
		case strings.HasPrefix(r.URL.Path, "/ipfs/"):
			resp, err := http.Get(f.upstream + r.URL.RequestURI())
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if r.URL.Query().Get("format") == "car" && resp.StatusCode == http.StatusOK {
				extra := make([]byte, 256<<10)
				rand.Read(extra)
				h, _ := mh.Sum(extra, mh.SHA2_256, -1)
				c := cid.NewCidV1(cid.Raw, h).Bytes()
				b = append(b, binary.AppendUvarint(nil, uint64(len(c)+len(extra)))...)
				b = append(b, c...)
				b = append(b, extra...)
			}
			w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
			w.WriteHeader(resp.StatusCode)
			w.Write(b)
		default:
			http.NotFound(w, r)
		}
	})
}

// Bad input from mirrors: garbage and forged statements and a malformed
// mirror URL are skipped (each named on the worker's status page, as on
// its console) and make no mirror usable; a CAR over the budget the app's
// DAG declares is cut off and its source dropped; the app still loads,
// verified, from the honest mirror.
func TestBrowserBadInput(t *testing.T) {
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

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeSource{url: "http://" + ln.Addr().String(), upstream: a.direct, root: root}
	f.self, _, _ = crypto.GenerateEd25519Key(nil)
	f.other, _, _ = crypto.GenerateEd25519Key(nil)
	fsrv := &http.Server{Handler: f.handler(t)}
	go fsrv.Serve(ln)
	t.Cleanup(func() { fsrv.Close() })

	// A names the fake source first, and a URL that is no URL; A is slow,
	// so the fake source is asked for the CAR.
	a.seeds.Store(&[]string{"javascript:alert(1)", f.url, a.url})
	a.delay.Store(int64(time.Second))

	ctx := br.Tab(t)
	nctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	if err := chromedp.Do(nctx, chromedp.Navigate(appURL(root, a))); err != nil {
		t.Fatalf("navigate: %v", err)
	}
	cancel()
	s := waitPage(t, ctx)
	br.Screenshot(t, ctx, "01-bad-input-app-loaded")
	if s.Error != "" || s.Visits != "1" || s.CSS != "576px" {
		t.Fatalf("page: %+v; want the app, verified, from A", s)
	}
	st := readStatus(t, ctx)
	if _, dropped, _ := st.mirror(f.url); !strings.Contains(dropped, "over its declared budget") {
		t.Errorf("the fake source sent a CAR over budget but is not dropped for it: %q", dropped)
	}
	if served, _, _ := st.mirror(a.url); served == 0 {
		t.Errorf("A served nothing: %+v", st)
	}
	rejected := 0
	for _, src := range st.Sources {
		if src.URL == f.url {
			rejected = src.Rejected
		}
	}
	if rejected != 2 {
		t.Errorf("fake source: %d statements rejected, want 2 (garbage, forged): %+v", rejected, st.Sources)
	}
	var events bytes.Buffer
	for _, e := range st.Events {
		events.WriteString(e.What + "\n")
	}
	otherID, _ := peer.IDFromPrivateKey(f.other)
	for _, want := range []string{"skipping seed mirror", "malformed envelope", "signature does not verify", "skipping mirror " + otherID.String()} {
		if !strings.Contains(events.String(), want) {
			t.Errorf("no event says %q:\n%s", want, events.String())
		}
	}
	for _, m := range st.Mirrors {
		if strings.Contains(m.URL, "evil.example") || m.URL == "http://127.0.0.1:1" {
			t.Errorf("a bad statement made %s a mirror", m.URL)
		}
	}
}
