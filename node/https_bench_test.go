package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mirrornet/mirrornet/internal/release"
	"github.com/mirrornet/mirrornet/internal/tlsacme/pebbletest"
	"github.com/mirrornet/mirrornet/protocol"
)

// sampleSite is the sample dapp's directory and the paths a page load
// fetches: the page, then everything it references.
func sampleSite(b *testing.B) (string, []string) {
	dir, err := filepath.Abs("../examples/sample-dapp/site")
	if err != nil {
		b.Fatal(err)
	}
	paths := []string{"/"}
	entries, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() && e.Name() != "index.html" {
			paths = append(paths, "/"+e.Name())
		}
	}
	return dir, paths
}

// selfSigned makes an ECDSA P-256 certificate for name (the key type
// certmagic uses), and a pool that trusts it.
func selfSigned(b *testing.B, name string) (tls.Certificate, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		b.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}

// pageLoad is a first visit: a new connection (TCP and TLS handshakes),
// the page, then every asset over the same connection. It returns the
// time to the page's first byte and to the last byte of the last asset.
func pageLoad(b *testing.B, roots *x509.CertPool, addr string, paths []string) (ttfb, full time.Duration) {
	d := &net.Dialer{}
	tr := &http.Transport{
		ForceAttemptHTTP2: true,
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	start := time.Now()
	for i, p := range paths {
		req, _ := http.NewRequest("GET", "https://app.example.test"+p, nil)
		if i == 0 {
			req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
				GotFirstResponseByte: func() { ttfb = time.Since(start) },
			}))
		}
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || n == 0 {
			b.Fatalf("%s: %d, %d bytes, %v", p, resp.StatusCode, n, err)
		}
	}
	return ttfb, time.Since(start)
}

// BenchmarkAppPageLoadHTTPS: the sample dapp over HTTPS from a mirror's
// --app host (Pebble certificate, the whole HTTP stack), against the same
// files from a plain net/http TLS file server, in the same run. ns/op is
// the pair of page loads; the ratios compare the mirror with net/http.
func BenchmarkAppPageLoadHTTPS(b *testing.B) {
	site, paths := sampleSite(b)
	pb := pebbletest.Start(b)
	rootFile := filepath.Join(b.TempDir(), "pebble-acme.pem")
	if err := os.WriteFile(rootFile, pb.ACMERootPEM, 0o644); err != nil {
		b.Fatal(err)
	}
	keys, set := maintainers(b, 1, 1)
	app := protocol.DeriveAppID("bench", set)
	cfg := testConfig(b)
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.HTTPAddr, cfg.HTTPSAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.PublicURL = "https://mirror.example.test"
	cfg.Apps = []string{"app.example.test=" + app}
	cfg.ACMECA, cfg.ACMECARoot, cfg.ACMEEmail = pb.DirectoryURL, rootFile, "ops@example.test"
	n, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	res := publish(b, n, site)
	p := release.Params{Name: "bench", Version: 1, Maintainers: set, Time: time.Now(), CID: res.CID}
	if _, err := submitRelease(b, n, signRelease(b, p, keys...)); err != nil {
		b.Fatal(err)
	}
	waitFor(b, 2*time.Minute, "app served over HTTPS", func() (bool, string) {
		if !n.https.acme.Has("app.example.test") {
			return false, "no certificate yet"
		}
		code, _, body := hostGet(b, n, "app.example.test", "/")
		return code == 200, strings.TrimSpace(body)
	})

	// The baseline serves the very certificate chain the mirror got from
	// Pebble (leaf and intermediate, ECDSA P-256): what is compared is
	// the HTTP stack, not one certificate chain against another.
	cert, err := n.https.acme.TLSConfig().GetCertificate(&tls.ClientHelloInfo{ServerName: "app.example.test"})
	if err != nil {
		b.Fatal(err)
	}
	pool := pb.Roots
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	plain := &http.Server{Handler: http.FileServer(http.Dir(site)), TLSConfig: &tls.Config{Certificates: []tls.Certificate{*cert}}}
	go plain.ServeTLS(ln, "", "")
	defer plain.Close()

	// Interleaved: each iteration loads the page from both, so the shared
	// machine's noise hits both alike; the ratios are what to read.
	pageLoad(b, pool, ln.Addr().String(), paths) // warm both
	pageLoad(b, pb.Roots, n.HTTPSAddr(), paths)
	var mTTFB, mFull, pTTFB, pFull []time.Duration
	b.ResetTimer()
	for range b.N {
		t1, f1 := pageLoad(b, pool, ln.Addr().String(), paths)
		t2, f2 := pageLoad(b, pb.Roots, n.HTTPSAddr(), paths)
		pTTFB, pFull, mTTFB, mFull = append(pTTFB, t1), append(pFull, f1), append(mTTFB, t2), append(mFull, f2)
	}
	b.StopTimer()
	// Medians: on a shared machine a page load now and then waits
	// milliseconds for a core, which swamps a mean.
	med := func(ds []time.Duration) float64 {
		s := slices.Clone(ds)
		slices.Sort(s)
		return float64(s[len(s)/2].Microseconds())
	}
	b.ReportMetric(med(mFull), "mirror-full-us")
	b.ReportMetric(med(pFull), "nethttp-full-us")
	b.ReportMetric(med(mTTFB), "mirror-ttfb-us")
	b.ReportMetric(med(pTTFB), "nethttp-ttfb-us")
	b.ReportMetric(med(mFull)/med(pFull), "full-ratio")
	b.ReportMetric(med(mTTFB)/med(pTTFB), "ttfb-ratio")
}
