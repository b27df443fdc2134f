package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mirrornet/mirrornet/internal/release"
	"github.com/mirrornet/mirrornet/internal/tlsacme/pebbletest"
	"github.com/mirrornet/mirrornet/protocol"
)

// httpsClient trusts only roots and sends every connection to addr,
// whatever the URL's host: "resolving" the name to one mirror.
func httpsClient(roots *tls.Config, addr string) *http.Client {
	d := &net.Dialer{}
	return &http.Client{
		Transport: &http.Transport{
			TLSClientConfig:   roots,
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, addr)
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// fetchSite GETs each path of the app over HTTPS from one mirror and
// returns the bodies, or an error.
func fetchSite(c *http.Client, paths ...string) ([][]byte, error) {
	var out [][]byte
	for _, p := range paths {
		resp, err := c.Get("https://app.example.test" + p)
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("%s: %d %q", p, resp.StatusCode, b)
		}
		out = append(out, b)
	}
	return out, nil
}

// Three mirrors, each with --public-url and --app app.example.test=APP-ID
// and certificates from Pebble: a client that trusts only Pebble's root
// gets byte-identical pages from each; with one mirror killed the others
// still answer; a new release reaches every live mirror.
func TestThreeMirrorsServeAppOverHTTPS(t *testing.T) {
	if testing.Short() {
		t.Skip("three real mirrors and an ACME server")
	}
	pb := pebbletest.Start(t)
	rootFile := filepath.Join(t.TempDir(), "pebble-acme.pem")
	if err := os.WriteFile(rootFile, pb.ACMERootPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	keys, set := maintainers(t, 1, 1)
	app := protocol.DeriveAppID("demo", set)

	var nodes []*Node
	for i := range 3 {
		cfg := testConfig(t)
		cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
		cfg.HTTPAddr, cfg.HTTPSAddr = "127.0.0.1:0", "127.0.0.1:0"
		cfg.PublicURL = fmt.Sprintf("https://mirror%d.example.test", i)
		cfg.Apps = []string{"app.example.test=" + app}
		cfg.ACMECA, cfg.ACMECARoot, cfg.ACMEEmail = pb.DirectoryURL, rootFile, "ops@example.test"
		for _, n := range nodes {
			cfg.Bootstrap = append(cfg.Bootstrap, n.Addrs()[0])
		}
		n, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		nodes = append(nodes, n)
	}
	for i, n := range nodes {
		waitFor(t, 2*time.Minute, "certificates", func() (bool, string) {
			ok := n.https.acme.Has("app.example.test") && n.https.acme.Has(fmt.Sprintf("mirror%d.example.test", i))
			return ok, fmt.Sprintf("mirror %d has no certificate yet (orders so far: %v)", i, pb.Ordered())
		})
	}
	roots := &tls.Config{RootCAs: pb.Roots}

	v1 := publish(t, nodes[0], writeTree(t))
	p1 := release.Params{Name: "demo", Version: 1, Maintainers: set, Time: time.Now(), CID: v1.CID}
	if _, err := submitRelease(t, nodes[0], signRelease(t, p1, keys...)); err != nil {
		t.Fatal(err)
	}
	paths := []string{"/", "/app.js", "/assets/big.bin"}
	var want [][]byte
	for i, n := range nodes {
		c := httpsClient(roots, n.HTTPSAddr())
		var got [][]byte
		waitFor(t, 2*time.Minute, fmt.Sprintf("mirror %d serves v1 over HTTPS", i), func() (bool, string) {
			b, err := fetchSite(c, paths...)
			if err != nil {
				return false, err.Error()
			}
			got = b
			return true, ""
		})
		if want == nil {
			want = got
			if !bytes.Contains(want[0], []byte("<title>app</title>")) {
				t.Fatalf("index: %q", want[0])
			}
			continue
		}
		for j := range paths {
			if !bytes.Equal(got[j], want[j]) {
				t.Fatalf("mirror %d: %s differs (sha256 %x vs %x)", i, paths[j], sha256.Sum256(got[j]), sha256.Sum256(want[j]))
			}
		}
	}
	// The public hosts have certificates too; an unconfigured name has none.
	if _, err := httpsClient(roots, nodes[1].HTTPSAddr()).Get("https://mirror1.example.test/api/v1/status"); err != nil {
		t.Fatalf("public host over HTTPS: %v", err)
	}
	if _, err := httpsClient(roots, nodes[1].HTTPSAddr()).Get("https://unconfigured.example.test/"); err == nil {
		t.Fatal("an unconfigured name got a certificate")
	}

	// Kill the origin: the others still answer, byte for byte.
	nodes[0].Close()
	for i, n := range nodes[1:] {
		got, err := fetchSite(httpsClient(roots, n.HTTPSAddr()), paths...)
		if err != nil {
			t.Fatalf("mirror %d after the origin died: %v", i+1, err)
		}
		for j := range paths {
			if !bytes.Equal(got[j], want[j]) {
				t.Fatalf("mirror %d after the origin died: %s differs", i+1, paths[j])
			}
		}
	}

	// A new release, published through a surviving mirror, reaches both.
	dir2 := writeTree(t)
	if err := os.WriteFile(filepath.Join(dir2, "index.html"), []byte("<!doctype html><title>app v2</title>"), 0o644); err != nil {
		t.Fatal(err)
	}
	v2 := publish(t, nodes[1], dir2)
	p2 := release.NextParams(p2rec(t, p1), v2.CID, time.Now())
	p2.App = app
	if _, err := submitRelease(t, nodes[1], signRelease(t, p2, keys...)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i, n := range nodes[1:] {
		c := httpsClient(roots, n.HTTPSAddr())
		waitFor(t, 2*time.Minute, fmt.Sprintf("mirror %d serves v2", i+1), func() (bool, string) {
			b, err := fetchSite(c, "/")
			if err != nil {
				return false, err.Error()
			}
			return bytes.Contains(b[0], []byte("app v2")), string(b[0])
		})
	}
	t.Logf("v2 served by every live mirror %v after its release was submitted", time.Since(start).Round(time.Millisecond))
}
