// Package redirect is the mirror redirector: like the redirectors of
// download mirrors, but with no central list. Any mirror answers a browser
// asking for an app (GET /app/{APP-ID}) or a bundle (/ipfs/{cid}/ with
// Accept: text/html) with a 302 to the best mirror for it, from its own
// view and evidence, with the alternates in RFC 6249 Link headers
// (`<url>; rel=duplicate; pri=N`), and publishes the full ranked list as
// JSON and as a Metalink (RFC 5854).
//
// The best mirror is, in order: eligible at all (alive, announcing the
// bundle, an HTTP URL, not failing, and not in a failure domain where some
// mirror is failing); verified by probes before unverified before
// degraded; lowest measured latency (unknown last); then peer ID, so the
// answer is deterministic. This mirror is a candidate only when it holds
// the bundle itself, whatever it announces.
//
// Rank and the renderers are pure; Handler wires them to HTTP.
package redirect

import (
	"cmp"
	"encoding/xml"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multibase"
)

// Evidence states, as internal/probe names them.
const (
	Verified   = "verified"
	Unverified = "unverified"
	Degraded   = "degraded"
	Failing    = "failing"
)

// Candidate is one mirror as this mirror sees it.
type Candidate struct {
	PeerID string
	// URL is the mirror's announced public HTTP URL ("" if none).
	URL string
	// Alive: the liveness view says alive (or it is this mirror).
	Alive bool
	// Holds: it announces the bundle (for this mirror: holds it).
	Holds bool
	// Evidence is the probe verdict: verified, unverified, degraded,
	// failing ("" counts as unverified).
	Evidence string
	// Domain is its failure domain ("" unknown).
	Domain string
	// Latency is this mirror's measured round trip to it (0: unknown;
	// this mirror itself is 0 and Self).
	Latency time.Duration
	// Self marks this mirror.
	Self bool
}

// Excluded is a mirror left out of the list, with the reason.
type Excluded struct {
	PeerID string `json:"peer_id"`
	Reason string `json:"reason"`
}

// Rank orders the eligible candidates, best first, and says why each
// other one was left out.
func Rank(cands []Candidate) (ranked []Candidate, excluded []Excluded) {
	failingDomains := map[string]bool{}
	for _, c := range cands {
		if c.Evidence == Failing && c.Domain != "" {
			failingDomains[c.Domain] = true
		}
	}
	for _, c := range cands {
		reason := ""
		switch {
		case !c.Alive:
			reason = "not alive"
		case !c.Holds:
			reason = "does not hold it"
		case c.URL == "":
			reason = "announces no HTTP URL"
		case c.Evidence == Failing:
			reason = "failing retrieval probes"
		case c.Domain != "" && failingDomains[c.Domain]:
			reason = "in failure domain " + c.Domain + " with a failing mirror"
		}
		if reason != "" {
			excluded = append(excluded, Excluded{PeerID: c.PeerID, Reason: reason})
			continue
		}
		ranked = append(ranked, c)
	}
	slices.SortStableFunc(ranked, func(a, b Candidate) int {
		if d := cmp.Compare(evidenceRank(a.Evidence), evidenceRank(b.Evidence)); d != 0 {
			return d
		}
		if d := cmp.Compare(latencyKey(a), latencyKey(b)); d != 0 {
			return d
		}
		return strings.Compare(a.PeerID, b.PeerID)
	})
	slices.SortStableFunc(excluded, func(a, b Excluded) int { return strings.Compare(a.PeerID, b.PeerID) })
	return ranked, excluded
}

func evidenceRank(e string) int {
	switch e {
	case Verified:
		return 0
	case Unverified, "":
		return 1
	default: // degraded
		return 2
	}
}

// latencyKey sorts this mirror first among equals (the client already
// reached it), then measured latencies, then unknown ones.
func latencyKey(c Candidate) time.Duration {
	switch {
	case c.Self:
		return -1
	case c.Latency <= 0:
		return 1<<63 - 1
	default:
		return c.Latency
	}
}

// BrowserURL is where a browser opens bundle root (and path rest, which
// starts with "/" or is empty) on the mirror at base: the bundle's own
// origin {cid}.ipfs.HOST when base names a host (CIDv1 in base32, or base36
// when a DNS label would be longer than 63 bytes), else the path
// /ipfs/{cid}/ on base.
func BrowserURL(base string, root cid.Cid, rest string) string {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return ""
	}
	if rest == "" {
		rest = "/"
	}
	host := u.Hostname()
	if _, err := netip.ParseAddr(host); err == nil || !strings.Contains(host, ".") && host != "localhost" {
		return u.Scheme + "://" + u.Host + "/ipfs/" + root.String() + rest
	}
	label := DNSLabel(root)
	h := label + ".ipfs." + host
	if p := u.Port(); p != "" {
		h += ":" + p
	}
	return u.Scheme + "://" + h + rest
}

