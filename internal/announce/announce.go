// Package announce decides the public HTTP URL a mirror announces in its
// signed statements: the URL browsers, light clients and retrieval probes
// use to reach it.
//
// The rules, in order:
//
//  1. An operator's public URL (--public-url) wins: it names the host
//     clients must use, and is checked by ParsePublicURL.
//  2. A listen address bound to one IP (127.0.0.1:8080, 192.0.2.1:80) is
//     announced as that address.
//  3. A wildcard listen address (0.0.0.0, [::], or no host) is never
//     announced: it would send every reader to their own machine. The
//     mirror announces the address that other peers observed it at (the
//     one most distinct observers agree on), and no HTTP URL until one
//     has. A node that can never be observed (no bootstrap, no discovery)
//     must refuse to start instead: see NeedsObservation.
//
// The package is pure: no network, no clock, no goroutines. The node feeds
// it observations and reads URL.
package announce

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Errors.
var (
	// ErrPublicURL: the --public-url value is not an absolute http(s) URL
	// of a host (an optional port, no path, query or credentials).
	ErrPublicURL = errors.New("announce: invalid public URL")
	// ErrWildcard: a wildcard listen address with no public URL and no way
	// for peers to observe the mirror.
	ErrWildcard = errors.New("announce: the HTTP listen address is a wildcard and no public URL is set")
)

// MaxObservers bounds the observations kept: one per observing peer; a
// flood of fresh peers cannot grow it further.
const MaxObservers = 256

// PublicURL is a parsed --public-url.
type PublicURL struct {
	// Scheme is "http" or "https".
	Scheme string
	// Host is the hostname or IP address, without port or brackets, lower
	// case.
	Host string
	// Port is the explicit port, or "" for the scheme's default.
	Port string
}

// String is the canonical URL: scheme://host[:port], no trailing slash.
func (p PublicURL) String() string {
	if p.Host == "" {
		return ""
	}
	h := p.Host
	if a, err := netip.ParseAddr(h); err == nil && a.Is6() {
		h = "[" + h + "]"
	}
	if p.Port != "" {
		h += ":" + p.Port
	}
	return p.Scheme + "://" + h
}

// IsName reports whether Host is a DNS name (not an IP address), so that
// {cid}.ipfs.HOST subdomains and certificates can exist for it.
func (p PublicURL) IsName() bool {
	_, err := netip.ParseAddr(p.Host)
	return p.Host != "" && err != nil
}

// ParsePublicURL parses and checks a --public-url value such as
// https://mirror.example.org or http://192.0.2.1:8080. Errors wrap
// ErrPublicURL and say what is wrong in one line.
func ParsePublicURL(s string) (PublicURL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return PublicURL{}, fmt.Errorf("%w: %q: %v", ErrPublicURL, s, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return PublicURL{}, fmt.Errorf("%w: %q: want http:// or https://", ErrPublicURL, s)
	case u.Host == "":
		return PublicURL{}, fmt.Errorf("%w: %q: no host", ErrPublicURL, s)
	case u.User != nil:
		return PublicURL{}, fmt.Errorf("%w: %q: credentials are not allowed", ErrPublicURL, s)
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "":
		return PublicURL{}, fmt.Errorf("%w: %q: want scheme://host[:port] with no path, query or fragment", ErrPublicURL, s)
	}
	host, port := u.Hostname(), u.Port()
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return PublicURL{}, fmt.Errorf("%w: %q: port %q out of range", ErrPublicURL, s, port)
		}
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.IsUnspecified() {
			return PublicURL{}, fmt.Errorf("%w: %q: %s is a wildcard, not an address others can reach", ErrPublicURL, s, host)
		}
		if a.Zone() != "" {
			return PublicURL{}, fmt.Errorf("%w: %q: a zoned address is not reachable from other machines", ErrPublicURL, s)
		}
		return PublicURL{Scheme: u.Scheme, Host: a.String(), Port: port}, nil
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if !ValidHostname(host) {
		return PublicURL{}, fmt.Errorf("%w: %q: %q is not a valid host name", ErrPublicURL, s, host)
	}
	return PublicURL{Scheme: u.Scheme, Host: host, Port: port}, nil
}

