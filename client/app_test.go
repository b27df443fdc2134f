package client

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	mh "github.com/multiformats/go-multihash"

	"github.com/mirrornet/mirrornet/internal/release"
	"github.com/mirrornet/mirrornet/protocol"
)

// statementMirror is a fake mirror serving a fixed statement stream.
func statementMirror(t *testing.T, raws ...[]byte) string {
	t.Helper()
	var buf bytes.Buffer
	for _, r := range raws {
		if err := protocol.WriteFrame(&buf, r); err != nil {
			t.Fatal(err)
		}
	}
	protocol.WriteFrame(&buf, nil)
	body := buf.Bytes()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != protocol.HTTPStatementsPath {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", protocol.StatementsContentType)
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func testCID(t *testing.T, s string) string {
	t.Helper()
	c, err := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}.Sum([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return c.String()
}

type appFixture struct {
	keys   []crypto.PrivKey
	set    protocol.MaintainerSet
	app    string
	t0     time.Time
	v1, v2 []byte
	c1, c2 string
}

func newAppFixture(t *testing.T) appFixture {
	t.Helper()
	f := appFixture{t0: time.Now().Add(-time.Hour)}
	var pubs []string
	for i := 0; i < 2; i++ {
		k, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := release.PublicKey(k)
		f.keys, pubs = append(f.keys, k), append(pubs, pub)
	}
	f.set = release.MaintainerSetOf(2, pubs...)
	f.app = protocol.DeriveAppID("demo", f.set)
	f.c1, f.c2 = testCID(t, "v1"), testCID(t, "v2")
	var err error
	p := release.Params{Name: "demo", Version: 1, CID: f.c1, Maintainers: f.set, Time: f.t0, TTL: 24 * time.Hour}
	if f.v1, err = release.Sign(p, f.keys...); err != nil {
		t.Fatal(err)
	}
	p.App, p.Version, p.CID, p.Time = f.app, 2, f.c2, f.t0.Add(time.Minute)
	if f.v2, err = release.Sign(p, f.keys...); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestResolveAppPicksNewestValidRelease(t *testing.T) {
	f := newAppFixture(t)
	// Forged v3s: one signed by a single maintainer (threshold 2), one
	// whose signature bytes were altered.
	p3 := release.Params{App: f.app, Name: "demo", Version: 3, CID: testCID(t, "evil"), Maintainers: f.set, Time: f.t0.Add(2 * time.Minute)}
	underSigned, err := release.Sign(p3, f.keys[0])
	if err != nil {
		t.Fatal(err)
	}
	full, err := release.Sign(p3, f.keys...)
	if err != nil {
		t.Fatal(err)
	}
	sr, err := protocol.DecodeSignedRelease(full)
	if err != nil {
		t.Fatal(err)
	}
	sr.Signatures[0].Sig[5] ^= 1
	tampered, err := protocol.Encode(sr)
	if err != nil {
		t.Fatal(err)
	}
	honest := statementMirror(t, f.v1, f.v2)
	liar := statementMirror(t, f.v1, underSigned, tampered) // hides v2, adds forgeries
	for _, boots := range [][]string{{liar, honest}, {honest, liar}} {
		c, rec, err := ResolveApp(context.Background(), f.app, Options{Bootstrap: boots})
		if err != nil {
			t.Fatal(err)
		}
		if c.String() != f.c2 || rec.Version != 2 {
			t.Fatalf("resolved %s v%d, want v2 %s", c, rec.Version, f.c2)
		}
	}
	// Only the liar: v1 is all that can be proven.
	c, rec, err := ResolveApp(context.Background(), f.app, Options{Bootstrap: []string{liar}})
	if err != nil || c.String() != f.c1 || rec.Version != 1 {
		t.Fatalf("liar alone: %s %v %v, want v1", c, rec, err)
	}
	// A pinned version.
	c, _, err = ResolveApp(context.Background(), f.app+"@1", Options{Bootstrap: []string{honest}})
	if err != nil || c.String() != f.c1 {
		t.Fatalf("@1: %s %v, want %s", c, err, f.c1)
	}
	if _, _, err := ResolveApp(context.Background(), f.app+"@7", Options{Bootstrap: []string{honest}}); !errors.Is(err, ErrNoVersion) {
		t.Fatalf("@7: %v, want ErrNoVersion", err)
	}
	other := protocol.DeriveAppID("other", f.set)
	if _, _, err := ResolveApp(context.Background(), other, Options{Bootstrap: []string{honest}}); !errors.Is(err, ErrUnknownApp) {
		t.Fatalf("unknown app: %v, want ErrUnknownApp", err)
	}
	if _, _, err := ResolveApp(context.Background(), "not-an-app", Options{Bootstrap: []string{honest}}); !errors.Is(err, release.ErrBadRef) {
		t.Fatalf("bad ref: %v, want ErrBadRef", err)
	}
}

func TestResolveAppRefusesStale(t *testing.T) {
	f := newAppFixture(t)
	honest := statementMirror(t, f.v1, f.v2)
	later := func() time.Time { return f.t0.Add(48 * time.Hour) } // both expired
	_, _, err := ResolveApp(context.Background(), f.app, Options{Bootstrap: []string{honest}, Now: later})
	if !errors.Is(err, ErrStale) {
		t.Fatalf("expired latest release: %v, want ErrStale", err)
	}
	// An expired v2 still blocks the older v1 (no rollback to it), and a
	// pin to a version is honoured.
	c, _, err := ResolveApp(context.Background(), f.app+"@1", Options{Bootstrap: []string{honest}, Now: later})
	if err != nil || c.String() != f.c1 {
		t.Fatalf("pinned @1 after expiry: %s %v", c, err)
	}
}
