// Package apphost routes a mirror's HTTP requests by host name: app domains
// (--app app.example.org=APP-ID) serve the app's current verified release
// on their own origin, {cid}.ipfs.PUBLIC-HOST subdomains serve held bundles
// on theirs, the mirror's own host names get the mirror's pages and the
// path gateway, and a host name nobody configured gets 404 (never another
// app, and never a certificate: see internal/tlsacme).
//
// Every app origin (an app host or a {cid}.ipfs subdomain) also answers:
//
//   - trustless requests (/ipfs/{cid}?format=raw|car, or Accept naming
//     application/vnd.ipld.raw or .car) as the path gateway does, with
//     CORS headers, so an app's own page or service worker can fetch and
//     verify data from the origin it runs on;
//   - routes added with Router.HandleOrigin (for example /.mirrornet/ and
//     /mirrornet-sw.js), served before the app's own files.
//
// Which release an app host serves is decided once per request by the
// Releases given to New: a newer release replaces the old one atomically,
// between two requests, once it is held. The answers for an app host's
// small files are kept per release root and path (content-addressed, so
// they never go stale; see pagecache.go): a page load costs what a static
// file server's does, not a DAG walk and block reads per request.
package apphost

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/ipfs/go-cid"

	"github.com/mirrornet/mirrornet/internal/announce"
	"github.com/mirrornet/mirrornet/protocol"
)

// Errors.
var (
	// ErrBinding: a malformed --app value.
	ErrBinding = errors.New("apphost: invalid --app")
	// ErrUnknownHost: the request names a host this mirror does not serve.
	ErrUnknownHost = errors.New("apphost: unknown host name")
	// ErrNoRelease: the app's release is not held here yet.
	ErrNoRelease = errors.New("apphost: no release of this app is held here yet")
	// ErrConfig: an invalid Config.
	ErrConfig = errors.New("apphost: invalid config")
)

// Binding is one --app HOST=APP-ID: the app served at a host name.
type Binding struct {
	Host string // lower case, no port
	App  string // protocol app ID
}

// ParseBinding parses HOST=APP-ID (app.example.org=APP-ID). Errors wrap
// ErrBinding and fit on one line.
func ParseBinding(s string) (Binding, error) {
	host, app, ok := strings.Cut(s, "=")
	if !ok {
		return Binding{}, fmt.Errorf("%w: %q: want HOST=APP-ID, e.g. app.example.org=APP-ID", ErrBinding, s)
	}
	host = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(host), "."))
	app = strings.TrimSpace(app)
	if _, err := netip.ParseAddr(host); err == nil || !announce.ValidHostname(host) || !strings.Contains(host, ".") && host != "localhost" {
		return Binding{}, fmt.Errorf("%w: %q: %q is not a host name (want e.g. app.example.org)", ErrBinding, s, host)
	}
	if !protocol.IsAppID(app) {
		return Binding{}, fmt.Errorf("%w: %q: %q is not an app ID", ErrBinding, s, abbrev(app))
	}
	return Binding{Host: host, App: app}, nil
}

// Releases says which bundle an app host serves now: the newest release of
// app that is verified and held here. It is called once per request, must
// be cheap and safe for concurrent use.
type Releases interface {
	Current(app string) (cid.Cid, bool)
}

// Gateway is what the router needs of internal/gateway.
type Gateway interface {
	// Handler serves /ipfs/ paths and {cid}.ipfs.HOST subdomains of its
	// subdomain hosts, and passes everything else to next.
	Handler(next http.Handler) http.Handler
	// ServeRoot serves r as the bundle root on r's own origin.
	ServeRoot(w http.ResponseWriter, r *http.Request, root cid.Cid)
	// ServePath serves r as a path-gateway request, with CORS headers.
	ServePath(w http.ResponseWriter, r *http.Request)
}

// Config is the router's configuration.
type Config struct {
	// Hosts are the mirror's own host names (no port): its public URL's
	// host, localhost, names it is reached by. {cid}.ipfs.HOST of each is
	// an app origin when the gateway serves that host's subdomains.
	Hosts []string
	// Apps are the --app bindings.
	Apps []Binding
	// Strict refuses host names not in Hosts or Apps (and not their
	// subdomains, and not IP addresses) with 404. A mirror with a public
	// URL or apps is strict; one without accepts any name, as a private
	// mirror behind whatever name its operator uses.
	Strict bool
}

