// Package gateway is a mirror's public HTTP gateway: it serves the app
// bundles this mirror holds, and only those, over the IPFS trustless
// gateway protocol and as browsable apps on their own origins.
//
// It is a thin policy layer over boxo's gateway package, which carries the
// protocol (ipfs/specs http-gateways): raw blocks (?format=raw), CARv1
// streams (?format=car with dag-scope and entity-bytes), HEAD possession
// probes, and UnixFS deserialisation with index.html, _redirects and
// content-type sniffing. What this package adds:
//
//   - Only held bundles. Every request's root CID, whether it arrives in
//     the path (/ipfs/{cid}/...) or the Host ({cid}.ipfs.localhost), is
//     checked with a [HeldFunc] before boxo sees it (and, with
//     [WithHeldBlock], may also be any block of a held bundle, as
//     block-at-a-time clients and probes ask). A root not held is
//     refused with 404 ("gateway: not held by this mirror"), or 412 when
//     the request says Cache-Control: only-if-cached. Blocks are read from
//     the given blockstore through an offline blockservice: nothing is ever
//     fetched from the network, so a partially replicated bundle whose
//     blocks are in the store is still refused until the store says held.
//   - Malformed input is a 400 with one plain-text line (bad CID, bad
//     multihash, "." or ".." segments, overlong paths, garbage subdomains),
//     never a 5xx. /ipns, /p2p and /ipld are refused with 404 before any
//     name or DNS lookup could happen.
//   - Origin isolation as in kubo: on a subdomain host (Config.SubdomainHosts,
//     default "localhost"), http://{cid}.ipfs.localhost:PORT/ serves the
//     app, and http://localhost:PORT/ipfs/{cid}/ redirects there. On any
//     other host (an IP address, say) the gateway is a plain path gateway
//     that answers trustless (raw/CAR) requests: light clients use that.
//   - A direct CAR path (fastcar.go): a whole-bundle CAR of a UnixFS DAG is
//     written straight from the blockstore, byte for byte what boxo would
//     send, at several times boxo's throughput (docs/BENCHMARKS.md).
//
// Use:
//
//	gw, err := gateway.New(gateway.DefaultConfig(), bs, store.Held,
//		gateway.WithHeldBlock(store.HeldBlock), gateway.WithLogger(log))
//	srv := &http.Server{Handler: gw.Handler(otherRoutes)}
//
// The gateway needs no Close: boxo's CAR goroutine and the direct path's
// (only when its stream is consumed with Read rather than WriteTo) end with
// the response, when the handler closes the stream.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/blockstore"
	boxogw "github.com/ipfs/boxo/gateway"
	"github.com/ipfs/go-cid"
	"github.com/prometheus/client_golang/prometheus"
)

// HeldFunc reports whether this mirror holds the complete bundle rooted at
// c. It is called on the request goroutine (once or twice per request:
// before and after boxo rewrites a subdomain), so it must be cheap and safe
// for concurrent use. c is the CID as the request spelled it;
// a CIDv0 root is also tried as its CIDv1 (dag-pb) equivalent.
type HeldFunc func(c cid.Cid) bool

// Config is the gateway's configuration. The zero value is not valid; start
// from DefaultConfig.
type Config struct {
	// SubdomainHosts are the hostnames served as subdomain gateways:
	// {cid}.ipfs.<host> serves the bundle as an app on its own origin, and
	// <host>/ipfs/{cid} redirects there. Default ["localhost"]: browsers
	// resolve *.localhost to loopback without DNS, as with kubo.
	SubdomainHosts []string

	// DeserializedPaths lets the plain path gateway (every host not in
	// SubdomainHosts, such as 127.0.0.1:PORT) serve deserialised content
	// (HTML, files) as well as raw blocks and CARs. Default false: apps
	// served from one shared origin could read each other's storage, so
	// browsers get apps only on their subdomain origin.
	DeserializedPaths bool
}

// DefaultConfig returns the configuration a mirror runs with.
func DefaultConfig() Config {
	return Config{SubdomainHosts: []string{"localhost"}}
}

// ErrConfig is wrapped by every Validate error.
var ErrConfig = errors.New("gateway: invalid config")

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if len(c.SubdomainHosts) == 0 {
		return fmt.Errorf("%w: SubdomainHosts is empty (want at least one hostname, e.g. localhost)", ErrConfig)
	}
	for _, h := range c.SubdomainHosts {
		switch {
		case h == "":
			return fmt.Errorf("%w: SubdomainHosts has an empty hostname", ErrConfig)
		case strings.ContainsAny(h, "/:* \t") || strings.HasPrefix(h, ".") || strings.HasSuffix(h, "."):
			return fmt.Errorf("%w: SubdomainHosts entry %q is not a plain hostname (no scheme, port, path or wildcard)", ErrConfig, h)
		case net.ParseIP(h) != nil:
			return fmt.Errorf("%w: SubdomainHosts entry %q is an IP address; subdomains need a hostname", ErrConfig, h)
		}
	}
	return nil
}

