// Package dnsupdate changes DNS records with RFC 2136 dynamic updates,
// signed with a TSIG key (RFC 8945): the standard interface of
// authoritative DNS servers (BIND, Knot DNS, PowerDNS, CoreDNS's
// plugins, Windows DNS), and the one a mirror operator can point at
// their own zone without a provider-specific API.
//
// A Provider is a libdns provider (AppendRecords, DeleteRecords), which
// is what certmagic's DNS-01 solver takes: internal/tlsacme uses it to
// get the wildcard certificate for a mirror's {cid}.ipfs. subdomains.
//
// Configuration comes from a JSON file (LoadConfig):
//
//	{
//	  "server": "ns1.example.org:53",
//	  "tsig_key": "mirror-acme.",
//	  "tsig_algorithm": "hmac-sha256",
//	  "tsig_secret": "base64...",
//	  "resolvers": ["ns1.example.org:53"]
//	}
//
// server is the zone's primary, which accepts updates; the TSIG fields
// name the key the server allows to update the zone (BIND:
// `update-policy { grant mirror-acme. name _acme-challenge.ipfs.mirror.example.org. TXT; };`
// or a wildcard grant for the subdomains); resolvers, optional, are where
// the zone and the record's propagation are checked (default: server).
package dnsupdate

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/libdns/libdns"
	"github.com/miekg/dns"
)

// Errors.
var (
	// ErrConfig wraps every configuration error.
	ErrConfig = errors.New("dnsupdate: invalid config")
	// ErrRefused: the server answered the update with an error code.
	ErrRefused = errors.New("dnsupdate: server refused the update")
	// ErrRecord: a record cannot be expressed as a DNS resource record.
	ErrRecord = errors.New("dnsupdate: bad record")
)

// MaxConfigSize bounds what LoadConfig reads.
const MaxConfigSize = 64 << 10

// DefaultTimeout bounds one update exchange.
const DefaultTimeout = 10 * time.Second

// Algorithms are the TSIG algorithms accepted, by the names BIND's
// `tsig-keygen -a` uses.
var Algorithms = map[string]string{
	"hmac-sha256": dns.HmacSHA256,
	"hmac-sha384": dns.HmacSHA384,
	"hmac-sha512": dns.HmacSHA512,
	"hmac-sha224": dns.HmacSHA224,
}

// Config is where and how updates are sent.
type Config struct {
	// Server is the zone's primary name server, host:port (port 53 if
	// left out).
	Server string `json:"server"`
	// TSIGKey is the key's name; empty sends unsigned updates (only for
	// a server that allows them from this address).
	TSIGKey string `json:"tsig_key,omitempty"`
	// TSIGAlgorithm is one of Algorithms; default hmac-sha256.
	TSIGAlgorithm string `json:"tsig_algorithm,omitempty"`
	// TSIGSecret is the key's secret, base64 (as in a BIND key file).
	TSIGSecret string `json:"tsig_secret,omitempty"`
	// Resolvers are the name servers (host:port) asked for the zone and
	// the record's propagation; default: Server.
	Resolvers []string `json:"resolvers,omitempty"`
}

// Validate names the first invalid field and fills defaults.
func (c *Config) Validate() error {
	if c.Server == "" {
		return fmt.Errorf("%w: server is empty", ErrConfig)
	}
	c.Server = withPort(c.Server)
	if _, _, err := net.SplitHostPort(c.Server); err != nil {
		return fmt.Errorf("%w: server %q: %v", ErrConfig, c.Server, err)
	}
	if c.TSIGAlgorithm == "" {
		c.TSIGAlgorithm = "hmac-sha256"
	}
	c.TSIGAlgorithm = strings.TrimSuffix(strings.ToLower(c.TSIGAlgorithm), ".")
	if _, ok := Algorithms[c.TSIGAlgorithm]; !ok {
		return fmt.Errorf("%w: tsig_algorithm %q is not one of hmac-sha256, hmac-sha384, hmac-sha512, hmac-sha224", ErrConfig, c.TSIGAlgorithm)
	}
	if (c.TSIGKey == "") != (c.TSIGSecret == "") {
		return fmt.Errorf("%w: tsig_key and tsig_secret go together", ErrConfig)
	}
	if c.TSIGKey != "" {
		c.TSIGKey = dns.CanonicalName(c.TSIGKey)
		if _, ok := dns.IsDomainName(c.TSIGKey); !ok {
			return fmt.Errorf("%w: tsig_key %q is not a domain name", ErrConfig, c.TSIGKey)
		}
		if _, err := base64.StdEncoding.DecodeString(c.TSIGSecret); err != nil {
			return fmt.Errorf("%w: tsig_secret is not base64", ErrConfig)
		}
	}
	if len(c.Resolvers) == 0 {
		c.Resolvers = []string{c.Server}
	}
	for i, r := range c.Resolvers {
		c.Resolvers[i] = withPort(r)
		if _, _, err := net.SplitHostPort(c.Resolvers[i]); err != nil {
			return fmt.Errorf("%w: resolver %q: %v", ErrConfig, r, err)
		}
	}
	return nil
}