// ValidHostname reports whether h is a DNS host name: dot-separated labels
// of letters, digits and inner hyphens, each 1-63 bytes, 253 in all.
func ValidHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, l := range strings.Split(h, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// IsWildcard reports whether a listen address (HOST:PORT as given to
// --http, or as bound) accepts on every interface.
func IsWildcard(listen netip.AddrPort) bool {
	return !listen.Addr().IsValid() || listen.Addr().IsUnspecified()
}

// NeedsObservation reports the ErrWildcard start-up error: the listen
// address is a wildcard, no public URL is set, and the node has no way to
// meet a peer that could observe it (canMeetPeers: bootstrap, mDNS or the
// DHT). flag names the flag the operator should set.
func NeedsObservation(listen netip.AddrPort, publicURL string, canMeetPeers bool, flag string) error {
	if publicURL != "" || !IsWildcard(listen) || canMeetPeers {
		return nil
	}
	return fmt.Errorf("%w: set %s to the URL clients should use (e.g. https://mirror.example.org), or listen on one address", ErrWildcard, flag)
}

// Announcer holds the URL to announce. Safe for concurrent use.
type Announcer struct {
	scheme string
	port   uint16
	fixed  string // public URL or a concrete listen address: never changes

	mu  sync.Mutex
	obs map[string]netip.Addr // observer → the address it saw us at
}

// New returns an Announcer for a mirror whose HTTP side is bound to bound,
// with the operator's public URL (may be "").
func New(publicURL string, bound netip.AddrPort) (*Announcer, error) {
	a := &Announcer{scheme: "http", port: bound.Port(), obs: map[string]netip.Addr{}}
	if publicURL != "" {
		p, err := ParsePublicURL(publicURL)
		if err != nil {
			return nil, err
		}
		a.fixed = p.String()
		return a, nil
	}
	if !IsWildcard(bound) {
		a.fixed = "http://" + bound.String()
	}
	return a, nil
}

// Fixed reports whether the URL never changes (a public URL or a concrete
// listen address).
func (a *Announcer) Fixed() bool { return a.fixed != "" }

// Observe records that observer (a peer ID) saw this mirror at ip. It
// reports whether the announced URL changed. Unspecified, multicast and
// link-local addresses are ignored, as is a new observer once MaxObservers
// are known.
func (a *Announcer) Observe(observer string, ip netip.Addr) bool {
	if a.fixed != "" {
		return false
	}
	ip = ip.Unmap().WithZone("")
	if !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() || ip.IsLinkLocalUnicast() || ip.IsInterfaceLocalMulticast() {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	before := a.urlLocked()
	if _, ok := a.obs[observer]; !ok && len(a.obs) >= MaxObservers {
		return false
	}
	a.obs[observer] = ip
	return a.urlLocked() != before
}

// Forget drops observer's observation (it disconnected); reports whether
// the URL changed.
func (a *Announcer) Forget(observer string) bool {
	if a.fixed != "" {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	before := a.urlLocked()
	delete(a.obs, observer)
	return a.urlLocked() != before
}

// URL is the URL to announce now, or "" when none is known yet.
func (a *Announcer) URL() string {
	if a.fixed != "" {
		return a.fixed
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.urlLocked()
}

func (a *Announcer) urlLocked() string {
	ip, ok := best(a.obs)
	if !ok {
		return ""
	}
	return a.scheme + "://" + netip.AddrPortFrom(ip, a.port).String()
}

// best is the address the most observers agree on; ties go to the more
// widely reachable one (global, then private, then loopback), then the
// smaller address, so the choice is deterministic.
func best(obs map[string]netip.Addr) (netip.Addr, bool) {
	count := map[netip.Addr]int{}
	for _, ip := range obs {
		count[ip]++
	}
	if len(count) == 0 {
		return netip.Addr{}, false
	}
	ips := make([]netip.Addr, 0, len(count))
	for ip := range count {
		ips = append(ips, ip)
	}
	sort.Slice(ips, func(i, j int) bool {
		a, b := ips[i], ips[j]
		if count[a] != count[b] {
			return count[a] > count[b]
		}
		if reach(a) != reach(b) {
			return reach(a) > reach(b)
		}
		return a.Less(b)
	})
	return ips[0], true
}

func reach(ip netip.Addr) int {
	switch {
	case ip.IsLoopback():
		return 0
	case ip.IsPrivate():
		return 1
	default:
		return 2
	}
}
