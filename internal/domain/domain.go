// Package domain places mirrors in failure domains from what peers
// observed of them on real connections, so that redundancy is counted in
// independent places rather than in peer IDs: sixteen mirrors behind one
// /24 are one copy, not sixteen, and a thousand mirrors nobody has seen are
// one copy too.
//
// A mirror's base domain is, from its most observed address:
//
//   - "asn:AS<n>" when an IP-to-ASN table is loaded (iptoasn TSV; see
//     [ParseASN]) and the address is routed;
//   - "net:<prefix>" for the address's IPv4 /24 or IPv6 /48.
//
// The address comes from this node's own connections to the mirror
// ([Placer.Observe]), or else from signed observation reports
// ([Placer.Report]: the address a probe observer reached the mirror at),
// accepted only when reporters in at least Quorum distinct, themselves
// observed, domains agree on the domain. A mirror with neither is in
// "unknown", one domain shared by every unobserved mirror: it counts once
// toward k, effective redundancy and badges, never once per peer.
//
// Declarations never create a domain. An operator's label file may split
// an observed domain ("label:<name>@<base>", for racks behind one prefix),
// never lift a mirror out of "unknown"; a mirror's self-declared liveness
// Region only names its domain ([Placer.Name]). Mirrors whose RTT vectors,
// measured from many vantage points, are near-identical are flagged as
// likely co-located and merged into one domain.
//
// [Resolve] is the pure function from observations to domains; [Placer]
// keeps a mirror's observations and caches its answer. [ResolveReports]
// places from signed reports alone, with no connection of one's own: what
// a payout ledger recomputes from an epoch's evidence.
// The package is a pure core: no goroutines, no network I/O, no clock.
// [LoadASNFile] and [LoadLabelFile] read files once at start-up.
package domain

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Errors.
var (
	ErrASNFile   = errors.New("domain: malformed IP-to-ASN file")
	ErrLabelFile = errors.New("domain: malformed label file")
	ErrConfig    = errors.New("domain: invalid config")
)

// ASNTable maps addresses to autonomous systems. It is immutable once
// parsed and safe for concurrent use.
type ASNTable struct {
	v4, v6 []asnRange
}

type asnRange struct {
	start, end netip.Addr
	asn        uint32
}

// ParseASN reads the iptoasn.com TSV format, one range per line:
//
//	range_start <TAB> range_end <TAB> AS_number <TAB> country_code <TAB> AS_description
//
// IPv4 and IPv6 ranges may be mixed (ip2asn-v4.tsv, ip2asn-v6.tsv or
// ip2asn-combined.tsv); name is used in error messages. AS number 0 marks
// unrouted space. Ranges must not overlap.
func ParseASN(r io.Reader, name string) (*ASNTable, error) {
	t := &ASNTable{}
	if err := t.add(r, name); err != nil {
		return nil, err
	}
	return t, t.finish(name)
}

func (t *ASNTable) add(r io.Reader, name string) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimRight(sc.Text(), "\r")
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		f := strings.Split(text, "\t")
		if len(f) < 3 {
			return fmt.Errorf("%w: %s:%d: want range_start, range_end, AS_number, country_code, AS_description separated by tabs", ErrASNFile, name, line)
		}
		start, err1 := netip.ParseAddr(f[0])
		end, err2 := netip.ParseAddr(f[1])
		if err1 != nil || err2 != nil {
			return fmt.Errorf("%w: %s:%d: bad address range %q - %q", ErrASNFile, name, line, f[0], f[1])
		}
		start, end = start.Unmap(), end.Unmap()
		if start.Is4() != end.Is4() || end.Less(start) {
			return fmt.Errorf("%w: %s:%d: range %s - %s is empty or mixes families", ErrASNFile, name, line, start, end)
		}
		asn, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimPrefix(f[2], "AS"), "as"), 10, 32)
		if err != nil {
			return fmt.Errorf("%w: %s:%d: bad AS number %q", ErrASNFile, name, line, f[2])
		}
		rg := asnRange{start, end, uint32(asn)}
		if start.Is4() {
			t.v4 = append(t.v4, rg)
		} else {
			t.v6 = append(t.v6, rg)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%w: %s:%d: %v", ErrASNFile, name, line+1, err)
	}
	return nil
}

