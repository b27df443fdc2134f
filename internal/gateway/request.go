package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/ipfs/boxo/verifcid"
	"github.com/ipfs/go-cid"
)

// Errors the gateway answers with. Each is written as one plain-text line,
// wrapped with the offending value.
var (
	// ErrNotHeld: the root CID is not a bundle this mirror holds (404, or
	// 412 for Cache-Control: only-if-cached). The gateway never fetches it.
	ErrNotHeld = errors.New("gateway: not held by this mirror")
	// ErrBadCID: the root is not a valid CID or uses a hash this gateway
	// will not verify (400).
	ErrBadCID = errors.New("gateway: invalid CID")
	// ErrBadPath: the content path is malformed: missing CID, "." or ".."
	// segments, or longer than MaxPathBytes (400).
	ErrBadPath = errors.New("gateway: invalid content path")
	// ErrNamespace: only immutable /ipfs content is served; /ipns, /p2p
	// and /ipld are refused without any name or DNS lookup (404).
	ErrNamespace = errors.New("gateway: only /ipfs/ content is served by this mirror")
)

// MaxPathBytes bounds the decoded URL path of a gateway request. Bundle
// paths are short; anything longer is an attack or a mistake, and is
// refused before any CID is parsed.
const MaxPathBytes = 4096

// namespaces boxo recognises in paths and subdomains ({id}.{ns}.host).
var namespaces = map[string]bool{"ipfs": true, "ipns": true, "p2p": true, "ipld": true}

// requestHost is the host a request is addressed to, as boxo reads it: a
// reverse proxy's X-Forwarded-Host wins over Host.
func requestHost(r *http.Request) string {
	if h := r.Header.Get("X-Forwarded-Host"); h != "" {
		return h
	}
	return r.Host
}

func stripPort(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return host
}

// subdomain is the parsed form of a {rootID}.{ns}.{gateway host} Host.
type subdomain struct {
	ns, rootID string
}

// route says what a request is, before boxo sees it.
type route int

const (
	routeNext        route = iota // not ours: pass to the next handler
	routeSubdomain                // {cid}.ipfs.<subdomain host>: app origin
	routeGatewayHost              // /ipfs/... on a subdomain host: boxo redirects
	routePath                     // /ipfs/... on any other host (IP): path gateway
	routeNamespace                // /ipns etc: refused
)

// classify decides which handler serves r. It reads the Host the way boxo's
// hostname handler does (exact host, then host without port; the longest
// matching suffix wins), so that whatever boxo would rewrite to a content
// path passes through the held check. The held check itself runs on the
// rewritten path (see checkContentPath), so a disagreement here can only
// route a request to the wrong handler, never past the check.
func classify(hosts map[string]bool, r *http.Request) (route, subdomain) {
	host := requestHost(r)
	if hosts[host] || hosts[stripPort(host)] {
		if isNamespacePath(r.URL.Path, "ipfs") {
			return routeGatewayHost, subdomain{}
		}
		if otherNamespacePath(r.URL.Path) {
			return routeNamespace, subdomain{}
		}
		return routeNext, subdomain{}
	}
	labels := strings.Split(host, ".")
	for i := len(labels) - 1; i >= 2; i-- {
		fqdn := strings.Join(labels[i:], ".")
		if !hosts[fqdn] && !hosts[stripPort(fqdn)] {
			continue
		}
		ns := labels[i-1]
		if !namespaces[ns] {
			continue
		}
		sd := subdomain{ns: ns, rootID: strings.Join(labels[:i-1], ".")}
		if ns != "ipfs" {
			return routeNamespace, sd
		}
		return routeSubdomain, sd
	}
	if isNamespacePath(r.URL.Path, "ipfs") {
		return routePath, subdomain{}
	}
	if otherNamespacePath(r.URL.Path) {
		return routeNamespace, subdomain{}
	}
	return routeNext, subdomain{}
}

// isNamespacePath reports whether p is /ns or /ns/...
func isNamespacePath(p, ns string) bool {
	return p == "/"+ns || strings.HasPrefix(p, "/"+ns+"/")
}

func otherNamespacePath(p string) bool {
	for ns := range namespaces {
		if ns != "ipfs" && isNamespacePath(p, ns) {
			return true
		}
	}
	return false
}

// rootOf validates a content path /ipfs/{cid}[/sub/path] and returns its
// root CID. It is a pure function: the same path always gives the same
// answer, and errors wrap ErrBadPath, ErrBadCID or ErrNamespace.
func rootOf(p string) (cid.Cid, error) {
	if len(p) > MaxPathBytes {
		return cid.Undef, fmt.Errorf("%w: path is %d bytes, limit %d", ErrBadPath, len(p), MaxPathBytes)
	}
	if !isNamespacePath(p, "ipfs") {
		if otherNamespacePath(p) {
			return cid.Undef, ErrNamespace
		}
		return cid.Undef, fmt.Errorf("%w: %q does not start with /ipfs/", ErrBadPath, p)
	}
	segs := strings.Split(p, "/")[2:] // "", "ipfs", then the rest
	if len(segs) == 0 || segs[0] == "" {
		return cid.Undef, fmt.Errorf("%w: no CID after /ipfs/", ErrBadPath)
	}
	for _, s := range segs {
		if s == "." || s == ".." {
			return cid.Undef, fmt.Errorf("%w: %q segments are not allowed", ErrBadPath, s)
		}
	}
	c, err := cid.Decode(segs[0])
	if err != nil {
		return cid.Undef, fmt.Errorf("%w %q: %v", ErrBadCID, abbrev(segs[0]), err)
	}
	if err := verifcid.ValidateCid(verifcid.DefaultAllowlist, c); err != nil {
		return cid.Undef, fmt.Errorf("%w %q: %v", ErrBadCID, abbrev(segs[0]), err)
	}
	return c, nil
}

// abbrev keeps error lines one short line even for hostile input.
func abbrev(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// onlyIfCached reports whether the request carries Cache-Control:
// only-if-cached (a possession probe).
func onlyIfCached(r *http.Request) bool {
	for _, v := range r.Header.Values("Cache-Control") {
		for _, d := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(d), "only-if-cached") {
				return true
			}
		}
	}
	return false
}
