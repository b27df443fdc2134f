// Package swbundle serves mirrornet's verifying service worker on every app
// origin a mirror answers for ({cid}.ipfs.<host> subdomains and --app
// hosts), and the small pages around it.
//
// The worker (web/sw, bundled with esbuild into sw.js and embedded here, so
// building and testing mirrornet needs no npm) takes over an app's origin
// in the browser: it learns which mirrors hold the app from their signed
// statements, fetches the app's blocks from them over the trustless
// gateway, verifies every byte against the CID, and moves to another
// mirror when one fails, stalls or lies. The origin stays the same, so the
// app's local storage survives the mirror that first served it.
//
// How the first visit installs it: a browser navigation (Sec-Fetch-Mode:
// navigate) to an app origin that reaches the mirror at all is, by
// construction, one no worker answered. The mirror answers it with a
// bootstrap page that registers /.mirrornet/sw.js for the whole origin,
// waits until the worker controls the page and reloads: the reload and
// everything after it are answered by the worker, from verified blocks. A
// browser that cannot run the worker (no service worker support, storage
// disabled, an install that failed) is sent back with the cookie
// DirectCookie and then gets the app straight from this mirror, as before;
// a worker that is only slow to start is waited for. Requests that are not
// navigations (the app's own fetches, curl, light clients, probes) pass
// through untouched.
//
// Routes on an app origin:
//
//	/.mirrornet/sw.js        the worker (Service-Worker-Allowed: /)
//	/.mirrornet/config.json  the root CID, the mirrors to start from and,
//	                         on an app host, the app's signed release
//	                         records (the worker verifies them and serves
//	                         the release they prove, not the root named)
//	/.mirrornet/             the status page (answered by the worker; the
//	                         mirror answers it with the bootstrap page)
//
// On every other host the handler adds CORS headers to the statements
// stream (/mirrornet/v1/statements; the gateway does it for trustless
// responses), so a worker on any app origin can read it.
package swbundle

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multibase"

	"github.com/mirrornet/mirrornet/protocol"
)

// Bundle is the built service worker (web/sw, `npm run build`).
//
//go:embed sw.js
var Bundle []byte

// BundleHash is the hex SHA-256 of Bundle, for logs and the status JSON.
var BundleHash = func() string { h := sha256.Sum256(Bundle); return hex.EncodeToString(h[:]) }()

// Paths served on app origins.
const (
	WorkerPath = "/.mirrornet/sw.js"
	ConfigPath = "/.mirrornet/config.json"
	StatusPath = "/.mirrornet/"
)

// DirectCookie, when a request carries it, makes the mirror serve the app
// directly instead of the bootstrap page: the bootstrap page sets it when
// the browser cannot run the worker.
const DirectCookie = "mirrornet-direct"

// MaxSeeds bounds the mirrors named in the worker's config (the worker
// asks at most 8 for statements, like the Go light client).
const MaxSeeds = 8

// MaxReleases bounds the release records in the worker's config: the
// newest ones of the app's chain. A chain whose maintainers rotated more
// than this many records ago is anchored by the worker from the records
// mirrors' statement streams carry.
const MaxReleases = 64

// ErrConfig is wrapped by every Validate error.
var ErrConfig = errors.New("swbundle: invalid config")

// Config configures the handler.
type Config struct {
	// SubdomainHosts are the gateway's subdomain hosts: {cid}.ipfs.<host>
	// is an app origin. Default ["localhost"], as the gateway's.
	SubdomainHosts []string
}

// DefaultConfig returns the configuration a mirror runs with.
func DefaultConfig() Config { return Config{SubdomainHosts: []string{"localhost"}} }

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if len(c.SubdomainHosts) == 0 {
		return fmt.Errorf("%w: SubdomainHosts is empty", ErrConfig)
	}
	for _, h := range c.SubdomainHosts {
		if h == "" || strings.ContainsAny(h, "/:* \t") {
			return fmt.Errorf("%w: SubdomainHosts entry %q is not a plain hostname", ErrConfig, h)
		}
	}
	return nil
}

// Origin is an app origin: the bundle it serves and, for an app host,
// the app and the release version.
type Origin struct {
	Root    cid.Cid
	App     string // app ID; "" on a {cid}.ipfs. origin
	Version uint64 // release version of Root; 0 when unknown
}

// OriginFunc says whether a request's host (port allowed) is an app
// origin and what it serves. It is called on the request goroutine and
// must be cheap and safe for concurrent use.
type OriginFunc func(host string) (Origin, bool)

// SeedsFunc returns the HTTP base URLs of mirrors that hold root, this
// mirror first; the worker verifies whatever they say, so they are hints.
// It is called on the request goroutine and must be safe for concurrent
// use.
type SeedsFunc func(root cid.Cid) []string

// ReleasesFunc returns an app's signed release records
// (protocol.SignedRelease bytes), oldest first; the worker verifies them
// itself. Called on the request goroutine, only for the worker's config;
// the slices are only read.
type ReleasesFunc func(app string) [][]byte

