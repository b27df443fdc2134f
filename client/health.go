package client

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/protocol"
)

// healthView is the client's verified picture of the mirrors: the latest
// (highest Seq) signed liveness statement per signer, gathered from every
// source, and which sources vouched for each. It does no I/O and reads no
// clock (the caller passes now). Safe for concurrent use: sources are
// read, and their statements verified, in parallel as they stream in.
//
// Cost bound: the statements it keeps count (twice their size, raw and
// decoded) against maxBytes; once full, statements of new signers are
// dropped (a lying source cannot make the client hold more), newer ones of
// known signers still replace the old.
type healthView struct {
	mu       sync.Mutex
	maxBytes int64
	bytes    int64
	latest   map[peer.ID]*attest.Statement
	// vouched: which sources delivered a valid statement of each signer,
	// the evidence mirrors are ranked by.
	vouched map[peer.ID]map[string]bool
	// rejected counts statements that failed verification (unsigned,
	// forged, malformed, from the future), per source, for the log.
	rejected map[string]int
	// overBudget counts statements dropped for want of room.
	overBudget int
	// holds caches what a mirror's verified holdings statement said about
	// one root, for mirrors whose liveness statement names its holdings
	// by digest only (see holdings.go): bounded, so a client asking about
	// one root keeps one bit per mirror, never the lists.
	holds map[holdKey]bool
}

func newHealthView(maxBytes int64) *healthView {
	return &healthView{maxBytes: maxBytes, latest: map[peer.ID]*attest.Statement{},
		vouched: map[peer.ID]map[string]bool{}, rejected: map[string]int{}, holds: map[holdKey]bool{}}
}

func statementCost(raw []byte) int64 { return 2*int64(len(raw)) + 256 }

// add verifies raw and keeps it if it is a liveness statement newer than
// the one held for its signer and there is room. Statements that are only
// too old are kept (they prove the mirror dead); everything else that fails
// verification is counted against source and dropped. It reports whether
// raw was kept.
func (v *healthView) add(source string, raw []byte, now time.Time) bool {
	st, err := attest.Verify(raw, now)
	v.mu.Lock()
	defer v.mu.Unlock()
	if err != nil && !errors.Is(err, attest.ErrTooOld) {
		v.rejected[source]++
		return false
	}
	if st.Kind != attest.KindLiveness || st.Liveness == nil {
		return false
	}
	old, ok := v.latest[st.Signer]
	if ok && old.Seq > st.Seq {
		v.vouch(st.Signer, source)
		return false
	}
	if ok && old.Seq == st.Seq {
		v.vouch(st.Signer, source)
		return false
	}
	grow := statementCost(raw)
	if ok {
		grow -= statementCost(old.Raw)
	}
	if v.maxBytes > 0 && grow > 0 && v.bytes+grow > v.maxBytes {
		v.overBudget++
		return false
	}
	v.bytes += grow
	v.latest[st.Signer] = st
	v.vouch(st.Signer, source)
	return true
}

func (v *healthView) vouch(id peer.ID, source string) {
	m := v.vouched[id]
	if m == nil {
		m = map[string]bool{}
		v.vouched[id] = m
	}
	m[source] = true
}

// candidate is a mirror the view says is usable for a root.
type candidate struct {
	url      string
	domain   string
	vouchers int
	// sources names the sources that vouched for it (sorted, joined).
	sources string
	time    time.Time
}

// usable returns the mirrors whose latest statement is "up", at most its
// TTL plus maxAge old at now, and lists root, best evidence first: vouched for by more
// sources, then fresher, then by URL. Each mirror's URL must be a bare
// http(s)://host[:port] (statementURL); one URL appears once.
func (v *healthView) usable(root string, now time.Time, maxAge time.Duration) []candidate {
	v.mu.Lock()
	defer v.mu.Unlock()
	best := map[string]candidate{}
	for id, st := range v.latest {
		l := st.Liveness
		if l.State != protocol.StateUp || l.HTTP == "" || stale(st, now, maxAge) {
			continue
		}
		if root != "" && !v.listsLocked(id, l, root) {
			continue
		}
		u, err := statementURL(l.HTTP)
		if err != nil {
			continue
		}
		var srcs []string
		for src := range v.vouched[id] {
			srcs = append(srcs, src)
		}
		slices.Sort(srcs)
		c := candidate{url: u, domain: urlDomain(u), vouchers: len(srcs), sources: strings.Join(srcs, " "), time: st.Time}
		if old, ok := best[u]; !ok || better(c, old) {
			best[u] = c
		}
	}
	out := make([]candidate, 0, len(best))
	for _, c := range best {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b candidate) int {
		if better(a, b) {
			return -1
		}
		if better(b, a) {
			return 1
		}
		return 0
	})
	return out
}

// peersByURL maps the URL of every up, fresh mirror to its peer ID; a URL
// two peers claim maps to neither.
func (v *healthView) peersByURL(now time.Time, maxAge time.Duration) map[string]string {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := map[string]string{}
	for id, st := range v.latest {
		l := st.Liveness
		if l.State != protocol.StateUp || l.HTTP == "" || stale(st, now, maxAge) {
			continue
		}
		if u, err := statementURL(l.HTTP); err == nil {
			if old, ok := out[u]; ok && old != id.String() {
				out[u] = "" // two peers claim one URL: credit neither
				continue
			}
			out[u] = id.String()
		}
	}
	for u, id := range out {
		if id == "" {
			delete(out, u)
		}
	}
	return out
}