// Validate checks the bindings: each host once, no app host that is also
// one of the mirror's own hosts.
func (c Config) Validate() error {
	own := map[string]bool{}
	for _, h := range c.Hosts {
		own[strings.ToLower(h)] = true
	}
	seen := map[string]bool{}
	for _, b := range c.Apps {
		switch {
		case b.Host == "" || !protocol.IsAppID(b.App):
			return fmt.Errorf("%w: app binding %q=%q", ErrConfig, b.Host, abbrev(b.App))
		case seen[b.Host]:
			return fmt.Errorf("%w: --app host %s is given twice", ErrConfig, b.Host)
		case own[b.Host]:
			return fmt.Errorf("%w: --app host %s is the mirror's own host name", ErrConfig, b.Host)
		}
		seen[b.Host] = true
	}
	return nil
}

// Router routes by host. Safe for concurrent use; it starts nothing.
type Router struct {
	cfg      Config
	gw       Gateway
	releases Releases
	log      *slog.Logger
	apps     map[string]string // host → app ID
	hosts    map[string]bool
	origin   *http.ServeMux
	mirror   http.Handler // gw.Handler(next): the mirror's own hosts
	browse   atomic.Pointer[BrowserRedirect]
	pages    *pageCache
}

// BrowserRedirect may answer a browser's page load of /ipfs/{root}{rest}
// on one of the mirror's own hosts (a redirector sending it to the best
// mirror); it returns false, writing nothing, to let the gateway serve it.
type BrowserRedirect func(w http.ResponseWriter, r *http.Request, root cid.Cid, rest string) bool

// New builds a router. next serves the mirror's own pages (status,
// metrics, API) on its own hosts; gw serves bundles; releases resolves app
// hosts. log may be nil.
func New(cfg Config, gw Gateway, releases Releases, next http.Handler, log *slog.Logger) (*Router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if gw == nil || (len(cfg.Apps) > 0 && releases == nil) {
		return nil, fmt.Errorf("%w: nil gateway or releases", ErrConfig)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Router{
		cfg: cfg, gw: gw, releases: releases, log: log.With("component", "apphost"),
		apps: map[string]string{}, hosts: map[string]bool{}, origin: http.NewServeMux(),
		mirror: gw.Handler(next), pages: newPageCache(),
	}
	for _, h := range cfg.Hosts {
		r.hosts[strings.ToLower(h)] = true
	}
	for _, b := range cfg.Apps {
		r.apps[b.Host] = b.App
	}
	return r, nil
}

// HandleOrigin adds a route served on every app origin (app hosts and
// {cid}.ipfs subdomains) before the app's own files, with http.ServeMux
// patterns ("/.mirrornet/", "GET /mirrornet-sw.js"). It may be called
// while the router serves.
func (rt *Router) HandleOrigin(pattern string, h http.Handler) { rt.origin.Handle(pattern, h) }

// SetBrowserRedirect installs f for page loads of /ipfs/{cid}/... (Accept:
// text/html, not a trustless request) on the mirror's own hosts.
func (rt *Router) SetBrowserRedirect(f BrowserRedirect) { rt.browse.Store(&f) }

// AppHosts lists the --app host names, sorted (certificates are issued
// for these).
func (rt *Router) AppHosts() []string {
	out := make([]string, 0, len(rt.apps))
	for h := range rt.apps {
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}

// Kind says what a host name is to this mirror.
type Kind int

const (
	Unknown   Kind = iota // not configured: 404
	Mirror                // one of the mirror's own hosts, or an IP address
	AppHost               // an --app host
	Subdomain             // {id}.{ns}.HOST of one of the mirror's hosts
)

// namespaces are the subdomain namespaces the gateway answers (it serves
// ipfs and refuses the others with a clear 404).
var namespaces = map[string]bool{"ipfs": true, "ipns": true, "p2p": true, "ipld": true}

// Classify says what host (with or without a port) is; for an app host it
// also returns the app ID.
func (rt *Router) Classify(host string) (Kind, string) {
	h := strings.ToLower(strings.TrimSuffix(stripPort(host), "."))
	if app, ok := rt.apps[h]; ok {
		return AppHost, app
	}
	if rt.hosts[h] {
		return Mirror, ""
	}
	if _, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		return Mirror, ""
	}
	// {id}.{ns}.HOST: the longest own host that is a suffix after two
	// more labels.
	labels := strings.Split(h, ".")
	for i := 2; i < len(labels); i++ {
		if rt.hosts[strings.Join(labels[i:], ".")] && namespaces[labels[i-1]] {
			return Subdomain, ""
		}
	}
	if !rt.cfg.Strict {
		return Mirror, ""
	}
	return Unknown, ""
}

// ServeHTTP routes r by its Host.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	kind, app := rt.Classify(r.Host)
	switch kind {
	case Mirror:
		if f := rt.browse.Load(); f != nil && !trustless(r) && strings.Contains(r.Header.Get("Accept"), "text/html") {
			if root, rest, ok := ipfsPath(r.URL.Path); ok && (*f)(w, r, root, rest) {
				return
			}
		}
		rt.mirror.ServeHTTP(w, r)
	case Subdomain:
		if rt.serveOrigin(w, r) {
			return
		}
		rt.mirror.ServeHTTP(w, r)
	case AppHost:
		if rt.serveOrigin(w, r) {
			return
		}
		root, ok := rt.releases.Current(app)
		if !ok {
			w.Header().Set("Retry-After", "5")
			w.Header().Set("Cache-Control", "no-store")
			http.Error(w, fmt.Sprintf("%v: %s", ErrNoRelease, app), http.StatusServiceUnavailable)
			return
		}
		// A release's files change when the release does: let browsers
		// revalidate rather than keep an old page for hours.
		w.Header().Set("Cache-Control", "no-cache")
		rt.serveRoot(w, r, root)
	default:
		rt.log.Debug("unknown host", "host", abbrev(r.Host))
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, fmt.Sprintf("%v: %s", ErrUnknownHost, abbrev(stripPort(r.Host))), http.StatusNotFound)
	}
}