func (t *ASNTable) finish(name string) error {
	for _, rs := range [][]asnRange{t.v4, t.v6} {
		sort.Slice(rs, func(i, j int) bool { return rs[i].start.Less(rs[j].start) })
		for i := 1; i < len(rs); i++ {
			if !rs[i-1].end.Less(rs[i].start) {
				return fmt.Errorf("%w: %s: ranges %s - %s and %s - %s overlap", ErrASNFile, name, rs[i-1].start, rs[i-1].end, rs[i].start, rs[i].end)
			}
		}
	}
	if len(t.v4)+len(t.v6) == 0 {
		return fmt.Errorf("%w: %s: no ranges", ErrASNFile, name)
	}
	return nil
}

// Lookup returns the AS number routing a, or 0 when unknown or unrouted.
func (t *ASNTable) Lookup(a netip.Addr) uint32 {
	if t == nil {
		return 0
	}
	a = a.Unmap()
	rs := t.v6
	if a.Is4() {
		rs = t.v4
	}
	i := sort.Search(len(rs), func(i int) bool { return a.Less(rs[i].start) }) - 1
	if i >= 0 && !rs[i].end.Less(a) {
		return rs[i].asn
	}
	return 0
}

// LoadASNFile opens and parses one or more iptoasn TSV files into one
// table.
func LoadASNFile(paths ...string) (*ASNTable, error) {
	t := &ASNTable{}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("domain: IP-to-ASN file: %w", err)
		}
		err = t.add(f, p)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	return t, t.finish(strings.Join(paths, ","))
}

// ParseLabels reads a label file: one "peer-id domain-label" per line,
// separated by white space; blank lines and lines starting with # are
// skipped. Labels are [A-Za-z0-9._-]+. A peer listed twice is an error.
func ParseLabels(r io.Reader, name string) (map[peer.ID]string, error) {
	out := map[peer.ID]string{}
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		f := strings.Fields(text)
		if len(f) != 2 {
			return nil, fmt.Errorf("%w: %s:%d: want \"peer-id label\", got %d fields", ErrLabelFile, name, line, len(f))
		}
		id, err := peer.Decode(f[0])
		if err != nil {
			return nil, fmt.Errorf("%w: %s:%d: bad peer ID %q: %v", ErrLabelFile, name, line, f[0], err)
		}
		if strings.ContainsFunc(f[1], func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
		}) || len(f[1]) > 64 {
			return nil, fmt.Errorf("%w: %s:%d: label %q must be 1-64 of [A-Za-z0-9._-]", ErrLabelFile, name, line, f[1])
		}
		if _, dup := out[id]; dup {
			return nil, fmt.Errorf("%w: %s:%d: peer %s listed twice", ErrLabelFile, name, line, id)
		}
		out[id] = f[1]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %s:%d: %v", ErrLabelFile, name, line+1, err)
	}
	return out, nil
}

// LoadLabelFile opens and parses a label file.
func LoadLabelFile(path string) (map[peer.ID]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("domain: label file: %w", err)
	}
	defer f.Close()
	return ParseLabels(f, path)
}

// Config tunes co-location detection.
type Config struct {
	// ColocMinVantages is how many vantage points (other than the pair)
	// must have measured both mirrors before they can be flagged
	// co-located: with few vantages, distinct places look alike.
	ColocMinVantages int
	// ColocTolerance and ColocRelTolerance bound how far two RTTs from
	// one vantage may differ (absolute, or relative to the larger) and
	// still count as the same place.
	ColocTolerance    time.Duration
	ColocRelTolerance float64
	// ColocAgreement is the fraction of common vantages that must agree.
	ColocAgreement float64
	// Quorum is how many distinct observed domains must report a
	// mirror's address before it is placed from reports (2: one network
	// full of sybils cannot place anyone; 1 on a single-host testnet).
	Quorum int
}

// DefaultConfig flags pairs alike within 1 ms or 5% from at least 5
// vantages, 90% of them agreeing, and places from reports of 2 domains.
func DefaultConfig() Config {
	return Config{ColocMinVantages: 5, ColocTolerance: time.Millisecond, ColocRelTolerance: 0.05, ColocAgreement: 0.9, Quorum: 2}
}

