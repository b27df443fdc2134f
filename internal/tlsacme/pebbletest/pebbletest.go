// Package pebbletest runs Pebble, Let's Encrypt's test ACME server, in the
// test process on loopback: the real RFC 8555 server, nothing fetched from
// outside. Its issuing roots come from its management interface, as they
// would from the pebble binary's management port.
//
// Start does not validate challenges (PEBBLE_VA_ALWAYS_VALID=1): mirrors
// in tests share 127.0.0.1 and app names that resolve nowhere. StartWith
// a Resolver validates them for real, asking that DNS server (a
// dnsupdate/dnstest server on loopback) for TXT records (DNS-01) and for
// the addresses it connects to (HTTP-01 and TLS-ALPN-01, on the given
// ports). The ACME flow itself (account, order, authorization,
// finalisation, certificate download) is Pebble's own. Import this package
// from tests only.
package pebbletest

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
)

// Server is a running Pebble.
type Server struct {
	// DirectoryURL is the ACME directory (--acme-ca).
	DirectoryURL string
	// ACMERoots trust the ACME server's own TLS certificate.
	ACMERoots *x509.CertPool
	// ACMERootPEM is the same root as PEM (--acme-ca-root).
	ACMERootPEM []byte
	// Roots trust the certificates Pebble issues, and nothing else.
	Roots *x509.CertPool
	// RootPEM is Pebble's issuing root, as served at /roots/0.
	RootPEM []byte

	mu      sync.Mutex
	ordered []string
}

// Ordered returns every DNS name that appeared in a new order, in order.
func (s *Server) Ordered() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ordered...)
}

// Start runs Pebble until the test ends (MIRRORNET_PEBBLE_LOG=1 logs its
// requests to the test log), accepting every challenge. It sets Pebble's
// environment for the test (so the test must not be parallel).
func Start(t testing.TB) *Server { return StartWith(t, Options{}) }

// Options configure StartWith.
type Options struct {
	// Resolver (host:port, asked over TCP) makes Pebble validate
	// challenges for real, resolving names there. Empty: every challenge
	// passes unchecked.
	Resolver string
	// HTTPPort and TLSPort are where Pebble connects for HTTP-01 and
	// TLS-ALPN-01 validation (Pebble's defaults 5002 and 5001 if zero).
	HTTPPort, TLSPort int
}

// StartWith runs Pebble with o until the test ends.
func StartWith(t testing.TB, o Options) *Server {
	t.Helper()
	if st, ok := t.(interface{ Setenv(k, v string) }); ok {
		if o.Resolver == "" {
			st.Setenv("PEBBLE_VA_ALWAYS_VALID", "1")
		} else {
			st.Setenv("PEBBLE_VA_ALWAYS_VALID", "0")
		}
		st.Setenv("PEBBLE_VA_NOSLEEP", "1")
		st.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	}
	logger := log.New(io.Discard, "pebble ", 0)
	if os.Getenv("MIRRORNET_PEBBLE_LOG") != "" {
		logger = log.New(testWriter{t}, "pebble ", 0)
	}
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "default"}})
	validator := va.New(logger, o.HTTPPort, o.TLSPort, false, o.Resolver, store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 3, 5)

	s := &Server{}
	acme := httptest.NewUnstartedServer(s.record(front.Handler()))
	acme.StartTLS()
	t.Cleanup(acme.Close)
	mgmt := httptest.NewTLSServer(front.ManagementHandler())
	t.Cleanup(mgmt.Close)

	s.DirectoryURL = acme.URL + wfe.DirectoryPath
	s.ACMERoots = x509.NewCertPool()
	s.ACMERoots.AddCert(acme.Certificate())
	s.ACMERootPEM = pemCert(acme.Certificate().Raw)

	resp, err := mgmt.Client().Get(mgmt.URL + wfe.RootCertPath + "0")
	if err != nil {
		t.Fatalf("pebble: fetch root: %v", err)
	}
	defer resp.Body.Close()
	s.RootPEM, err = io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("pebble: fetch root: %d %v", resp.StatusCode, err)
	}
	s.Roots = x509.NewCertPool()
	if !s.Roots.AppendCertsFromPEM(s.RootPEM) {
		t.Fatalf("pebble: root is not PEM: %q", s.RootPEM)
	}
	return s
}

// record notes the names of every new order.
func (s *Server) record(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// /order-plz is Pebble's new-order path.
		if r.Method == http.MethodPost && r.URL.Path == "/order-plz" {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(strings.NewReader(string(body)))
			var jws struct{ Payload string }
			var order struct {
				Identifiers []struct{ Value string }
			}
			if json.Unmarshal(body, &jws) == nil {
				if p, err := base64.RawURLEncoding.DecodeString(jws.Payload); err == nil && json.Unmarshal(p, &order) == nil {
					s.mu.Lock()
					for _, id := range order.Identifiers {
						s.ordered = append(s.ordered, id.Value)
					}
					s.mu.Unlock()
				}
			}
		}
		h.ServeHTTP(w, r)
	})
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func pemCert(der []byte) []byte {
	var b strings.Builder
	b.WriteString("-----BEGIN CERTIFICATE-----\n")
	enc := base64.StdEncoding.EncodeToString(der)
	for len(enc) > 64 {
		b.WriteString(enc[:64] + "\n")
		enc = enc[64:]
	}
	b.WriteString(enc + "\n-----END CERTIFICATE-----\n")
	return []byte(b.String())
}
