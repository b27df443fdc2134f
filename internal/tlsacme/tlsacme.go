// Package tlsacme gives a mirror automatic HTTPS: certificates from an ACME
// CA (Let's Encrypt by default, any RFC 8555 server with --acme-ca) for the
// mirror's public host and every --app host, through certmagic.
//
// What it guarantees:
//
//   - Certificates only for configured names. certmagic's on-demand
//     issuance is off: a TLS handshake for any other SNI gets no
//     certificate and starts no ACME order, so a host name that merely
//     resolves to the mirror costs the operator nothing at the CA.
//   - Challenges: HTTP-01 through HTTPHandler (wrap the port-80 handler
//     with it) and TLS-ALPN-01 through TLSConfig (the acme-tls/1 protocol
//     on the HTTPS listener). The solvers never open listeners of their
//     own when the mirror already serves those ports.
//   - {cid}.ipfs.PUBLIC-HOST subdomains need a wildcard certificate, which
//     ACME issues only through DNS-01: with Config.DNSNames and a
//     DNSProvider (internal/dnsupdate: RFC 2136 updates to the operator's
//     own name server) it is obtained and renewed here, through DNS-01
//     for those names only (the other names keep HTTP-01 and
//     TLS-ALPN-01, since an --app host's zone is not the operator's);
//     or the operator provides it (Config.WildcardCert/WildcardKey, from
//     their own DNS-01 tooling). Without either the subdomains are served
//     over plain HTTP only.
//   - State in the data directory: certificates, keys and the ACME account
//     live under Config.Storage (DATA/acme), so a restart reuses them and
//     does not hit CA rate limits.
//
// Manager owns certmagic's maintenance goroutine (renewals); Close stops it.
package tlsacme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/mirrornet/mirrornet/internal/announce"
)

// Errors.
var (
	// ErrConfig wraps every Validate error.
	ErrConfig = errors.New("tlsacme: invalid config")
	// ErrUnknownName: a TLS handshake named a host this mirror has no
	// certificate for and will not request one for.
	ErrUnknownName = errors.New("tlsacme: no certificate for this server name")
)

// LetsEncrypt is the default ACME directory.
const LetsEncrypt = certmagic.LetsEncryptProductionCA

// Config says which names get certificates and from where.
type Config struct {
	// Names get certificates from the CA: the public host and the --app
	// hosts. Lower case, no port, no wildcards.
	Names []string
	// CA is the ACME directory URL. Default LetsEncrypt.
	CA string
	// Email is the ACME account's contact (optional, recommended: the CA
	// warns about expiring certificates).
	Email string
	// CARoots, if set, are the only roots trusted for the ACME server's own
	// TLS certificate (a private CA such as Pebble or step-ca). Default:
	// the system roots.
	CARoots *x509.CertPool
	// Storage is the directory for certificates, keys and the account.
	Storage string
	// WildcardCert and WildcardKey are PEM files of an operator-provided
	// certificate (typically *.ipfs.PUBLIC-HOST); it is served for the
	// names it covers and never renewed here. Optional, both or neither.
	WildcardCert, WildcardKey string
	// HTTPPort and TLSPort are the ports the mirror serves HTTP and HTTPS
	// on, where the CA's validation arrives (80 and 443 behind a port
	// forward, other ports in tests).
	HTTPPort, TLSPort int
	// DNSNames get certificates through DNS-01 challenges, whose TXT
	// records DNSProvider sets: typically "*.ipfs." + the public host.
	// Each is a wildcard ("*." and a host name). Optional; needs
	// DNSProvider.
	DNSNames []string
	// DNSProvider sets and removes the challenges' TXT records.
	DNSProvider certmagic.DNSProvider
	// DNSResolvers (host:port) are asked for the zone of a challenge name
	// and whether its record has propagated. Default: the system's
	// resolvers, then the zone's authoritative servers.
	DNSResolvers []string
}