// Validate names the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.ColocMinVantages < 2:
		return fmt.Errorf("%w: ColocMinVantages must be at least 2", ErrConfig)
	case c.ColocTolerance < 0 || c.ColocRelTolerance < 0:
		return fmt.Errorf("%w: co-location tolerances must not be negative", ErrConfig)
	case c.ColocAgreement <= 0 || c.ColocAgreement > 1:
		return fmt.Errorf("%w: ColocAgreement must be in (0, 1]", ErrConfig)
	case c.Quorum < 1:
		return fmt.Errorf("%w: Quorum must be at least 1", ErrConfig)
	}
	return nil
}

// Unknown is the one domain of every mirror nobody observed.
const Unknown = "unknown"

// maxReporters bounds the reports kept about one peer.
const maxReporters = 64

// Observations are what domains are computed from.
type Observations struct {
	// Direct is, per peer, the address this node saw on its own
	// connections to it (the most observed one).
	Direct map[peer.ID]netip.Addr
	// Reports is, per target, the address each reporter (a probe
	// observer, in a signed result) reached it at.
	Reports map[peer.ID]map[peer.ID]netip.Addr
	// Labels are the operator's labels (they split observed domains).
	Labels map[peer.ID]string
	ASN    *ASNTable
	// Quorum: distinct observed reporter domains needed to place a peer
	// from reports.
	Quorum int
}

// Resolve places every peer that appears in o (directly observed, or as a
// report's target) in a domain; peers it cannot place are [Unknown]. It is
// pure. A report counts only when its reporter is itself placed (directly,
// or from reports in an earlier pass); a peer is placed from reports when
// reporters in at least o.Quorum distinct domains agree on its base
// domain (the largest such agreement wins; ties go to the smaller name).
func Resolve(o Observations) map[peer.ID]string {
	baseOf := memoBase()
	out := make(map[peer.ID]string, len(o.Direct)+len(o.Reports))
	for p, a := range o.Direct {
		out[p] = labelled(o.Labels, p, baseOf(o.ASN, a))
	}
	targets := make([]peer.ID, 0, len(o.Reports))
	for t := range o.Reports {
		if _, ok := out[t]; !ok {
			targets = append(targets, t)
		}
	}
	slices.Sort(targets)
	// Each pass may place reporters that place others in the next; a
	// peer placed stays placed, so this ends within len(targets) passes.
	for changed := true; changed; {
		changed = false
		for _, t := range targets {
			if _, ok := out[t]; ok {
				continue
			}
			votes := map[string]map[string]bool{}
			for r, a := range o.Reports[t] {
				rd, ok := out[r]
				if !ok || rd == Unknown || r == t {
					continue
				}
				cd := baseOf(o.ASN, a)
				if votes[cd] == nil {
					votes[cd] = map[string]bool{}
				}
				votes[cd][rd] = true
			}
			best, n := "", 0
			for cd, rs := range votes {
				if len(rs) > n || len(rs) == n && cd < best {
					best, n = cd, len(rs)
				}
			}
			if n >= max(o.Quorum, 1) {
				out[t] = labelled(o.Labels, t, best)
				changed = true
			}
		}
	}
	for _, t := range targets {
		if _, ok := out[t]; !ok {
			out[t] = Unknown
		}
	}
	return out
}

// memoBase returns baseOf remembering its answers: a day of reports names
// a million (observer, target) pairs but only as many addresses as
// mirrors. The function is for one table and one goroutine.
func memoBase() func(*ASNTable, netip.Addr) string {
	seen := map[netip.Addr]string{}
	return func(asn *ASNTable, a netip.Addr) string {
		b, ok := seen[a]
		if !ok {
			b = baseOf(asn, a)
			seen[a] = b
		}
		return b
	}
}

// baseOf is the base domain of an address.
func baseOf(asn *ASNTable, a netip.Addr) string {
	if n := asn.Lookup(a); n != 0 {
		return fmt.Sprintf("asn:AS%d", n)
	}
	bits := 24
	if !a.Is4() {
		bits = 48
	}
	pfx, _ := a.Prefix(bits)
	return "net:" + pfx.String()
}

