package tlsacme_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/mirrornet/mirrornet/internal/dnsupdate"
	"github.com/mirrornet/mirrornet/internal/dnsupdate/dnstest"
	"github.com/mirrornet/mirrornet/internal/tlsacme"
	"github.com/mirrornet/mirrornet/internal/tlsacme/pebbletest"
)

// guard is a failure guard for waiting on the CA, not a timing assertion.
const guard = 2 * time.Minute

// events wakes a waiter on every certmagic event.
type events struct{ ch chan struct{} }

func newEvents() *events { return &events{ch: make(chan struct{}, 64)} }

func (e *events) on(string, map[string]any) {
	select {
	case e.ch <- struct{}{}:
	default:
	}
}

// wait returns once m serves certificates for every name.
func (e *events) wait(t *testing.T, m *tlsacme.Manager, names ...string) {
	t.Helper()
	deadline := time.After(guard)
	for {
		all := true
		for _, n := range names {
			all = all && m.Has(n)
		}
		if all {
			return
		}
		select {
		case <-e.ch:
		case <-deadline:
			t.Fatalf("certificates for %v not served within %v", names, guard)
		}
	}
}

// serve runs an HTTPS and an HTTP listener for m on loopback.
func listeners(t *testing.T) (httpsLn, httpLn net.Listener) {
	t.Helper()
	var err error
	if httpsLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if httpLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	return httpsLn, httpLn
}

func serve(t *testing.T, m *tlsacme.Manager, httpsLn, httpLn net.Listener) {
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello "+r.Host) })
	s1 := &http.Server{Handler: hello, ErrorLog: log.New(io.Discard, "", 0)}
	go s1.Serve(tls.NewListener(httpsLn, m.TLSConfig()))
	s2 := &http.Server{Handler: m.HTTPHandler(hello)}
	go s2.Serve(httpLn)
	t.Cleanup(func() { s1.Close(); s2.Close() })
}

func port(l net.Listener) int { return l.Addr().(*net.TCPAddr).Port }

// client trusts only Pebble's issuing root and dials addr whatever the name.
func client(roots *tls.Config, addr string) *http.Client {
	d := &net.Dialer{}
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig: roots,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}}
}