func withPort(s string) string {
	if _, _, err := net.SplitHostPort(s); err == nil {
		return s
	}
	return net.JoinHostPort(strings.Trim(s, "[]"), "53")
}

// LoadConfig reads and validates a JSON config file. The file holds a
// secret: one that group or others can read is refused.
func LoadConfig(path string) (Config, error) {
	var c Config
	f, err := os.Open(path)
	if err != nil {
		return c, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return c, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return c, fmt.Errorf("%w: %s has mode %04o and holds a TSIG secret (run 'chmod 600 %s')", ErrConfig, path, st.Mode().Perm(), path)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxConfigSize+1))
	if err != nil {
		return c, fmt.Errorf("%w: read %s: %v", ErrConfig, path, err)
	}
	if len(b) > MaxConfigSize {
		return c, fmt.Errorf("%w: %s is larger than %d bytes", ErrConfig, path, MaxConfigSize)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("%w: %s: %v", ErrConfig, path, err)
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Provider sends updates for records of the zones its server is primary
// for. Safe for concurrent use.
type Provider struct {
	cfg Config
}

// New returns a Provider for cfg.
func New(cfg Config) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Provider{cfg: cfg}, nil
}

// Resolvers are where the zone and propagation are checked.
func (p *Provider) Resolvers() []string { return append([]string(nil), p.cfg.Resolvers...) }

// AppendRecords adds recs to zone in one update and returns them.
func (p *Provider) AppendRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	rrs, err := toRRs(zone, recs)
	if err != nil {
		return nil, err
	}
	m := new(dns.Msg)
	m.SetUpdate(dns.Fqdn(zone))
	m.Insert(rrs)
	if err := p.exchange(ctx, m); err != nil {
		return nil, err
	}
	return recs, nil
}

// DeleteRecords removes exactly recs (name, type and data) from zone in
// one update and returns them.
func (p *Provider) DeleteRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	rrs, err := toRRs(zone, recs)
	if err != nil {
		return nil, err
	}
	m := new(dns.Msg)
	m.SetUpdate(dns.Fqdn(zone))
	m.Remove(rrs)
	if err := p.exchange(ctx, m); err != nil {
		return nil, err
	}
	return recs, nil
}

func (p *Provider) exchange(ctx context.Context, m *dns.Msg) error {
	c := &dns.Client{Net: "tcp", Timeout: DefaultTimeout}
	if p.cfg.TSIGKey != "" {
		c.TsigSecret = map[string]string{p.cfg.TSIGKey: p.cfg.TSIGSecret}
		m.SetTsig(p.cfg.TSIGKey, Algorithms[p.cfg.TSIGAlgorithm], 300, time.Now().Unix())
	}
	resp, _, err := c.ExchangeContext(ctx, m, p.cfg.Server)
	if err != nil {
		return fmt.Errorf("dnsupdate: update %s at %s: %w", m.Question[0].Name, p.cfg.Server, err)
	}
	if resp.Rcode != dns.RcodeSuccess {
		return fmt.Errorf("%w: update of zone %s at %s: %s", ErrRefused, m.Question[0].Name, p.cfg.Server, dns.RcodeToString[resp.Rcode])
	}
	return nil
}

// toRRs turns libdns records into resource records in zone. TXT data is
// split into strings of at most 255 bytes; other types are parsed from
// their presentation form.
func toRRs(zone string, recs []libdns.Record) ([]dns.RR, error) {
	zone = dns.Fqdn(zone)
	out := make([]dns.RR, 0, len(recs))
	for _, r := range recs {
		rr := r.RR()
		name := dns.Fqdn(libdns.AbsoluteName(rr.Name, zone))
		ttl := uint32(rr.TTL / time.Second)
		hdr := dns.RR_Header{Name: name, Class: dns.ClassINET, Ttl: ttl}
		if strings.EqualFold(rr.Type, "TXT") {
			hdr.Rrtype = dns.TypeTXT
			out = append(out, &dns.TXT{Hdr: hdr, Txt: splitTXT(rr.Data)})
			continue
		}
		parsed, err := dns.NewRR(fmt.Sprintf("%s %d IN %s %s", name, ttl, rr.Type, rr.Data))
		if err != nil || parsed == nil {
			return nil, fmt.Errorf("%w: %s %s %q: %v", ErrRecord, name, rr.Type, rr.Data, err)
		}
		out = append(out, parsed)
	}
	return out, nil
}

func splitTXT(s string) []string {
	if s == "" {
		return []string{""}
	}
	var out []string
	for len(s) > 255 {
		out = append(out, s[:255])
		s = s[255:]
	}
	return append(out, s)
}

var _ interface {
	libdns.RecordAppender
	libdns.RecordDeleter
} = (*Provider)(nil)