// Option sets an optional dependency of New.
type Option func(*options)

type options struct {
	log       *slog.Logger
	reg       prometheus.Registerer
	heldBlock HeldFunc
}

// WithHeldBlock also serves requests rooted at any block of a held bundle,
// for which heldBlock reports true (e.g. store.HeldBlock). Trustless
// clients fetch bundles a block at a time (/ipfs/{leaf}?format=raw, or
// format=car&dag-scope=block), and retrieval probes descend a bundle the
// same way; without this option only bundle roots are served. heldBlock
// has HeldFunc's concurrency requirements.
func WithHeldBlock(heldBlock HeldFunc) Option { return func(o *options) { o.heldBlock = heldBlock } }

// WithLogger sets the logger; refused requests are logged at Debug.
// Default: discard.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithMetricsRegisterer registers boxo's gateway metrics with reg.
// Default: a private registry, so several gateways (tests, testnets in one
// process) never collide in prometheus.DefaultRegisterer.
func WithMetricsRegisterer(reg prometheus.Registerer) Option {
	return func(o *options) { o.reg = reg }
}

// Gateway serves held bundles over HTTP. It is safe for concurrent use.
type Gateway struct {
	cfg       Config
	held      HeldFunc
	heldBlock HeldFunc // nil: roots only
	log       *slog.Logger
	hosts     map[string]bool

	backend   *carBackend
	subdomain http.Handler // boxo hostname handler + deserialising handler
	origin    http.Handler // the deserialising handler alone (ServeRoot)
	path      http.Handler // boxo handler for plain path-gateway hosts
	cors      *boxogw.Headers
}

// New builds a gateway that serves blocks from bs (read only, never
// fetching from the network) for bundles that held reports as held.
func New(cfg Config, bs blockstore.Blockstore, held HeldFunc, opts ...Option) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if bs == nil {
		return nil, fmt.Errorf("%w: nil blockstore", ErrConfig)
	}
	if held == nil {
		return nil, fmt.Errorf("%w: nil HeldFunc", ErrConfig)
	}
	o := options{}
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if o.reg == nil {
		o.reg = prometheus.NewRegistry()
	}

	// A nil exchange makes the blockservice offline: a missing block is
	// an error, never a network fetch.
	blocks, err := boxogw.NewBlocksBackend(blockservice.New(bs, nil), boxogw.WithPrometheusRegistry(o.reg))
	if err != nil {
		return nil, fmt.Errorf("gateway: blocks backend: %w", err)
	}
	backend := &carBackend{BlocksBackend: blocks, bs: bs}

	g := &Gateway{
		cfg:       cfg,
		held:      held,
		heldBlock: o.heldBlock,
		backend:   backend,
		log:       o.log.With("component", "gateway"),
		hosts:     map[string]bool{},
	}
	public := map[string]*boxogw.PublicGateway{}
	for _, h := range cfg.SubdomainHosts {
		g.hosts[h] = true
		public[h] = &boxogw.PublicGateway{
			Paths:                 []string{"/ipfs"},
			UseSubdomains:         true,
			NoDNSLink:             true,
			DeserializedResponses: true,
		}
	}
	base := boxogw.Config{
		NoDNSLink:         true,
		DisableHTMLErrors: true,
		MetricsRegistry:   o.reg,
		PublicGateways:    public,
	}

	// boxo looks PublicGateways up by the exact Host, port included, when
	// deciding whether to deserialise, so the subdomain handler turns it
	// on globally: it only ever sees subdomain-host requests.
	subCfg := base
	subCfg.DeserializedResponses = true
	g.origin = g.checkHeld(boxogw.NewHandler(subCfg, backend))
	g.subdomain = boxogw.NewHostnameHandler(subCfg, backend, g.origin)
	g.cors = boxogw.NewHeaders(nil).ApplyCors()

	pathCfg := base
	pathCfg.DeserializedResponses = cfg.DeserializedPaths
	pathCfg.PublicGateways = nil
	g.path = g.checkHeld(boxogw.NewHandler(pathCfg, backend))
	return g, nil
}

// Handler serves /ipfs/... paths and {cid}.ipfs.<subdomain host> hosts, and
// passes every other request to next (which may be nil: 404). Trustless
// requests (raw blocks and CARs) carry CORS headers on every host, so pages
// and service workers on other origins can fetch and verify them.
func (g *Gateway) Handler(next http.Handler) http.Handler {
	if next == nil {
		next = http.NotFoundHandler()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt, sd := classify(g.hosts, r)
		if rt != routeNext && rt != routeNamespace && (Trustless(r) || r.Method == http.MethodOptions) {
			g.cors.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { g.serve(w, r, rt, sd, next) })).ServeHTTP(w, r)
			return
		}
		g.serve(w, r, rt, sd, next)
	})
}