func TestCertificatesFromPebble(t *testing.T) {
	pb := pebbletest.Start(t)
	dir := t.TempDir()
	names := []string{"mirror.example.test", "app.example.test"}
	httpsLn, httpLn := listeners(t)
	ev := newEvents()
	m, err := tlsacme.New(tlsacme.Config{
		Names: names, CA: pb.DirectoryURL, CARoots: pb.ACMERoots, Email: "ops@example.test", Storage: dir,
		HTTPPort: port(httpLn), TLSPort: port(httpsLn),
	}, tlsacme.WithEvents(ev.on))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	serve(t, m, httpsLn, httpLn)
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ev.wait(t, m, names...)

	c := client(&tls.Config{RootCAs: pb.Roots}, httpsLn.Addr().String())
	for _, n := range names {
		resp, err := c.Get("https://" + n + ":" + strconv.Itoa(port(httpsLn)) + "/")
		if err != nil {
			t.Fatalf("%s over HTTPS with only Pebble's root trusted: %v", n, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "hello "+n+":"+strconv.Itoa(port(httpsLn)) {
			t.Fatalf("%s: %q", n, body)
		}
	}

	// A name that is not configured gets no certificate and no order.
	conn, err := tls.Dial("tcp", httpsLn.Addr().String(), &tls.Config{ServerName: "evil.example.test", RootCAs: pb.Roots})
	if err == nil {
		conn.Close()
		t.Fatal("handshake for an unconfigured name succeeded")
	}
	if o := pb.Ordered(); slices.Contains(o, "evil.example.test") || len(o) != len(names) && len(o) != 1 {
		t.Fatalf("orders %v: want only the configured names", o)
	}
	if _, err := tls.Dial("tcp", httpsLn.Addr().String(), &tls.Config{ServerName: "mirror.example.test"}); err == nil {
		t.Fatal("a client trusting only the system roots accepted Pebble's certificate")
	}
	m.Close()

	// A restart on the same storage serves the stored certificates with no
	// new order to the CA.
	before := len(pb.Ordered())
	httpsLn2, httpLn2 := listeners(t)
	ev2 := newEvents()
	m2, err := tlsacme.New(tlsacme.Config{
		Names: names, CA: pb.DirectoryURL, CARoots: pb.ACMERoots, Storage: dir, HTTPPort: port(httpLn2), TLSPort: port(httpsLn2),
	}, tlsacme.WithEvents(ev2.on))
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	serve(t, m2, httpsLn2, httpLn2)
	if err := m2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ev2.wait(t, m2, names...)
	conn, err = tls.Dial("tcp", httpsLn2.Addr().String(), &tls.Config{ServerName: "app.example.test", RootCAs: pb.Roots})
	if err != nil {
		t.Fatalf("restarted manager does not serve the stored certificate: %v", err)
	}
	conn.Close()
	if after := len(pb.Ordered()); after != before {
		t.Fatalf("restart ordered %d new certificates", after-before)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []tlsacme.Config{
		{Names: []string{"a.example.test"}},
		{Names: []string{"*.example.test"}, Storage: "x"},
		{Names: []string{"A.example.test"}, Storage: "x"},
		{Names: []string{"localhost"}, Storage: "x"},
		{Storage: "x"},
		{Storage: "x", WildcardCert: "c.pem"},
	} {
		if _, err := tlsacme.New(c); !errors.Is(err, tlsacme.ErrConfig) {
			t.Errorf("%+v: %v, want ErrConfig", c, err)
		}
	}
}

// An operator-provided wildcard certificate (for *.ipfs.HOST, which ACME
// issues only over DNS-01) is served for the names it covers, and only
// those.
func TestProvidedWildcardCertificate(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "*.ipfs.mirror.example.test"},
		DNSNames:  []string{"*.ipfs.mirror.example.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "wild.pem"), filepath.Join(dir, "wild.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)

	m, err := tlsacme.New(tlsacme.Config{Storage: t.TempDir(), WildcardCert: certFile, WildcardKey: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	httpsLn, httpLn := listeners(t)
	serve(t, m, httpsLn, httpLn)
	roots := x509.NewCertPool()
	cert, _ := x509.ParseCertificate(der)
	roots.AddCert(cert)
	sub := "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi.ipfs.mirror.example.test"
	conn, err := tls.Dial("tcp", httpsLn.Addr().String(), &tls.Config{ServerName: sub, RootCAs: roots})
	if err != nil {
		t.Fatalf("subdomain with the provided wildcard: %v", err)
	}
	conn.Close()
	for _, name := range []string{"mirror.example.test", "a.b.ipfs.mirror.example.test", "evil.example.test"} {
		if conn, err := tls.Dial("tcp", httpsLn.Addr().String(), &tls.Config{ServerName: name, RootCAs: roots}); err == nil {
			conn.Close()
			t.Errorf("%s got a certificate", name)
		}
	}
}

// DNS-01: with an RFC 2136 provider, the wildcard for the {cid}.ipfs.
// subdomains comes from Pebble, which validates every challenge for real
// against a name server on loopback: the TXT record for the wildcard
// (set by a TSIG-signed update), and HTTP-01 or TLS-ALPN-01 for the
// public host (whose name resolves to the mirror there). A subdomain then
// gets a certificate that a client trusting only Pebble's root accepts;
// names outside the wildcard still get none.
func TestWildcardOverDNS01(t *testing.T) {
	ns := dnstest.Start(t, "example.test")
	httpsLn, httpLn := listeners(t)
	pb := pebbletest.StartWith(t, pebbletest.Options{Resolver: ns.Addr, HTTPPort: port(httpLn), TLSPort: port(httpsLn)})
	provider, err := dnsupdate.New(dnsupdate.Config{Server: ns.Addr, TSIGKey: ns.KeyName, TSIGSecret: ns.Secret})
	if err != nil {
		t.Fatal(err)
	}
	const wildcard = "*.ipfs.mirror.example.test"
	ev := newEvents()
	m, err := tlsacme.New(tlsacme.Config{
		Names: []string{"mirror.example.test"}, DNSNames: []string{wildcard}, DNSProvider: provider, DNSResolvers: provider.Resolvers(),
		CA: pb.DirectoryURL, CARoots: pb.ACMERoots, Email: "ops@example.test", Storage: t.TempDir(), HTTPPort: port(httpLn), TLSPort: port(httpsLn),
	}, tlsacme.WithEvents(ev.on))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	serve(t, m, httpsLn, httpLn)
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	sub := "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi.ipfs.mirror.example.test"
	ev.wait(t, m, "mirror.example.test", sub)

	c := client(&tls.Config{RootCAs: pb.Roots}, httpsLn.Addr().String())
	resp, err := c.Get("https://" + sub + ":" + strconv.Itoa(port(httpsLn)) + "/")
	if err != nil {
		t.Fatalf("subdomain over HTTPS with only Pebble's root trusted: %v", err)
	}
	resp.Body.Close()
	if got := resp.TLS.PeerCertificates[0].DNSNames; !slices.Equal(got, []string{wildcard}) {
		t.Fatalf("subdomain served a certificate for %v, want the wildcard", got)
	}
	if applied, refused := ns.Updates(); applied < 1 || refused != 0 {
		t.Fatalf("name server saw %d updates applied, %d refused: DNS-01 records not set through it", applied, refused)
	}
	if o := pb.Ordered(); !slices.Contains(o, wildcard) {
		t.Fatalf("orders %v: no order for %s", o, wildcard)
	}
	for _, name := range []string{"a.b.ipfs.mirror.example.test", "evil.example.test"} {
		if conn, err := tls.Dial("tcp", httpsLn.Addr().String(), &tls.Config{ServerName: name, RootCAs: pb.Roots}); err == nil {
			conn.Close()
			t.Errorf("%s got a certificate", name)
		}
	}
}
