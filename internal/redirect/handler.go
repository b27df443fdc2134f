package redirect

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/mirrornet/mirrornet/protocol"
)

// Source is what the redirector reads from the mirror. Both methods are
// called on the request goroutine and must be safe for concurrent use;
// the returned slice is the caller's.
type Source interface {
	// Candidates are every mirror known, this one included, as seen for
	// bundle root.
	Candidates(root cid.Cid) []Candidate
	// Release is the CID of app's latest verified release, if known.
	Release(app string) (cid.Cid, bool)
}

// Handler serves the redirector's routes.
type Handler struct {
	src Source
	now func() time.Time
}

// New returns a Handler reading from src.
func New(src Source, now func() time.Time) *Handler {
	if now == nil {
		now = time.Now
	}
	return &Handler{src: src, now: now}
}

// Routes registers GET /app/{app}, /app/{app}/mirrors.json and
// /app/{app}/mirrors.meta4 on mux.
func (h *Handler) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /app/{app}", h.serveApp)
	mux.HandleFunc("GET /app/{app}/mirrors.json", func(w http.ResponseWriter, r *http.Request) { h.serveList(w, r, "json") })
	mux.HandleFunc("GET /app/{app}/mirrors.meta4", func(w http.ResponseWriter, r *http.Request) { h.serveList(w, r, "meta4") })
}

func (h *Handler) release(w http.ResponseWriter, app string) (cid.Cid, bool) {
	if !protocol.IsAppID(app) {
		http.Error(w, fmt.Sprintf("redirect: %q is not an app ID", abbrev(app)), http.StatusBadRequest)
		return cid.Undef, false
	}
	root, ok := h.src.Release(app)
	if !ok {
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "redirect: no release of "+app+" is known here", http.StatusNotFound)
		return cid.Undef, false
	}
	return root, true
}

func (h *Handler) serveApp(w http.ResponseWriter, r *http.Request) {
	root, ok := h.release(w, r.PathValue("app"))
	if !ok {
		return
	}
	if !h.Redirect(w, r, root, "") {
		w.Header().Set("Retry-After", "10")
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "redirect: no healthy mirror is known to hold "+root.String(), http.StatusServiceUnavailable)
	}
}

func (h *Handler) serveList(w http.ResponseWriter, r *http.Request, format string) {
	app := r.PathValue("app")
	root, ok := h.release(w, app)
	if !ok {
		return
	}
	ranked, excluded := Rank(h.src.Candidates(root))
	l := NewListing(app, root, ranked, excluded)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	if format == "json" {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(l)
		return
	}
	body, err := Metalink(l, h.now())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/metalink4+xml")
	_, _ = w.Write(body)
}

// Redirect answers r with a 302 to the best mirror for bundle root (path
// rest inside it) and Link headers for every eligible one. It returns false
// without writing when no mirror is eligible, or when the best is this
// mirror at the very URL asked for (the caller serves it).
func (h *Handler) Redirect(w http.ResponseWriter, r *http.Request, root cid.Cid, rest string) bool {
	ranked, _ := Rank(h.src.Candidates(root))
	if len(ranked) == 0 {
		return false
	}
	var urls []string
	for _, c := range ranked {
		if u := BrowserURL(c.URL, root, rest); u != "" {
			urls = append(urls, u)
		}
	}
	if len(urls) == 0 {
		return false
	}
	if ranked[0].Self && sameURL(urls[0], r) {
		return false
	}
	for _, v := range LinkHeader(urls) {
		w.Header().Add("Link", v)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Vary", "Accept")
	http.Redirect(w, r, urls[0], http.StatusFound)
	return true
}

// sameURL reports whether target is the URL r asked for (host and path).
func sameURL(target string, r *http.Request) bool {
	rest := target[strings.Index(target, "://")+3:]
	host, path, _ := strings.Cut(rest, "/")
	return strings.EqualFold(host, r.Host) && "/"+path == r.URL.Path
}

// BrowserWants reports whether r is a browser's page load: Accept names
// text/html and the request is not a trustless one.
func BrowserWants(r *http.Request) bool {
	q := r.URL.Query().Get("format")
	if q != "" {
		return false
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

func abbrev(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