// labelled splits an observed base domain by an operator's label.
func labelled(labels map[peer.ID]string, p peer.ID, base string) string {
	if l, ok := labels[p]; ok {
		return "label:" + l + "@" + base
	}
	return base
}

// Placer places peers in failure domains. It is safe for concurrent use.
type Placer struct {
	cfg    Config
	asn    *ASNTable
	labels map[peer.ID]string

	mu       sync.Mutex
	observed map[peer.ID]map[netip.Addr]int
	reports  map[peer.ID]map[peer.ID]netip.Addr // target -> reporter -> address
	regions  map[peer.ID]string
	rtt      map[peer.ID]map[peer.ID]time.Duration // target -> vantage -> RTT
	groups   map[peer.ID]peer.ID                   // co-location representative; nil when stale
	resolved map[peer.ID]string                    // Resolve's answer; nil when stale
}

// New returns a Placer. asn and labels may be nil.
func New(cfg Config, asn *ASNTable, labels map[peer.ID]string) (*Placer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Placer{
		cfg: cfg, asn: asn, labels: labels,
		observed: map[peer.ID]map[netip.Addr]int{}, reports: map[peer.ID]map[peer.ID]netip.Addr{},
		regions: map[peer.ID]string{}, rtt: map[peer.ID]map[peer.ID]time.Duration{},
	}, nil
}

// Observe records that p was seen connecting from (or reachable at) a, as
// the remote address of one of this node's own connections. Call it on
// every new connection.
func (pl *Placer) Observe(p peer.ID, a netip.Addr) {
	if !a.IsValid() {
		return
	}
	pl.mu.Lock()
	defer pl.mu.Unlock()
	m := pl.observed[p]
	if m == nil {
		m = map[netip.Addr]int{}
		pl.observed[p] = m
	}
	if len(m) < 64 || m[a.Unmap()] > 0 { // bound what one peer can make us store
		m[a.Unmap()]++
		pl.resolved = nil
	}
}

// Report records a signed observation: reporter reached target at a (the
// address of a probe result). It counts once reporters in Quorum distinct
// observed domains agree (see [Resolve]). At most 64 reporters are kept
// per target.
func (pl *Placer) Report(reporter, target peer.ID, a netip.Addr) {
	if !a.IsValid() || reporter == target {
		return
	}
	pl.mu.Lock()
	defer pl.mu.Unlock()
	m := pl.reports[target]
	if m == nil {
		m = map[peer.ID]netip.Addr{}
		pl.reports[target] = m
	}
	if _, ok := m[reporter]; ok || len(m) < maxReporters {
		if m[reporter] != a.Unmap() {
			m[reporter] = a.Unmap()
			pl.resolved = nil
		}
	}
}

// Observed reports whether p is placed in a domain other than unknown
// (directly, or from agreeing reports).
func (pl *Placer) Observed(p peer.ID) bool {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	d, ok := pl.resolvedLocked()[p]
	return ok && d != Unknown
}

// Forget drops everything observed about p.
func (pl *Placer) Forget(p peer.ID) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	delete(pl.observed, p)
	delete(pl.regions, p)
	delete(pl.rtt, p)
	delete(pl.reports, p)
	for _, m := range pl.rtt {
		delete(m, p)
	}
	for _, m := range pl.reports {
		delete(m, p)
	}
	pl.groups, pl.resolved = nil, nil
}

// SetRegion records p's self-declared region (liveness Region; "" clears).
// A region names a domain ([Placer.Name]); it never places a mirror.
func (pl *Placer) SetRegion(p peer.ID, region string) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if region == "" {
		delete(pl.regions, p)
	} else {
		pl.regions[p] = region
	}
}

// Name returns p's self-declared region, a name for its domain ("" when
// none). It never changes what p counts for.
func (pl *Placer) Name(p peer.ID) string {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return pl.regions[p]
}

// ObserveRTT records a round-trip time to target measured from vantage
// (the local node's own pings, or RTTs other mirrors report).
func (pl *Placer) ObserveRTT(vantage, target peer.ID, rtt time.Duration) {
	if vantage == target || rtt < 0 {
		return
	}
	pl.mu.Lock()
	defer pl.mu.Unlock()
	m := pl.rtt[target]
	if m == nil {
		m = map[peer.ID]time.Duration{}
		pl.rtt[target] = m
	}
	m[vantage] = rtt
	pl.groups = nil
}