// Validate names the first invalid field.
func (c Config) Validate() error {
	if c.Storage == "" {
		return fmt.Errorf("%w: no storage directory", ErrConfig)
	}
	for _, n := range c.Names {
		if n != strings.ToLower(n) || !announce.ValidHostname(n) || !strings.Contains(n, ".") {
			return fmt.Errorf("%w: %q is not a host name a CA can issue for", ErrConfig, n)
		}
	}
	if (c.WildcardCert == "") != (c.WildcardKey == "") {
		return fmt.Errorf("%w: a wildcard certificate needs both its certificate and its key file", ErrConfig)
	}
	for _, n := range c.DNSNames {
		host, ok := strings.CutPrefix(n, "*.")
		if !ok || n != strings.ToLower(n) || !announce.ValidHostname(host) || !strings.Contains(host, ".") {
			return fmt.Errorf("%w: DNS-01 name %q is not a wildcard a CA can issue for (want *.HOST)", ErrConfig, n)
		}
	}
	if len(c.DNSNames) > 0 && c.DNSProvider == nil {
		return fmt.Errorf("%w: DNS-01 names %v need a DNS provider", ErrConfig, c.DNSNames)
	}
	if len(c.Names) == 0 && c.WildcardCert == "" && len(c.DNSNames) == 0 {
		return fmt.Errorf("%w: no names to serve over HTTPS (set a https public URL, --app hosts or a certificate)", ErrConfig)
	}
	return nil
}

// Option sets an optional dependency.
type Option func(*options)

type options struct {
	log     *zap.Logger
	onEvent func(event string, data map[string]any)
}

// WithEvents calls f with certmagic's events ("cert_obtained",
// "cert_failed", ...); tests wait on it. f must not block.
func WithEvents(f func(event string, data map[string]any)) Option {
	return func(o *options) { o.onEvent = f }
}

// Manager obtains, renews and serves the certificates.
type Manager struct {
	cfg    Config
	cache  *certmagic.Cache
	magic  *certmagic.Config
	issuer *certmagic.ACMEIssuer
	names  map[string]bool
	// magicDNS obtains the DNS-01 names, with an issuer that solves
	// DNS-01 only; nil without DNS names.
	magicDNS *certmagic.Config
	dnsNames map[string]bool

	closeOnce sync.Once
}

// New builds a Manager; Start begins obtaining certificates.
func New(cfg Config, opts ...Option) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := options{log: zap.NewNop()}
	for _, opt := range opts {
		opt(&o)
	}
	if cfg.CA == "" {
		cfg.CA = LetsEncrypt
	}
	m := &Manager{cfg: cfg, names: map[string]bool{}, dnsNames: map[string]bool{}}
	for _, n := range cfg.Names {
		m.names[n] = true
	}
	for _, n := range cfg.DNSNames {
		m.dnsNames[n] = true
	}
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		// Renewals go through the config that obtained the certificate.
		GetConfigForCert: func(c certmagic.Certificate) (*certmagic.Config, error) {
			if m.magicDNS != nil && slices.ContainsFunc(c.Names, func(n string) bool { return m.dnsNames[n] }) {
				return m.magicDNS, nil
			}
			return m.magic, nil
		},
		Logger: o.log,
	})
	newConfig := func() *certmagic.Config {
		return certmagic.New(m.cache, certmagic.Config{
			Storage: &certmagic.FileStorage{Path: cfg.Storage},
			Logger:  o.log,
			OnEvent: func(_ context.Context, event string, data map[string]any) error {
				if o.onEvent != nil {
					o.onEvent(event, data)
				}
				return nil
			},
		})
	}
	m.magic = newConfig()
	m.issuer = certmagic.NewACMEIssuer(m.magic, certmagic.ACMEIssuer{
		CA:             cfg.CA,
		Email:          cfg.Email,
		Agreed:         true,
		TrustedRoots:   cfg.CARoots,
		AltHTTPPort:    cfg.HTTPPort,
		AltTLSALPNPort: cfg.TLSPort,
		Logger:         o.log,
	})
	m.magic.Issuers = []certmagic.Issuer{m.issuer}
	// Never issue for a name that is not configured, whatever SNI says.
	m.magic.OnDemand = nil
	if len(cfg.DNSNames) > 0 {
		m.magicDNS = newConfig()
		m.magicDNS.Issuers = []certmagic.Issuer{certmagic.NewACMEIssuer(m.magicDNS, certmagic.ACMEIssuer{
			CA:           cfg.CA,
			Email:        cfg.Email,
			Agreed:       true,
			TrustedRoots: cfg.CARoots,
			Logger:       o.log,
			// Setting a DNS-01 solver makes this issuer solve DNS-01 only.
			DNS01Solver: &certmagic.DNS01Solver{DNSManager: certmagic.DNSManager{
				DNSProvider: cfg.DNSProvider,
				Resolvers:   slices.Clone(cfg.DNSResolvers),
				Logger:      o.log,
			}},
		})}
		m.magicDNS.OnDemand = nil
	}
	return m, nil
}

