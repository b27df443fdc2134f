// Package domain places mirrors in failure domains from what others observe
// of them, so that redundancy is counted in independent places rather than
// in peer IDs: sixteen mirrors behind one /24 are one copy, not sixteen.
//
// A mirror's domain is, in order of precedence:
//
//   - "label:<name>" from an operator's label file (testnets; see
//     [ParseLabels]);
//   - "asn:AS<n>" when an IP-to-ASN table is loaded (iptoasn TSV; see
//     [ParseASN]) and the mirror's most observed address is routed;
//   - "net:<prefix>" for that address's IPv4 /24 or IPv6 /48;
//   - "region:<name>" from the mirror's self-declared liveness Region, only
//     when nothing about it was observed; such domains weigh half in
//     [Placer.EffectiveRedundancy];
//   - "peer:<id>" when nothing at all is known.
//
// Mirrors whose RTT vectors, measured from many vantage points, are
// near-identical are flagged as likely co-located and merged into one
// domain. The package is a pure core: no goroutines, no network I/O, no
// clock. [LoadASNFile] and [LoadLabelFile] read files once at start-up.
package domain

import (
	"bufio"
	"errors"
	"fmt"
	"io"
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
}

// DefaultConfig flags pairs alike within 1 ms or 5% from at least 5
// vantages, 90% of them agreeing.
func DefaultConfig() Config {
	return Config{ColocMinVantages: 5, ColocTolerance: time.Millisecond, ColocRelTolerance: 0.05, ColocAgreement: 0.9}
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
	}
	return nil
}

// Placer places peers in failure domains. It is safe for concurrent use.
type Placer struct {
	cfg    Config
	asn    *ASNTable
	labels map[peer.ID]string

	mu       sync.Mutex
	observed map[peer.ID]map[netip.Addr]int
	regions  map[peer.ID]string
	rtt      map[peer.ID]map[peer.ID]time.Duration // target -> vantage -> RTT
	groups   map[peer.ID]peer.ID                   // co-location representative; nil when stale
}

// New returns a Placer. asn and labels may be nil.
func New(cfg Config, asn *ASNTable, labels map[peer.ID]string) (*Placer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Placer{
		cfg: cfg, asn: asn, labels: labels,
		observed: map[peer.ID]map[netip.Addr]int{}, regions: map[peer.ID]string{},
		rtt: map[peer.ID]map[peer.ID]time.Duration{},
	}, nil
}

// Observe records that p was seen connecting from (or reachable at) a, as
// the remote address of a connection. Call it on every new connection.
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
	}
}

// Forget drops everything observed about p.
func (pl *Placer) Forget(p peer.ID) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	delete(pl.observed, p)
	delete(pl.regions, p)
	delete(pl.rtt, p)
	for _, m := range pl.rtt {
		delete(m, p)
	}
	pl.groups = nil
}

// SetRegion records p's self-declared region (liveness Region; "" clears).
func (pl *Placer) SetRegion(p peer.ID, region string) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if region == "" {
		delete(pl.regions, p)
	} else {
		pl.regions[p] = region
	}
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

// baseDomainLocked is p's domain before co-location merging, and whether
// it rests on self-declaration only.
func (pl *Placer) baseDomainLocked(p peer.ID) (string, bool) {
	if l, ok := pl.labels[p]; ok {
		return "label:" + l, false
	}
	if addr, ok := pl.mainAddrLocked(p); ok {
		if asn := pl.asn.Lookup(addr); asn != 0 {
			return fmt.Sprintf("asn:AS%d", asn), false
		}
		bits := 24
		if !addr.Is4() {
			bits = 48
		}
		pfx, _ := addr.Prefix(bits)
		return "net:" + pfx.String(), false
	}
	if r, ok := pl.regions[p]; ok {
		return "region:" + r, true
	}
	return "peer:" + p.String(), false
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

// Domain returns p's failure domain (see the package doc). Co-located
// peers share the domain of the group's smallest member.
func (pl *Placer) Domain(p peer.ID) string {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	d, _ := pl.baseDomainLocked(pl.representativeLocked(p))
	return d
}

// EffectiveRedundancy returns the number of distinct failure domains among
// holders (co-located groups merged). Domains known only from
// self-declared regions count half, rounded down. Pass verified holders
// only: this counts places, not proofs.
func (pl *Placer) EffectiveRedundancy(holders []peer.ID) int {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	observed, declared := map[string]bool{}, map[string]bool{}
	for _, h := range holders {
		d, selfDeclared := pl.baseDomainLocked(pl.representativeLocked(h))
		if selfDeclared {
			declared[d] = true
		} else {
			observed[d] = true
		}
	}
	return len(observed) + len(declared)/2
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
	common, agree := 0, 0
	for v, ra := range va {
		if v == b {
			continue
		}
		rb, ok := vb[v]
		if !ok || v == a {
			continue
		}
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
