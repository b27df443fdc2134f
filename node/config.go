package node

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/mirrornet/mirrornet/discovery"
	"github.com/mirrornet/mirrornet/internal/announce"
	"github.com/mirrornet/mirrornet/internal/apphost"
	"github.com/mirrornet/mirrornet/internal/dnsupdate"
	"github.com/mirrornet/mirrornet/internal/health"
	"github.com/mirrornet/mirrornet/internal/httpedge"
	"github.com/mirrornet/mirrornet/protocol"
)

// ErrConfig prefixes every configuration error.
var ErrConfig = errors.New("node: invalid config")

// Config is everything that shapes a node. It is plain data: build it with
// DefaultConfig, change fields, and New validates it.
type Config struct {
	// DataDir holds the identity key, node.json, the block store and the
	// admin socket. Created (mode 0700) if missing.
	DataDir string
	// Listen are libp2p listen multiaddrs. Default TCP and QUIC on 4001.
	Listen []string
	// HTTPAddr is the public, read-only HTTP side (gateway, status,
	// metrics, statements, badges). "" turns it off.
	HTTPAddr string
	// Bootstrap are mirrors to join through: multiaddrs ending in
	// /p2p/PEER-ID, or HTTP base URLs of mirrors (http://mirror-0:8080).
	Bootstrap []string
	// MDNS finds mirrors on the LAN. Default on.
	MDNS bool
	// DHT runs the mirrornet Kademlia DHT. Default on.
	DHT bool
	// Profile names the timer profile: local (tests, testnets), lan, wan.
	Profile string
	// Heartbeat and Health override the profile's timers when non-zero.
	Heartbeat time.Duration
	Health    health.Config
	// RefreshMin and RefreshRate override the profile's liveness refresh
	// pacing when non-zero (see health.Profile; benchmarks stretch them
	// with the other timers).
	RefreshMin  time.Duration
	RefreshRate float64
	// Follow are bundle CIDs or app IDs to keep, as if `mirrornet follow`
	// had been run at start-up. An app ID follows the app's releases.
	Follow []string
	// MaxStorage bounds the block store in bytes (0 = unlimited).
	MaxStorage int64
	// Region is a self-declared location label announced in liveness.
	Region string
	// SubdomainHosts are the hostnames whose {cid}.ipfs.HOST subdomains
	// serve apps on their own origin. Default ["localhost"].
	SubdomainHosts []string
	// ColocationWhitelist are CIDRs exempt from gossipsub's IP-colocation
	// penalty (P6): loopback and private ranges by default, so testnets
	// and compose networks are not punished.
	ColocationWhitelist []string
	// AnnounceHTTP is the older name of PublicURL (--announce-http); used
	// when PublicURL is empty.
	AnnounceHTTP string
	// PublicURL is the URL browsers, light clients and probes use to reach
	// this mirror (https://mirror.example.org), announced in its signed
	// statements. Its host also serves {cid}.ipfs.HOST subdomains. When
	// empty, a concrete HTTPAddr is announced; a wildcard one (0.0.0.0,
	// [::]) never is: the node announces the address peers observed, and
	// refuses to start when it could meet no peer (no bootstrap, mDNS or
	// DHT).
	PublicURL string
	// TrustedProxies are CIDRs (or single addresses) of reverse proxies
	// whose X-Forwarded-Host and X-Forwarded-Proto are believed. Default
	// none: the headers are dropped.
	TrustedProxies []string
	// HTTPSAddr is the HTTPS listen address (":443"), with certificates
	// from ACME for the public URL's host and every --app host. "" (the
	// default) turns HTTPS off.
	HTTPSAddr string
	// ACMECA is the ACME directory URL (default Let's Encrypt).
	ACMECA string
	// ACMEEmail is the ACME account's contact address (optional).
	ACMEEmail string
	// ACMECARoot is a PEM file of the roots trusted for the ACME server's
	// own TLS (a private CA such as Pebble or step-ca). Default: system.
	ACMECARoot string
	// TLSCert and TLSKey are PEM files of an operator-provided certificate,
	// typically *.ipfs.PUBLIC-HOST (which ACME issues only over DNS-01);
	// served for the names it covers.
	TLSCert, TLSKey string
	// ACMEDNS names the DNS provider that gets the wildcard certificate for
	// *.ipfs.PUBLIC-HOST over ACME DNS-01: "rfc2136" (dynamic updates,
	// TSIG-signed, to the zone's primary; see internal/dnsupdate). ""
	// (the default): no DNS-01, the subdomains need --tls-cert or stay
	// plain HTTP.
	ACMEDNS string
	// ACMEDNSConfig is the provider's JSON config file (server, TSIG key;
	// mode 0600, it holds a secret).
	ACMEDNSConfig string
	// Apps are --app HOST=APP-ID bindings: the mirror follows each app and
	// serves its current verified release at HOST, on its own origin.
	Apps []string
	// HTTPLimits overrides the HTTP server's timeouts and concurrency caps
	// (httpedge.DefaultConfig when nil). TrustedProxies above is applied
	// on top.
	HTTPLimits *httpedge.Config

	// ASNDB is an IP-to-ASN database (iptoasn TSV) used to place mirrors
	// in failure domains by autonomous system. Optional.
	ASNDB string
	// Labels is a file of "PEER-ID LABEL" lines naming failure domains by
	// hand (testnets, operators who know their racks). Optional.
	Labels string
	// ProbeK overrides the profile's number of independent observers (in
	// distinct failure domains) needed for "verified"; 0 keeps the
	// profile's (1 for local, 3 for lan and wan).
	ProbeK int
	// Auto makes the mirror follow, with spare space, bundles whose
	// effective redundancy is below RedundancyTarget and where it adds a
	// new failure domain.
	Auto bool
	// RedundancyTarget is the effective redundancy Auto aims for. Default 3.
	RedundancyTarget int
	// Payout maps a unit ("STX") to the address this mirror is paid at in
	// it, announced in a signed payout statement (see docs/PAYOUTS.md).
	Payout map[string]string

	// MaxMirrors caps the mirrors kept in the health view (default
	// 10,000). When full, strangers (mirrors this node has no evidence
	// for) are evicted first, and only by newcomers that rank above them.
	MaxMirrors int
	// MaxStatementBytes is the memory budget for the statements the view
	// keeps (default 16 MiB; see health.StatementCost).
	MaxStatementBytes int64
	// ConnsLow and ConnsHigh are the connection manager's water marks:
	// above ConnsHigh connections, the least useful are closed down to
	// ConnsLow. Defaults 64 and 192.
	ConnsLow, ConnsHigh int
}