func (g *Gateway) serve(w http.ResponseWriter, r *http.Request, rt route, sd subdomain, next http.Handler) {
	switch rt {
	case routeSubdomain:
		// Check before boxo, which may redirect to a canonical origin.
		if g.allowed(w, r, "/ipfs/"+sd.rootID+r.URL.Path) {
			g.subdomain.ServeHTTP(w, r)
		}
	case routeGatewayHost:
		// Trustless clients get the data where they asked for it: only a
		// browser is sent to the bundle's own origin.
		if Trustless(r) {
			g.path.ServeHTTP(w, r)
		} else if g.allowed(w, r, r.URL.Path) {
			g.subdomain.ServeHTTP(w, r)
		}
	case routePath:
		g.path.ServeHTTP(w, r)
	case routeNamespace:
		what := r.URL.Path
		if sd.ns != "" {
			what = sd.ns + " subdomain"
		}
		g.refuse(w, r, http.StatusNotFound, fmt.Errorf("%w: %s", ErrNamespace, abbrev(what)))
	default:
		next.ServeHTTP(w, r)
	}
}

// ServePath serves r as a path-gateway request (/ipfs/{cid}...), whatever
// its Host: app origins use it for trustless requests, with CORS headers.
func (g *Gateway) ServePath(w http.ResponseWriter, r *http.Request) {
	g.cors.Wrap(g.path).ServeHTTP(w, r)
}

// ServeRoot serves r on its own origin as the bundle rooted at root, the way
// a {root}.ipfs.HOST subdomain is served: r's path is a path inside the
// bundle (index.html, _redirects and directory redirects apply), and the
// root must be held. App hosts use it: which root a host serves is the
// caller's decision, made once per request.
func (g *Gateway) ServeRoot(w http.ResponseWriter, r *http.Request, root cid.Cid) {
	host := stripPort(r.Host)
	ctx := context.WithValue(r.Context(), boxogw.OriginalPathKey, r.URL.Path)
	ctx = context.WithValue(ctx, boxogw.SubdomainHostnameKey, host)
	ctx = context.WithValue(ctx, boxogw.GatewayHostnameKey, host)
	r2 := r.WithContext(ctx)
	u := *r.URL
	u.Path = "/ipfs/" + root.String() + r.URL.Path
	u.RawPath = ""
	r2.URL = &u
	g.origin.ServeHTTP(w, r2)
}

// Trustless reports whether r asks for verifiable data (a raw block or a
// CAR) rather than a deserialised file: ?format=raw|car, or an Accept
// header naming application/vnd.ipld.raw or application/vnd.ipld.car.
func Trustless(r *http.Request) bool {
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

// checkHeld guards a boxo handler: it sees the content path after boxo's
// hostname handler has rewritten a subdomain request into /ipfs/{cid}/...,
// so path and subdomain requests pass the same check.
func (g *Gateway) checkHeld(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.allowed(w, r, r.URL.Path) {
			h.ServeHTTP(w, r)
		}
	})
}

// allowed validates contentPath (/ipfs/{cid}/...) and checks that its root
// is held. If not, it answers the request and returns false.
func (g *Gateway) allowed(w http.ResponseWriter, r *http.Request, contentPath string) bool {
	root, err := rootOf(contentPath)
	switch {
	case errors.Is(err, ErrNamespace):
		g.refuse(w, r, http.StatusNotFound, err)
		return false
	case err != nil:
		g.refuse(w, r, http.StatusBadRequest, err)
		return false
	}
	if !g.isHeld(root) {
		status := http.StatusNotFound
		if onlyIfCached(r) {
			status = http.StatusPreconditionFailed
		}
		g.refuse(w, r, status, fmt.Errorf("%w: %s", ErrNotHeld, root))
		return false
	}
	return true
}

func (g *Gateway) isHeld(c cid.Cid) bool {
	if g.heldRootOrBlock(c) {
		return true
	}
	return c.Version() == 0 && g.heldRootOrBlock(cid.NewCidV1(c.Type(), c.Hash()))
}

func (g *Gateway) heldRootOrBlock(c cid.Cid) bool {
	return g.held(c) || (g.heldBlock != nil && g.heldBlock(c))
}

// refuse answers with one plain-text line. HEAD gets the status only.
func (g *Gateway) refuse(w http.ResponseWriter, r *http.Request, status int, err error) {
	g.log.Debug("refused", "status", status, "method", r.Method, "host", abbrev(requestHost(r)), "path", abbrev(r.URL.Path), "err", err)
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, err.Error(), status)
}