// stale reports whether a liveness statement is past its TTL (the
// signer's promise to sign again within it; a mirror refreshes its
// statement at an interval that grows with the network) by more than
// maxAge at now: a mirror is used only on a signature that is still
// current.
func stale(st *attest.Statement, now time.Time, maxAge time.Duration) bool {
	return now.Sub(st.Time) > st.Liveness.TTLDuration()+maxAge
}

// upMirrors is usable for any root: every up, fresh mirror.
func (v *healthView) upMirrors(now time.Time, maxAge time.Duration) []candidate {
	return v.usable("", now, maxAge)
}

func better(a, b candidate) bool {
	if a.vouchers != b.vouchers {
		return a.vouchers > b.vouchers
	}
	if !a.time.Equal(b.time) {
		return a.time.After(b.time)
	}
	return a.url < b.url
}

// spread orders candidates (best evidence first) for contacting: mirrors
// vouched for by more sources first; within the same number of vouchers,
// turn by turn between the sources (sets of sources) that vouched, so one
// source naming ten thousand mirrors gets no more turns than one naming a
// single mirror; and within one source's mirrors, distinct domains first.
func spread(cs []candidate) []candidate {
	out := make([]candidate, 0, len(cs))
	for i := 0; i < len(cs); {
		j := i
		for j < len(cs) && cs[j].vouchers == cs[i].vouchers {
			j++
		}
		tier := cs[i:j]
		bySource := map[string][]candidate{}
		var sources []string
		for _, c := range tier {
			if _, ok := bySource[c.sources]; !ok {
				sources = append(sources, c.sources)
			}
			bySource[c.sources] = append(bySource[c.sources], c)
		}
		queues := make([][]candidate, len(sources))
		for k, src := range sources {
			queues[k] = byDomain(bySource[src])
		}
		for left := len(tier); left > 0; {
			for k := range queues {
				if len(queues[k]) > 0 {
					out = append(out, queues[k][0])
					queues[k] = queues[k][1:]
					left--
				}
			}
		}
		i = j
	}
	return out
}

// byDomain orders candidates (best first) so that distinct domains come
// first: the best of each domain in order, then the second of each, and
// so on.
func byDomain(cs []candidate) []candidate {
	groups := map[string][]candidate{}
	var order []string
	for _, c := range cs {
		if _, ok := groups[c.domain]; !ok {
			order = append(order, c.domain)
		}
		groups[c.domain] = append(groups[c.domain], c)
	}
	out := make([]candidate, 0, len(cs))
	for round := 0; len(out) < len(cs); round++ {
		for _, d := range order {
			if round < len(groups[d]) {
				out = append(out, groups[d][round])
			}
		}
	}
	return out
}

// statusOf explains why a mirror's URL is not usable, for reports.
func (v *healthView) statusOf(u string, root string, now time.Time, maxAge time.Duration) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, st := range v.latest {
		if h, err := statementURL(st.Liveness.HTTP); err != nil || h != u {
			continue
		}
		l := st.Liveness
		switch {
		case l.State != protocol.StateUp:
			return "mirror is " + l.State
		case stale(st, now, maxAge):
			return "latest statement is " + now.Sub(st.Time).Round(time.Second).String() + " old (its TTL " + st.Liveness.TTLDuration().String() + ")"
		case !l.Inline() && !v.knownLocked(st.Signer, l, root):
			return "its holdings statement is not verified yet"
		case !v.listsLocked(st.Signer, l, root):
			return "mirror does not list " + root
		}
		return "usable"
	}
	return "no statement"
}

// errURL: a statement names an HTTP URL the client will not use.
var errURL = errors.New("client: statement URL is not http(s)://host[:port]")

// statementURL accepts only a bare http(s)://host[:port] (a trailing "/"
// is allowed) from a statement and returns it without the slash: no path,
// query, fragment or user info, a host name or IP literal, a port in
// 1..65535. Anything else a mirror announces is ignored, so a statement
// cannot point the client at some path of a third party's server.
func statementURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%w: %q", errURL, s)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Host == "" {
		return "", fmt.Errorf("%w: %q", errURL, s)
	}
	host, port := u.Hostname(), u.Port()
	if host == "" || strings.ContainsAny(host, " %") {
		return "", fmt.Errorf("%w: %q", errURL, s)
	}
	if port != "" {
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 {
			return "", fmt.Errorf("%w: %q", errURL, s)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return "", fmt.Errorf("%w: %q", errURL, s)
	}
	return u.Scheme + "://" + u.Host, nil
}

// urlDomain names the failure domain a client can see from a URL alone:
// the /24 of an IPv4 address, the /48 of an IPv6 one, and for a host name
// its last two labels (example.org for a.b.example.org).
func urlDomain(u string) string {
	host := u
	if i := strings.Index(host, "://"); i >= 0 {
		host = host[i+3:]
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.Unmap()
		bits := 24
		if a.Is6() {
			bits = 48
		}
		p, _ := a.Prefix(bits)
		return p.String()
	}
	labels := strings.Split(strings.TrimSuffix(strings.ToLower(host), "."), ".")
	if len(labels) > 2 {
		labels = labels[len(labels)-2:]
	}
	return strings.Join(labels, ".")
}

// normalizeHTTP checks an http(s) base URL (a bootstrap, which may carry a
// path) and strips trailing slashes.
func normalizeHTTP(s string) (string, error) {
	u, err := parseHTTPBase(s)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(u, "/"), nil
}
