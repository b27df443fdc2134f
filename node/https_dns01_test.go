package node

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mirrornet/mirrornet/internal/dnsupdate/dnstest"
	"github.com/mirrornet/mirrornet/internal/tlsacme/pebbletest"
	"github.com/mirrornet/mirrornet/protocol"
)

// freeTCPPort returns a loopback port that was free a moment ago (Pebble
// must know where to validate HTTP-01 before the mirror starts).
func freeTCPPort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// --acme-dns rfc2136: a mirror gets the wildcard certificate for its
// {cid}.ipfs. subdomains over DNS-01, by TSIG-signed updates to the
// zone's name server, from Pebble validating every challenge for real
// (the public host over HTTP-01 too); a client that trusts only Pebble's
// root then opens a bundle on its own HTTPS origin.
func TestSubdomainsOverHTTPSWithDNS01(t *testing.T) {
	ns := dnstest.Start(t, "example.test")
	httpAddr, httpsAddr := freeTCPPort(t), freeTCPPort(t)
	port := func(a string) int {
		_, p, _ := net.SplitHostPort(a)
		var n int
		fmt.Sscan(p, &n)
		return n
	}
	pb := pebbletest.StartWith(t, pebbletest.Options{Resolver: ns.Addr, HTTPPort: port(httpAddr), TLSPort: port(httpsAddr)})
	dir := t.TempDir()
	rootFile := filepath.Join(dir, "pebble-acme.pem")
	if err := os.WriteFile(rootFile, pb.ACMERootPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	dnsFile := filepath.Join(dir, "dns.json")
	conf := fmt.Sprintf(`{"server":%q,"tsig_key":%q,"tsig_secret":%q}`, ns.Addr, ns.KeyName, ns.Secret)
	if err := os.WriteFile(dnsFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}

	cfg := testConfig(t)
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.HTTPAddr, cfg.HTTPSAddr = httpAddr, httpsAddr
	cfg.PublicURL = "https://mirror.example.test"
	cfg.ACMECA, cfg.ACMECARoot, cfg.ACMEEmail = pb.DirectoryURL, rootFile, "ops@example.test"
	cfg.ACMEDNS, cfg.ACMEDNSConfig = "rfc2136", dnsFile
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	res := publish(t, n, writeTree(t))
	sub := res.CID + ".ipfs.mirror.example.test"
	waitFor(t, 2*time.Minute, "certificates", func() (bool, string) {
		return n.https.acme.Has("mirror.example.test") && n.https.acme.Has(sub), fmt.Sprintf("orders so far: %v", pb.Ordered())
	})
	resp, err := httpsClient(&tls.Config{RootCAs: pb.Roots}, n.HTTPSAddr()).Get("https://" + sub + "/")
	if err != nil {
		t.Fatalf("subdomain over HTTPS with only Pebble's root trusted: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte("<title>app</title>")) {
		t.Fatalf("subdomain: %d %q", resp.StatusCode, body)
	}
	if got := resp.TLS.PeerCertificates[0].DNSNames; len(got) != 1 || got[0] != "*.ipfs.mirror.example.test" {
		t.Fatalf("subdomain served a certificate for %v", got)
	}
	if applied, _ := ns.Updates(); applied == 0 {
		t.Fatal("no DNS update reached the name server")
	}
}

// A malformed DNS-01 setup is a one-line error at start-up that names
// the flag.
func TestACMEDNSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "dns.json")
	os.WriteFile(good, []byte(`{"server":"192.0.2.1","tsig_key":"k","tsig_secret":"c2VjcmV0"}`), 0o600)
	open := filepath.Join(dir, "open.json")
	os.WriteFile(open, []byte(`{"server":"192.0.2.1"}`), 0o644)
	for _, c := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"unknown provider", func(c *Config) { c.ACMEDNS = "route53" }, "unknown DNS provider"},
		{"no https", func(c *Config) { c.HTTPSAddr = "" }, "needs --https"},
		{"no public host", func(c *Config) {
			c.PublicURL = ""
			c.Apps = []string{"app.example.test=" + protocol.DeriveAppID("x", protocol.MaintainerSet{Keys: []string{"k"}, Threshold: 1})}
		}, "needs --public-url"},
		{"no config", func(c *Config) { c.ACMEDNSConfig = "" }, "needs --acme-dns-config"},
		{"readable secret", func(c *Config) { c.ACMEDNSConfig = open }, "chmod 600"},
	} {
		cfg := testConfig(t)
		cfg.HTTPAddr, cfg.HTTPSAddr = "127.0.0.1:0", "127.0.0.1:0"
		cfg.PublicURL = "https://mirror.example.test"
		cfg.ACMEDNS, cfg.ACMEDNSConfig = "rfc2136", good
		c.edit(&cfg)
		err := cfg.Validate()
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "acme-dns") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v; want one line naming acme-dns and %q", c.name, err, c.want)
		}
	}
}