// Start loads the wildcard certificate, if any, and starts obtaining (or
// loading from storage) a certificate for every name; it does not wait for
// the CA. Renewals run until Close.
func (m *Manager) Start(ctx context.Context) error {
	if m.cfg.WildcardCert != "" {
		if _, err := m.magic.CacheUnmanagedCertificatePEMFile(ctx, m.cfg.WildcardCert, m.cfg.WildcardKey, nil); err != nil {
			return fmt.Errorf("tlsacme: load certificate %s: %w", m.cfg.WildcardCert, err)
		}
	}
	if len(m.cfg.Names) > 0 {
		if err := m.magic.ManageAsync(ctx, slices.Clone(m.cfg.Names)); err != nil {
			return fmt.Errorf("tlsacme: manage certificates for %v: %w", m.cfg.Names, err)
		}
	}
	if m.magicDNS != nil {
		if err := m.magicDNS.ManageAsync(ctx, slices.Clone(m.cfg.DNSNames)); err != nil {
			return fmt.Errorf("tlsacme: manage certificates for %v (DNS-01): %w", m.cfg.DNSNames, err)
		}
	}
	return nil
}

// TLSConfig is the HTTPS listener's configuration: certificates for the
// configured names (and the provided wildcard), TLS-ALPN-01 challenges,
// HTTP/2 and HTTP/1.1.
func (m *Manager) TLSConfig() *tls.Config {
	tc := m.magic.TLSConfig()
	get := tc.GetCertificate
	tc.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		// A challenge handshake (acme-tls/1) is answered by certmagic for
		// names it is solving; any other handshake must name a host this
		// mirror serves.
		name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
		if !slices.Contains(hello.SupportedProtos, "acme-tls/1") && !m.names[name] && !m.coveredByWildcard(name) {
			return nil, fmt.Errorf("%w: %q", ErrUnknownName, name)
		}
		return get(hello)
	}
	tc.NextProtos = append(tc.NextProtos, "h2", "http/1.1")
	tc.MinVersion = tls.VersionTLS12
	return tc
}

// Has reports whether a valid certificate for name is loaded and served
// (issued, loaded from storage, or the provided wildcard).
func (m *Manager) Has(name string) bool {
	for _, c := range m.cache.AllMatchingCertificates(strings.ToLower(name)) {
		if !c.Expired() {
			return true
		}
	}
	return false
}

// coveredByWildcard reports whether the provided certificate, or a
// DNS-01 wildcard name, covers name.
func (m *Manager) coveredByWildcard(name string) bool {
	if _, parent, ok := strings.Cut(name, "."); ok && m.dnsNames["*."+parent] {
		return true
	}
	if m.cfg.WildcardCert == "" {
		return false
	}
	for _, c := range m.cache.AllMatchingCertificates(name) {
		if !c.Expired() {
			return true
		}
	}
	return false
}

// HTTPHandler answers HTTP-01 challenges for the configured names and
// passes every other request to next.
func (m *Manager) HTTPHandler(next http.Handler) http.Handler {
	return m.issuer.HTTPChallengeHandler(next)
}

// Close stops renewals. Safe to call more than once.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() { m.cache.Stop() })
	return nil
}