// Observations returns a copy of what the placer knows, for [Resolve].
func (pl *Placer) Observations() Observations {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return pl.observationsLocked()
}

func (pl *Placer) observationsLocked() Observations {
	o := Observations{Direct: map[peer.ID]netip.Addr{}, Reports: map[peer.ID]map[peer.ID]netip.Addr{},
		Labels: pl.labels, ASN: pl.asn, Quorum: pl.cfg.Quorum}
	for p := range pl.observed {
		if a, ok := pl.mainAddrLocked(p); ok {
			o.Direct[p] = a
		}
	}
	for t, m := range pl.reports {
		o.Reports[t] = maps.Clone(m)
	}
	return o
}

func (pl *Placer) resolvedLocked() map[peer.ID]string {
	if pl.resolved == nil {
		o := pl.observationsLocked()
		o.Reports = pl.reports // read-only inside Resolve
		pl.resolved = Resolve(o)
	}
	return pl.resolved
}

// baseDomainLocked is p's domain before co-location merging.
func (pl *Placer) baseDomainLocked(p peer.ID) string {
	if d, ok := pl.resolvedLocked()[p]; ok {
		return d
	}
	return Unknown
}

// mainAddrLocked is the most observed address of p (ties: the smallest).
func (pl *Placer) mainAddrLocked(p peer.ID) (netip.Addr, bool) {
	var best netip.Addr
	n := 0
	for a, c := range pl.observed[p] {
		if c > n || c == n && a.Less(best) {
			best, n = a, c
		}
	}
	return best, n > 0
}

// Domain returns p's failure domain (see the package doc): [Unknown] for
// a mirror nobody observed. Co-located peers share the domain of the
// group's smallest member.
func (pl *Placer) Domain(p peer.ID) string {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	d := pl.baseDomainLocked(p)
	if d == Unknown {
		return d
	}
	return pl.baseDomainLocked(pl.representativeLocked(p))
}

// EffectiveRedundancy returns the number of distinct failure domains among
// holders (co-located groups merged; all unobserved holders together count
// as one). Pass verified holders only: this counts places, not proofs.
func (pl *Placer) EffectiveRedundancy(holders []peer.ID) int {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	domains := map[string]bool{}
	for _, h := range holders {
		d := pl.baseDomainLocked(h)
		if d != Unknown {
			d = pl.baseDomainLocked(pl.representativeLocked(h))
		}
		domains[d] = true
	}
	return len(domains)
}

// Colocated returns the groups of two or more peers flagged as likely
// co-located, each sorted, in a stable order.
func (pl *Placer) Colocated() [][]peer.ID {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	pl.computeGroupsLocked()
	by := map[peer.ID][]peer.ID{}
	for p, rep := range pl.groups {
		by[rep] = append(by[rep], p)
	}
	var out [][]peer.ID
	for _, g := range by {
		if len(g) > 1 {
			slices.Sort(g)
			out = append(out, g)
		}
	}
	slices.SortFunc(out, func(a, b []peer.ID) int { return strings.Compare(string(a[0]), string(b[0])) })
	return out
}

func (pl *Placer) representativeLocked(p peer.ID) peer.ID {
	pl.computeGroupsLocked()
	if rep, ok := pl.groups[p]; ok {
		return rep
	}
	return p
}

// computeGroupsLocked recomputes the co-location groups (union-find over
// pairs with near-identical RTT vectors) when measurements changed.
func (pl *Placer) computeGroupsLocked() {
	if pl.groups != nil {
		return
	}
	targets := make([]peer.ID, 0, len(pl.rtt))
	for t := range pl.rtt {
		targets = append(targets, t)
	}
	slices.Sort(targets)
	parent := map[peer.ID]peer.ID{}
	var find func(peer.ID) peer.ID
	find = func(p peer.ID) peer.ID {
		q, ok := parent[p]
		if !ok || q == p {
			return p
		}
		r := find(q)
		parent[p] = r
		return r
	}
	for i, a := range targets {
		for _, b := range targets[i+1:] {
			if pl.alikeLocked(a, b) {
				ra, rb := find(a), find(b)
				if ra != rb {
					// The smaller ID represents the group.
					if rb < ra {
						ra, rb = rb, ra
					}
					parent[rb] = ra
				}
			}
		}
	}
	pl.groups = make(map[peer.ID]peer.ID, len(targets))
	for _, t := range targets {
		pl.groups[t] = find(t)
	}
}