// DefaultConfig is a mirror on the lan profile with TCP and QUIC on 4001
// and HTTP on 127.0.0.1:8080 (public exposure is the operator's choice).
func DefaultConfig() Config {
	home, _ := os.UserHomeDir()
	return Config{
		DataDir:           filepath.Join(home, ".mirrornet"),
		Listen:            []string{"/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"},
		HTTPAddr:          "127.0.0.1:8080",
		MDNS:              true,
		DHT:               true,
		Profile:           "lan",
		SubdomainHosts:    []string{"localhost"},
		RedundancyTarget:  3,
		MaxMirrors:        health.DefaultMaxMirrors,
		MaxStatementBytes: health.DefaultMaxBytes,
		ConnsLow:          64,
		ConnsHigh:         192,
		ColocationWhitelist: []string{
			"127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128", "fc00::/7",
		},
	}
}

// Validate checks every field and names the one that is wrong.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return fmt.Errorf("%w: data: empty data directory", ErrConfig)
	}
	if len(c.Listen) == 0 {
		return fmt.Errorf("%w: listen: no listen address", ErrConfig)
	}
	for _, s := range c.Listen {
		if _, err := ma.NewMultiaddr(s); err != nil {
			return fmt.Errorf("%w: listen: malformed multiaddr %q: %v", ErrConfig, s, err)
		}
	}
	if c.HTTPAddr != "" {
		host, _, err := net.SplitHostPort(c.HTTPAddr)
		if err != nil {
			return fmt.Errorf("%w: http: %q is not HOST:PORT: %v", ErrConfig, c.HTTPAddr, err)
		}
		if host == "" || net.ParseIP(host).IsUnspecified() {
			if err := announce.NeedsObservation(netip.AddrPort{}, c.publicURL(), len(c.Bootstrap) > 0 || c.MDNS || c.DHT, "--public-url"); err != nil {
				return fmt.Errorf("%w: http %s: %w", ErrConfig, c.HTTPAddr, err)
			}
		}
	}
	for _, f := range []struct{ name, v string }{{"public-url", c.PublicURL}, {"announce-http", c.AnnounceHTTP}} {
		if f.v == "" {
			continue
		}
		if _, err := announce.ParsePublicURL(f.v); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrConfig, f.name, err)
		}
	}
	apps, err := c.appBindings()
	if err != nil {
		return err
	}
	if c.HTTPSAddr != "" {
		if _, _, err := net.SplitHostPort(c.HTTPSAddr); err != nil {
			return fmt.Errorf("%w: https: %q is not HOST:PORT: %v", ErrConfig, c.HTTPSAddr, err)
		}
		if c.HTTPAddr == "" {
			return fmt.Errorf("%w: https: needs --http as well (ACME HTTP-01 challenges arrive there)", ErrConfig)
		}
		if len(c.tlsNames(apps)) == 0 && c.TLSCert == "" {
			return fmt.Errorf("%w: https: no host name to get a certificate for (set --public-url https://HOST or --app HOST=APP-ID)", ErrConfig)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return fmt.Errorf("%w: tls-cert and tls-key go together", ErrConfig)
	}
	if c.ACMEDNS != "" || c.ACMEDNSConfig != "" {
		if c.ACMEDNS != "rfc2136" {
			return fmt.Errorf("%w: acme-dns: unknown DNS provider %q (known: rfc2136)", ErrConfig, c.ACMEDNS)
		}
		if c.HTTPSAddr == "" {
			return fmt.Errorf("%w: acme-dns: needs --https", ErrConfig)
		}
		if len(c.dnsNames()) == 0 {
			return fmt.Errorf("%w: acme-dns: needs --public-url https://HOST (the wildcard is *.ipfs.HOST)", ErrConfig)
		}
		if c.ACMEDNSConfig == "" {
			return fmt.Errorf("%w: acme-dns: needs --acme-dns-config FILE (server and TSIG key)", ErrConfig)
		}
		if _, err := dnsupdate.LoadConfig(c.ACMEDNSConfig); err != nil {
			return fmt.Errorf("%w: acme-dns-config: %w", ErrConfig, err)
		}
	}
	for _, f := range []struct{ name, path string }{{"acme-ca-root", c.ACMECARoot}, {"tls-cert", c.TLSCert}, {"tls-key", c.TLSKey}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrConfig, f.name, err)
		}
	}
	if _, err := httpedge.ParseCIDRs(c.TrustedProxies); err != nil {
		return fmt.Errorf("%w: trusted-proxy: %w", ErrConfig, err)
	}
	if c.HTTPLimits != nil {
		if err := c.HTTPLimits.Validate(); err != nil {
			return fmt.Errorf("%w: http limits: %w", ErrConfig, err)
		}
	}
	if _, _, err := discovery.ParseBootstrap(c.Bootstrap); err != nil {
		return fmt.Errorf("%w: bootstrap: %w", ErrConfig, err)
	}
	if _, err := health.ProfileByName(c.Profile); err != nil {
		return fmt.Errorf("%w: profile: %w", ErrConfig, err)
	}
	if c.Heartbeat < 0 {
		return fmt.Errorf("%w: heartbeat: negative", ErrConfig)
	}
	if c.RefreshMin < 0 || c.RefreshRate < 0 {
		return fmt.Errorf("%w: refresh: negative", ErrConfig)
	}
	if c.Health != (health.Config{}) {
		if err := c.Health.Validate(); err != nil {
			return fmt.Errorf("%w: health: %w", ErrConfig, err)
		}
	}
	for _, f := range c.Follow {
		if protocol.IsAppID(f) {
			continue
		}
		if _, err := cid.Decode(f); err != nil {
			return fmt.Errorf("%w: follow: %q is neither a CID nor an app ID: %v", ErrConfig, f, err)
		}
	}
	if c.ProbeK < 0 {
		return fmt.Errorf("%w: probe-k: %d is negative", ErrConfig, c.ProbeK)
	}
	if c.RedundancyTarget < 0 {
		return fmt.Errorf("%w: redundancy-target: %d is negative", ErrConfig, c.RedundancyTarget)
	}
	for _, f := range []struct{ name, path string }{{"asn-db", c.ASNDB}, {"labels", c.Labels}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrConfig, f.name, err)
		}
	}
	if c.MaxStorage < 0 {
		return fmt.Errorf("%w: max-storage: negative", ErrConfig)
	}
	if c.MaxMirrors < 0 {
		return fmt.Errorf("%w: max-mirrors: %d is negative", ErrConfig, c.MaxMirrors)
	}
	if c.MaxStatementBytes < 0 {
		return fmt.Errorf("%w: max-statement-bytes: negative", ErrConfig)
	}
	if c.ConnsLow < 0 || c.ConnsHigh < 0 || (c.ConnsHigh > 0 && c.ConnsLow > c.ConnsHigh) {
		return fmt.Errorf("%w: conns-low %d / conns-high %d: want 0 <= low <= high", ErrConfig, c.ConnsLow, c.ConnsHigh)
	}
	for _, s := range c.ColocationWhitelist {
		if _, err := netip.ParsePrefix(s); err != nil {
			return fmt.Errorf("%w: colocation whitelist: %q: %v", ErrConfig, s, err)
		}
	}
	if len(c.Payout) > protocol.MaxPayoutAddresses {
		return fmt.Errorf("%w: payout: %d units, at most %d", ErrConfig, len(c.Payout), protocol.MaxPayoutAddresses)
	}
	for u, a := range c.Payout {
		if _, _, err := protocol.ParsePayoutFlag(u + "=" + a); err != nil {
			return fmt.Errorf("%w: payout: %v", ErrConfig, err)
		}
	}
	return nil
}