// serveRoot serves an app host's file from the page cache, or from the
// gateway (keeping a copy when it may).
func (rt *Router) serveRoot(w http.ResponseWriter, r *http.Request, root cid.Cid) {
	if !cacheable(r) {
		rt.gw.ServeRoot(w, r, root)
		return
	}
	// What a gateway answers for a path also depends on Accept (a
	// directory listing, a trustless format): it is part of the key.
	k := pageKey{root: root, path: r.URL.Path, accept: r.Header.Get("Accept")}
	if p := rt.pages.get(k); p != nil {
		serveCached(w, r, p)
		return
	}
	if r.Method != http.MethodGet || r.Header.Get("If-None-Match") != "" {
		rt.gw.ServeRoot(w, r, root)
		return
	}
	rc := &recorder{ResponseWriter: w, before: w.Header().Clone()}
	rt.gw.ServeRoot(rc, r, root)
	if p := rc.page(k); p != nil {
		rt.pages.put(p)
	}
}

// serveOrigin serves the routes every app origin shares; false when r is
// for the app itself.
func (rt *Router) serveOrigin(w http.ResponseWriter, r *http.Request) bool {
	if h, pattern := rt.origin.Handler(r); pattern != "" {
		h.ServeHTTP(w, r)
		return true
	}
	if (r.URL.Path == "/ipfs" || strings.HasPrefix(r.URL.Path, "/ipfs/")) && (trustless(r) || r.Method == http.MethodOptions) {
		rt.gw.ServePath(w, r)
		return true
	}
	return false
}

// trustless mirrors gateway.Trustless without importing the gateway.
func trustless(r *http.Request) bool {
	switch r.URL.Query().Get("format") {
	case "raw", "car":
		return true
	}
	for _, v := range r.Header.Values("Accept") {
		if strings.Contains(v, "application/vnd.ipld.raw") || strings.Contains(v, "application/vnd.ipld.car") {
			return true
		}
	}
	return false
}

// ipfsPath splits /ipfs/{cid}{rest}.
func ipfsPath(p string) (cid.Cid, string, bool) {
	if !strings.HasPrefix(p, "/ipfs/") {
		return cid.Undef, "", false
	}
	id, rest, _ := strings.Cut(p[len("/ipfs/"):], "/")
	c, err := cid.Decode(id)
	if err != nil {
		return cid.Undef, "", false
	}
	if rest != "" || strings.HasSuffix(p, "/") {
		rest = "/" + rest
	}
	return c, rest, true
}

func stripPort(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return host
}

func abbrev(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