func (pl *Placer) alikeLocked(a, b peer.ID) bool {
	// An operator's labels are the truth about its mirrors: never merge a
	// labelled mirror by timing (a labelled testnet on one machine has
	// identical RTTs everywhere).
	if _, ok := pl.labels[a]; ok {
		return false
	}
	if _, ok := pl.labels[b]; ok {
		return false
	}
	va, vb := pl.rtt[a], pl.rtt[b]
	// Vantages count once per observed domain (the smallest vantage ID
	// speaks for it): a farm of identities in one place, or unobserved
	// ones, cannot vote two mirrors together.
	speaker := map[string]peer.ID{}
	for v := range va {
		if v == a || v == b {
			continue
		}
		if _, ok := vb[v]; !ok {
			continue
		}
		d := pl.baseDomainLocked(v)
		if d == Unknown {
			continue
		}
		if cur, ok := speaker[d]; !ok || v < cur {
			speaker[d] = v
		}
	}
	common, agree := 0, 0
	for _, v := range speaker {
		ra, rb := va[v], vb[v]
		common++
		diff := ra - rb
		if diff < 0 {
			diff = -diff
		}
		limit := max(pl.cfg.ColocTolerance, time.Duration(pl.cfg.ColocRelTolerance*float64(max(ra, rb))))
		if diff <= limit {
			agree++
		}
	}
	return common >= pl.cfg.ColocMinVantages && float64(agree) >= pl.cfg.ColocAgreement*float64(common)
}

// ResolveReports places peers from signed observation reports alone:
// reports[target][reporter] is the address the reporter reached the
// target at. It is what a ledger recomputes from an epoch's evidence, where
// nobody's own connections can be checked: the reports are the only
// observations, and every reader of the same reports gets the same map.
//
// With no connection of its own to start from, it first seeds the peers
// whose observers are unanimous and independent. A peer is unanimous in
// base domain b when at least quorum reporters reached it and every one of
// them reached it in b. A unanimous peer is seeded in b when its
// reporters include unanimous peers of at least quorum distinct domains.
// Then [Resolve] places the rest from the seeds as a mirror does from its
// own connections: a target counts reports only from placed reporters, and
// needs agreement from quorum distinct domains. A peer placed by neither
// is [Unknown].
//
// A lie about a mirror's address therefore cannot place it by itself: it
// breaks the mirror's unanimity (the mirror falls back on agreement among
// placed observers, or on unknown, which counts once), and it places a
// mirror elsewhere only when observers in quorum placed domains tell the
// same lie, or when every observer of the mirror and of its observers
// lies alike. Like every verdict that anyone can recompute without a
// vantage point of their own, it assumes that most observers of a mirror
// are honest.
func ResolveReports(reports map[peer.ID]map[peer.ID]netip.Addr, asn *ASNTable, quorum int) map[peer.ID]string {
	quorum = max(quorum, 1)
	baseOf := memoBase()
	type agreed struct {
		base string
		addr netip.Addr // the smallest reported address
	}
	unanimous := make(map[peer.ID]agreed, len(reports))
	for t, rs := range reports {
		var u agreed
		n, ok := 0, true
		for r, a := range rs {
			if r == t || !a.IsValid() {
				continue
			}
			b := baseOf(asn, a)
			switch {
			case n == 0:
				u = agreed{b, a}
			case b != u.base:
				ok = false
			case a.Less(u.addr):
				u.addr = a
			}
			n++
		}
		if ok && n >= quorum {
			unanimous[t] = u
		}
	}
	direct := map[peer.ID]netip.Addr{}
	for t, u := range unanimous {
		spread := map[string]bool{}
		for r := range reports[t] {
			if ur, ok := unanimous[r]; ok && r != t {
				spread[ur.base] = true
			}
		}
		if len(spread) >= quorum {
			direct[t] = u.addr
		}
	}
	return Resolve(Observations{Direct: direct, Reports: reports, ASN: asn, Quorum: quorum})
}