// appBindings parses Apps.
func (c *Config) appBindings() ([]apphost.Binding, error) {
	var out []apphost.Binding
	for _, s := range c.Apps {
		b, err := apphost.ParseBinding(s)
		if err != nil {
			return nil, fmt.Errorf("%w: app: %w", ErrConfig, err)
		}
		out = append(out, b)
	}
	if err := (apphost.Config{Apps: out}).Validate(); err != nil {
		return nil, fmt.Errorf("%w: app: %w", ErrConfig, err)
	}
	return out, nil
}

// tlsNames are the names HTTPS gets certificates for: the public URL's
// host (when it is a DNS name other than localhost) and every app host.
func (c *Config) tlsNames(apps []apphost.Binding) []string {
	var out []string
	if p, err := announce.ParsePublicURL(c.publicURL()); err == nil && p.IsName() && strings.Contains(p.Host, ".") {
		out = append(out, p.Host)
	}
	for _, b := range apps {
		out = append(out, b.Host)
	}
	return out
}

// dnsNames are the names HTTPS gets through DNS-01: *.ipfs.HOST for the
// public URL's host, when a DNS provider is set.
func (c *Config) dnsNames() []string {
	if c.ACMEDNS == "" {
		return nil
	}
	if p, err := announce.ParsePublicURL(c.publicURL()); err == nil && p.IsName() && strings.Contains(p.Host, ".") {
		return []string{"*.ipfs." + p.Host}
	}
	return nil
}

// publicURL is PublicURL, or the older AnnounceHTTP.
func (c *Config) publicURL() string {
	if c.PublicURL != "" {
		return c.PublicURL
	}
	return c.AnnounceHTTP
}

// profile resolves the timer profile with overrides applied.
func (c *Config) profile() health.Profile {
	p, _ := health.ProfileByName(c.Profile)
	if c.Heartbeat > 0 {
		p.Heartbeat = c.Heartbeat
	}
	if c.Health != (health.Config{}) {
		p.Health = c.Health
	}
	if c.RefreshMin > 0 {
		p.RefreshMin = c.RefreshMin
	}
	if c.RefreshRate > 0 {
		p.RefreshRate = c.RefreshRate
	}
	return p
}
