package node

import (
	"net"
	"net/http"
	"slices"
	"strings"

	"github.com/ipfs/go-cid"

	"github.com/mirrornet/mirrornet/internal/announce"
	"github.com/mirrornet/mirrornet/internal/apphost"
)

// originFeature is a feature that adds routes served on every app origin
// (the --app hosts and {cid}.ipfs subdomains), before the app's own files:
// for example /.mirrornet/ pages or a service worker script. add takes an
// http.ServeMux pattern.
type originFeature interface {
	originRoutes(add func(pattern string, h http.Handler))
}

// appReleases resolves --app hosts: the newest release of an app that is
// held here (apphost.Releases).
type appReleases struct{ n *Node }

func (a appReleases) Current(app string) (cid.Cid, bool) {
	for _, f := range a.n.features {
		if rf, ok := f.(*releaseFeature); ok {
			return rf.heldRelease(app)
		}
	}
	return cid.Undef, false
}

// heldRelease is the newest release of app held here: the latest record's
// bundle once it is held, until then the newest previous one still held
// (the feature keeps those until the new one arrives). Every candidate
// comes from a verified release record, and Held means every block was
// verified.
func (f *releaseFeature) heldRelease(app string) (cid.Cid, bool) {
	f.mu.Lock()
	rec, ok := f.book.Get(app, 0)
	owned := append([]string(nil), f.apps[app]...)
	f.mu.Unlock()
	if !ok {
		return cid.Undef, false
	}
	if c, err := cid.Decode(rec.CID); err == nil && f.n.store.Held(c) {
		return c, true
	}
	// owned is in the order releases were followed: newest last.
	for i := len(owned) - 1; i >= 0; i-- {
		if c, err := cid.Decode(owned[i]); err == nil && f.n.store.Held(c) {
			return c, true
		}
	}
	return cid.Undef, false
}

// mustAppBindings parses cfg.Apps, which Validate has checked.
func mustAppBindings(cfg *Config) []apphost.Binding {
	b, _ := cfg.appBindings()
	return b
}

// ownHosts are the host names the mirror answers as itself: localhost and
// the subdomain hosts, its public URL's host, and the --http host when it
// is a name.
func (n *Node) ownHosts() (hosts, subdomainHosts []string) {
	subdomainHosts = append(subdomainHosts, n.cfg.SubdomainHosts...)
	if p, err := announce.ParsePublicURL(n.cfg.publicURL()); err == nil && p.IsName() && !slices.Contains(subdomainHosts, p.Host) {
		subdomainHosts = append(subdomainHosts, p.Host)
	}
	hosts = append(hosts, subdomainHosts...)
	if h, _, err := net.SplitHostPort(n.cfg.HTTPAddr); err == nil && h != "" && net.ParseIP(h) == nil && !slices.Contains(hosts, h) {
		hosts = append(hosts, strings.ToLower(h))
	}
	return hosts, subdomainHosts
}
