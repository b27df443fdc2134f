// Package dashboard is the page a person sees when opening a mirror's `/` in
// a browser: mirrors by state and failure domain, bundles and apps with their
// effective redundancy, releases and their integrity, and recent probe
// results, as this mirror sees the network.
//
// The page is one embedded HTML document with its own style and script and
// no external assets. It renders [Snapshot]s fetched from [APIPath] and
// refreshes them every few seconds. Everything it shows (peer IDs, labels,
// app names, file names) comes from strangers, so the script only ever sets
// text (textContent), never markup, and a Content-Security-Policy allows no
// script but its own (by hash) and no connection but to this origin.
//
// [Index] does the content negotiation: browsers (Accept: text/html) get
// the page, everything else (curl, scripts) the plain handler it wraps. The
// caller (node) builds Snapshots; this package holds no state.
package dashboard

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"mime"
	"net/http"
	"strings"
)

// APIPath serves the current Snapshot as JSON.
const APIPath = "/api/v1/dashboard"

// RefreshMS is how often the page fetches a new Snapshot.
const RefreshMS = 5000

// Snapshot is the network as one mirror sees it. Its JSON field names are
// read by the page's script and by scripts of users: keep them stable.
type Snapshot struct {
	Self Self `json:"self"`
	// Generated is the RFC 3339 time the snapshot was taken.
	Generated string   `json:"generated"`
	Mirrors   []Mirror `json:"mirrors"`
	Bundles   []Bundle `json:"bundles"`
	Apps      []App    `json:"apps"`
	Probes    []Probe  `json:"probes"`
}

// Self is the answering mirror.
type Self struct {
	PeerID  string `json:"peer_id"`
	Version string `json:"version"`
	Profile string `json:"profile"`
	HTTP    string `json:"http"`
	Peers   int    `json:"peers_connected"`
}

// Mirror is one mirror of the view.
type Mirror struct {
	PeerID string `json:"peer_id"`
	// State is the liveness state: alive, suspect, dead or left.
	State string `json:"state"`
	// Evidence is the probe verdict: verified, degraded, failing, unverified.
	Evidence string `json:"evidence,omitempty"`
	// Domain is the failure domain others place it in.
	Domain   string `json:"domain,omitempty"`
	Region   string `json:"region,omitempty"`
	HTTP     string `json:"http,omitempty"`
	Version  string `json:"version,omitempty"`
	Bundles  int    `json:"bundles"`
	LastSeen string `json:"last_seen"`
}

// Bundle is one bundle some mirror holds or some app releases.
type Bundle struct {
	CID string `json:"cid"`
	// EffectiveRedundancy counts distinct failure domains among verified
	// holders.
	EffectiveRedundancy int `json:"effective_redundancy"`
	Holders             int `json:"holders"`
	// HeldHere: this mirror holds it.
	HeldHere bool `json:"held_here"`
	// Apps are the names of apps whose release is this bundle.
	Apps []string `json:"apps,omitempty"`
}

// App is the latest release of one app.
type App struct {
	App     string `json:"app"`
	Name    string `json:"name"`
	Version uint64 `json:"version"`
	CID     string `json:"cid"`
	// Status is current or stale; Integrity verified, unverified or
	// diverges.
	Status              string `json:"status"`
	Integrity           string `json:"integrity"`
	Holders             int    `json:"holders"`
	EffectiveRedundancy int    `json:"effective_redundancy"`
	Followed            bool   `json:"followed"`
}

// Probe is one recent retrieval probe result.
type Probe struct {
	Observer  string `json:"observer"`
	Target    string `json:"target"`
	Outcome   string `json:"outcome"`
	Bundle    string `json:"bundle"`
	LatencyMS int64  `json:"latency_ms"`
	Time      string `json:"time"`
}

//go:embed assets/index.html
var pageTemplate string

//go:embed assets/dashboard.js
var script string

// page is the document with its script inlined, and csp the policy that
// allows exactly that script.
var page, csp = func() ([]byte, string) {
	p := strings.Replace(pageTemplate, "/*SCRIPT*/", script, 1)
	sum := sha256.Sum256([]byte(script))
	policy := "default-src 'none'; connect-src 'self'; img-src 'self' data:; style-src 'unsafe-inline'; " +
		"script-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	return []byte(p), policy
}()

// WantsHTML reports whether a request prefers HTML: its Accept header names
// text/html (browsers do; curl and scripts send */* or nothing).
func WantsHTML(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err == nil && (mt == "text/html" || mt == "application/xhtml+xml") && params["q"] != "0" {
			return true
		}
	}
	return false
}

// Index serves the page to browsers and plain to everyone else.
func Index(plain http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Accept")
		if !WantsHTML(r) {
			plain.ServeHTTP(w, r)
			return
		}
		ServePage(w, r)
	})
}

// ServePage writes the page.
func ServePage(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	_, _ = w.Write(page)
}

// API serves snapshot() as JSON at APIPath.
func API(snapshot func() Snapshot) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := snapshot()
		for _, l := range []*[]Mirror{&s.Mirrors} {
			if *l == nil {
				*l = []Mirror{}
			}
		}
		if s.Bundles == nil {
			s.Bundles = []Bundle{}
		}
		if s.Apps == nil {
			s.Apps = []App{}
		}
		if s.Probes == nil {
			s.Probes = []Probe{}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s)
	})
}