// WithReleases sets where an app host's config gets the app's release
// records. Default: none, and the worker learns them from the statement
// streams of the mirrors it asks.
func WithReleases(f ReleasesFunc) Option { return func(s *Server) { s.releases = f } }

// Option sets an optional dependency of New.
type Option func(*Server)

// WithSeeds sets where the worker starts looking for mirrors. Default:
// none, and a worker that knows no mirror shows its error page; a mirror
// always sets it.
func WithSeeds(f SeedsFunc) Option { return func(s *Server) { s.seeds = f } }

// WithOrigins sets how app origins are recognised (the mirror's host
// router knows its --app hosts and subdomain hosts). Default: the
// {cid}.ipfs.<host> subdomains of Config.SubdomainHosts.
func WithOrigins(f OriginFunc) Option { return func(s *Server) { s.origins = f } }

// WithLogger sets the logger. Default: discard.
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// Server serves the worker and its pages. Safe for concurrent use.
type Server struct {
	hosts    map[string]bool
	origins  OriginFunc
	seeds    SeedsFunc
	releases ReleasesFunc
	log      *slog.Logger
}

// New returns a Server for cfg.
func New(cfg Config, opts ...Option) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{hosts: map[string]bool{}}
	for _, h := range cfg.SubdomainHosts {
		s.hosts[strings.ToLower(h)] = true
	}
	for _, o := range opts {
		o(s)
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.origins == nil {
		s.origins = func(host string) (Origin, bool) {
			root, ok := s.AppRoot(host)
			return Origin{Root: root}, ok
		}
	}
	s.log = s.log.With("component", "swbundle")
	return s, nil
}

// AppRoot reports the root CID of a {cid}.ipfs.<subdomain host> origin
// (a Host header, port allowed).
func (s *Server) AppRoot(host string) (cid.Cid, bool) {
	c, rest, ok := SubdomainRoot(host)
	return c, ok && s.hosts[rest]
}

// SubdomainRoot parses a {cid}.ipfs.<host> host name (port allowed): the
// CID and the host it is a subdomain of.
func SubdomainRoot(host string) (root cid.Cid, parent string, ok bool) {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	label, rest, found := strings.Cut(host, ".ipfs.")
	if !found || label == "" || strings.Contains(label, ".") {
		return cid.Undef, "", false
	}
	c, err := cid.Decode(label)
	if err != nil {
		return cid.Undef, "", false
	}
	return c, rest, true
}