// DNSLabel is root as one DNS label, as subdomain gateways spell it: CIDv1
// in base32, or base36 when base32 would exceed 63 bytes.
func DNSLabel(root cid.Cid) string {
	v1 := cid.NewCidV1(root.Type(), root.Hash())
	s := v1.String()
	if len(s) <= 63 {
		return s
	}
	s36, err := v1.StringOfBase(multibase.Base36)
	if err != nil {
		return s
	}
	return s36
}

// LinkHeader renders RFC 6249 Link header values for urls, priority 1 for
// the first (best). Each value is one RFC 8288 link-value.
func LinkHeader(urls []string) []string {
	out := make([]string, 0, len(urls))
	for i, u := range urls {
		out = append(out, "<"+u+">; rel=duplicate; pri="+strconv.Itoa(i+1))
	}
	return out
}

// Listing is the JSON of /app/{APP-ID}/mirrors.json (and the bundle form).
type Listing struct {
	App string `json:"app,omitempty"`
	CID string `json:"cid"`
	// Mirrors are the eligible mirrors, best first.
	Mirrors []ListedMirror `json:"mirrors"`
	// Excluded are the mirrors left out, with the reason.
	Excluded []Excluded `json:"excluded"`
}

// ListedMirror is one eligible mirror.
type ListedMirror struct {
	Priority  int     `json:"priority"`
	PeerID    string  `json:"peer_id"`
	URL       string  `json:"url"`
	Evidence  string  `json:"evidence"`
	Domain    string  `json:"domain,omitempty"`
	LatencyMS float64 `json:"latency_ms,omitempty"`
	Self      bool    `json:"self,omitempty"`
}

// NewListing builds the listing of ranked mirrors for root.
func NewListing(app string, root cid.Cid, ranked []Candidate, excluded []Excluded) Listing {
	l := Listing{App: app, CID: root.String(), Mirrors: []ListedMirror{}, Excluded: excluded}
	if l.Excluded == nil {
		l.Excluded = []Excluded{}
	}
	for i, c := range ranked {
		ev := c.Evidence
		if ev == "" {
			ev = Unverified
		}
		l.Mirrors = append(l.Mirrors, ListedMirror{
			Priority: i + 1, PeerID: c.PeerID, URL: BrowserURL(c.URL, root, ""), Evidence: ev, Domain: c.Domain,
			LatencyMS: float64(c.Latency.Microseconds()) / 1000, Self: c.Self,
		})
	}
	return l
}

// Metalink renders a Metalink 4 document (RFC 5854): the bundle as a CAR
// file, one URL per mirror with its priority. Clients verify the CAR
// against the CID in the file name.
func Metalink(l Listing, now time.Time) ([]byte, error) {
	type mlURL struct {
		Priority int    `xml:"priority,attr"`
		URL      string `xml:",chardata"`
	}
	type mlFile struct {
		Name        string  `xml:"name,attr"`
		Identity    string  `xml:"identity,omitempty"`
		Description string  `xml:"description,omitempty"`
		URLs        []mlURL `xml:"url"`
	}
	type metalink struct {
		XMLName   xml.Name `xml:"urn:ietf:params:xml:ns:metalink metalink"`
		Generator string   `xml:"generator"`
		Published string   `xml:"published"`
		File      mlFile   `xml:"file"`
	}
	f := mlFile{Name: l.CID + ".car", Identity: l.App,
		Description: "CARv1 of IPFS bundle " + l.CID + "; verify every block against the CID"}
	for _, m := range l.Mirrors {
		u, err := url.Parse(m.URL)
		if err != nil {
			continue
		}
		f.URLs = append(f.URLs, mlURL{Priority: m.Priority, URL: u.Scheme + "://" + trustlessHost(u, l.CID) + "/ipfs/" + l.CID + "?format=car"})
	}
	out, err := xml.MarshalIndent(metalink{Generator: "mirrornet", Published: now.UTC().Format(time.RFC3339), File: f}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("redirect: metalink: %w", err)
	}
	return append([]byte(xml.Header), append(out, '\n')...), nil
}

// trustlessHost is the mirror's own host for a trustless request: the
// browser URL's host without the {cid}.ipfs. prefix.
func trustlessHost(u *url.URL, _ string) string {
	h := u.Host
	if i := strings.Index(h, ".ipfs."); i >= 0 {
		h = h[i+len(".ipfs."):]
	}
	return h
}