// Handler serves the worker routes on app origins and passes everything
// else to next, adding CORS headers to trustless and statement responses.
func (s *Server) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if fh := r.Header.Get("X-Forwarded-Host"); fh != "" {
			host = fh
		}
		origin, app := s.origins(host)
		if !app {
			// The gateway gives trustless responses CORS headers; the
			// statements stream and the holdings statement get them here.
			if (r.URL.Path == protocol.HTTPStatementsPath || r.URL.Path == protocol.HTTPHoldingsPath) && cors(w, r) {
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		switch r.URL.Path {
		case WorkerPath:
			s.serveWorker(w, r)
			return
		case ConfigPath:
			s.serveConfig(w, r, origin)
			return
		case StatusPath, "/.mirrornet":
			serveBootstrap(w, r)
			return
		}
		if isNavigation(r) && !hasDirectCookie(r) {
			serveBootstrap(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// cors adds the headers the trustless gateway spec allows for
// cross-origin reads; it answers a preflight itself (and reports true).
func cors(w http.ResponseWriter, r *http.Request) bool {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Accept, Cache-Control, Range")
	h.Set("Access-Control-Expose-Headers", "Content-Length, Content-Range, Content-Type, X-Ipfs-Path, X-Ipfs-Roots, X-Content-Type-Options")
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	return false
}

func isNavigation(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && r.Header.Get("Sec-Fetch-Mode") == "navigate"
}

func hasDirectCookie(r *http.Request) bool {
	c, err := r.Cookie(DirectCookie)
	return err == nil && c.Value == "1"
}

func (s *Server) serveWorker(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "swbundle: method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/javascript; charset=utf-8")
	h.Set("Service-Worker-Allowed", "/")
	// Browsers check for a new worker on navigations; no-cache makes them
	// revalidate, and the ETag keeps that cheap.
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", `"`+BundleHash[:32]+`"`)
	h.Set("X-Content-Type-Options", "nosniff")
	if match := r.Header.Get("If-None-Match"); match == `"`+BundleHash[:32]+`"` {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Length", fmt.Sprint(len(Bundle)))
	if r.Method == http.MethodHead {
		return
	}
	w.Write(Bundle)
}

// WorkerConfig is the JSON at ConfigPath.
type WorkerConfig struct {
	// Root is the app's CID (base32 CIDv1), the one the origin names.
	Root string `json:"root"`
	// Seeds are mirror base URLs to ask for statements first.
	Seeds []string `json:"seeds"`
	// App and Version name the app release Root belongs to, when the
	// origin is an app host; empty and 0 on a {cid}.ipfs. origin. The
	// worker pins App when it installs; Root and Version are this
	// mirror's word only, for people reading the config.
	App     string `json:"app,omitempty"`
	Version uint64 `json:"version,omitempty"`
	// Releases are the app's signed release records (base64 of
	// protocol.SignedRelease bytes, at most MaxReleases, oldest first): the
	// worker on an app host serves the newest release whose record it
	// verifies (threshold of maintainers, anchored in the app ID, never
	// older than one it verified before), whatever Root says.
	Releases [][]byte `json:"releases,omitempty"`
	// Worker is the hex SHA-256 of the worker bundle.
	Worker string `json:"worker"`
}

func (s *Server) serveConfig(w http.ResponseWriter, r *http.Request, origin Origin) {
	root := origin.Root
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "swbundle: method not allowed", http.StatusMethodNotAllowed)
		return
	}
	rootStr, err := root.StringOfBase(multibase.Base32)
	if err != nil || root.Version() == 0 {
		rootStr = cid.NewCidV1(root.Type(), root.Hash()).String()
	}
	var rels [][]byte
	if origin.App != "" && s.releases != nil {
		rels = s.releases(origin.App)
	}
	if len(rels) > MaxReleases {
		rels = rels[len(rels)-MaxReleases:]
	}
	cfg := WorkerConfig{Root: rootStr, Seeds: []string{}, App: origin.App, Version: origin.Version, Releases: rels, Worker: BundleHash}
	if s.seeds != nil {
		for _, u := range s.seeds(root) {
			if len(cfg.Seeds) == MaxSeeds {
				break
			}
			cfg.Seeds = append(cfg.Seeds, u)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(cfg)
}

func serveBootstrap(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	rep := strings.NewReplacer("{{COOKIE}}", DirectCookie, "{{WORKER}}", WorkerPath)
	rep.WriteString(w, bootstrapPage)
}

// bootstrapPage registers the worker and reloads once it controls the
// page; if the browser cannot run it, it sets DirectCookie and reloads to
// get the app directly. It is the only thing a mirror serves to a browser
// navigation on an app origin, and it holds nothing of the app.
const bootstrapPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Loading…</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:15px system-ui,sans-serif;margin:3rem auto;max-width:36rem;color:#444}</style>
</head><body>
<p id="mirrornet-boot">Starting the verifying loader…</p>
<noscript><p>This app is verified in your browser and needs JavaScript.</p></noscript>
<script>
(function () {
  "use strict";
  var done = false;
  function direct(why) {
    if (done) return;
    done = true;
    if (window.console) console.warn("mirrornet: serving this app without the verifying worker: " + why);
    document.cookie = "{{COOKIE}}=1; path=/; SameSite=Strict";
    location.reload();
  }
  function reload() {
    if (done) return;
    done = true;
    // A page the worker never comes to control would bring us back here
    // at once: at most two such reloads within 10 s.
    var n = 1, now = Date.now();
    try {
      var last = (sessionStorage.getItem("mirrornet-boot") || "0:0").split(":");
      if (now - Number(last[1]) < 10000) n = Number(last[0]) + 1;
      sessionStorage.setItem("mirrornet-boot", n + ":" + now);
    } catch (e) {}
    if (n > 2) { done = false; direct("the worker does not take control of this page"); return; }
    location.reload();
  }
  if (!("serviceWorker" in navigator)) { direct("no service worker support"); return; }
  if (navigator.serviceWorker.controller) { reload(); return; }
  navigator.serviceWorker.addEventListener("controllerchange", reload);
  // Only a browser that cannot run the worker gets the app directly: one
  // that refuses to register it (no storage, a private mode that forbids
  // it) or a worker whose install failed (the browser bounds an install's
  // time itself). A slow start is waited for: falling back on a timer
  // raced the worker's activation (the direct page loaded as the worker
  // claimed its clients stayed unverified for the whole session).
  setTimeout(function () {
    var p = document.getElementById("mirrornet-boot");
    if (p && !done) p.textContent = "Still starting the verifying loader (a slow device or network)…";
  }, 15000);
  navigator.serviceWorker.register("{{WORKER}}", { scope: "/" }).then(function (reg) {
    var w = reg.installing || reg.waiting;
    if (w) w.addEventListener("statechange", function () {
      if (w.state === "redundant" && !reg.installing && !reg.waiting && !reg.active) direct("the worker failed to install");
    });
    return navigator.serviceWorker.ready;
  }).then(function () {
    // Active: reload so that the worker answers the page (a hard reload
    // has no controller even with an active worker).
    reload();
  }).catch(function (e) { direct(String(e)); });
})();
</script>
</body></html>
`
