package domain

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

func peers(t *testing.T, n int) []peer.ID {
	t.Helper()
	rng := rand.NewChaCha8([32]byte{9})
	out := make([]peer.ID, n)
	for i := range out {
		_, pub, err := crypto.GenerateEd25519Key(rng)
		if err != nil {
			t.Fatal(err)
		}
		out[i], _ = peer.IDFromPublicKey(pub)
	}
	return out
}

func newPlacer(t *testing.T, asn *ASNTable, labels map[peer.ID]string) *Placer {
	t.Helper()
	pl, err := New(DefaultConfig(), asn, labels)
	if err != nil {
		t.Fatal(err)
	}
	return pl
}

func TestSixteenInOneSlash24(t *testing.T) {
	ps := peers(t, 24)
	pl := newPlacer(t, nil, nil)
	for i, p := range ps[:16] {
		pl.Observe(p, netip.MustParseAddr(fmt.Sprintf("203.0.113.%d", i+1)))
	}
	for i, p := range ps[16:] {
		pl.Observe(p, netip.MustParseAddr(fmt.Sprintf("198.51.%d.7", i)))
	}
	if got := pl.EffectiveRedundancy(ps); got != 9 {
		t.Fatalf("effective redundancy %d, want 9", got)
	}
	if d := pl.Domain(ps[3]); d != "net:203.0.113.0/24" {
		t.Errorf("domain %q", d)
	}
}

func TestLoopbackIsOneDomain(t *testing.T) {
	ps := peers(t, 3)
	pl := newPlacer(t, nil, nil)
	for _, p := range ps {
		pl.Observe(p, netip.MustParseAddr("127.0.0.1"))
	}
	if got := pl.EffectiveRedundancy(ps); got != 1 {
		t.Fatalf("three mirrors on 127.0.0.1: %d, want 1", got)
	}
}

func TestIPv6Slash48AndMapped(t *testing.T) {
	ps := peers(t, 4)
	pl := newPlacer(t, nil, nil)
	pl.Observe(ps[0], netip.MustParseAddr("2001:db8:1:1::1"))
	pl.Observe(ps[1], netip.MustParseAddr("2001:db8:1:ffff::9"))
	pl.Observe(ps[2], netip.MustParseAddr("2001:db8:2::1"))
	pl.Observe(ps[3], netip.MustParseAddr("::ffff:192.0.2.1"))
	if d := pl.Domain(ps[0]); d != "net:2001:db8:1::/48" {
		t.Errorf("v6 domain %q", d)
	}
	if d := pl.Domain(ps[3]); d != "net:192.0.2.0/24" {
		t.Errorf("mapped v4 domain %q", d)
	}
	if got := pl.EffectiveRedundancy(ps); got != 3 {
		t.Errorf("redundancy %d, want 3", got)
	}
}

const asnTSV = "1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\n" +
	"3.0.0.0\t3.127.255.255\t16509\tUS\tAMAZON-02\n" +
	"3.128.0.0\t3.255.255.255\t0\tNone\tNot routed\n" +
	"2600:1f00::\t2600:1fff:ffff:ffff:ffff:ffff:ffff:ffff\t16509\tUS\tAMAZON-02\n"

func TestASN(t *testing.T) {
	tab, err := ParseASN(strings.NewReader(asnTSV), "ip2asn-combined.tsv")
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]uint32{
		"1.0.0.7": 13335, "3.1.2.3": 16509, "3.127.255.255": 16509, "3.200.0.1": 0, "9.9.9.9": 0,
		"2600:1f18::1": 16509, "2001:db8::1": 0,
	} {
		if got := tab.Lookup(netip.MustParseAddr(addr)); got != want {
			t.Errorf("%s: AS%d, want AS%d", addr, got, want)
		}
	}
	ps := peers(t, 4)
	pl := newPlacer(t, tab, nil)
	pl.Observe(ps[0], netip.MustParseAddr("3.1.2.3"))
	pl.Observe(ps[1], netip.MustParseAddr("3.90.0.1"))     // other /24, same AS
	pl.Observe(ps[2], netip.MustParseAddr("2600:1f18::1")) // v6, same AS
	pl.Observe(ps[3], netip.MustParseAddr("3.200.0.1"))    // unrouted: falls back to /24
	if d := pl.Domain(ps[1]); d != "asn:AS16509" {
		t.Errorf("domain %q", d)
	}
	if d := pl.Domain(ps[3]); d != "net:3.200.0.0/24" {
		t.Errorf("unrouted domain %q", d)
	}
	if got := pl.EffectiveRedundancy(ps); got != 2 {
		t.Errorf("redundancy %d, want 2", got)
	}
}

func TestASNErrors(t *testing.T) {
	for name, in := range map[string]string{
		"too few fields": "1.0.0.0\t1.0.0.255\n",
		"bad address":    "1.0.0.0\t1.0.0.x\t1\tUS\tX\n",
		"bad AS":         "1.0.0.0\t1.0.0.255\tABC\tUS\tX\n",
		"reversed":       "1.0.0.9\t1.0.0.1\t1\tUS\tX\n",
		"mixed family":   "1.0.0.0\t2001:db8::\t1\tUS\tX\n",
		"overlap":        "1.0.0.0\t1.0.0.255\t1\tUS\tX\n1.0.0.128\t1.0.1.0\t2\tUS\tY\n",
		"empty":          "",
	} {
		_, err := ParseASN(strings.NewReader(in), "f.tsv")
		if !errors.Is(err, ErrASNFile) {
			t.Errorf("%s: %v", name, err)
		}
	}
	_, err := ParseASN(strings.NewReader("1.0.0.0\t1.0.0.255\t1\tUS\tX\nnonsense\n"), "f.tsv")
	if err == nil || !strings.Contains(err.Error(), "f.tsv:2") {
		t.Errorf("error does not name the line: %v", err)
	}
	if _, err := LoadASNFile(filepath.Join(t.TempDir(), "missing.tsv")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestLabels(t *testing.T) {
	ps := peers(t, 3)
	file := filepath.Join(t.TempDir(), "labels")
	body := fmt.Sprintf("# testnet\n%s dc1\n\n%s dc1\n%s dc2\n", ps[0], ps[1], ps[2])
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	labels, err := LoadLabelFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pl := newPlacer(t, nil, labels)
	for _, p := range ps {
		pl.Observe(p, netip.MustParseAddr("127.0.0.1"))
	}
	if d := pl.Domain(ps[0]); d != "label:dc1@net:127.0.0.0/24" {
		t.Errorf("domain %q", d)
	}
	if got := pl.EffectiveRedundancy(ps); got != 2 {
		t.Errorf("redundancy %d, want 2", got)
	}
	// A label splits an observed domain; it never places a mirror nobody
	// observed.
	unseen := newPlacer(t, nil, labels)
	if d := unseen.Domain(ps[2]); d != Unknown {
		t.Errorf("labelled but unobserved: %q", d)
	}
	for name, in := range map[string]string{
		"one field":  ps[0].String() + "\n",
		"bad peer":   "notapeer dc1\n",
		"bad label":  ps[0].String() + " dc/1\n",
		"duplicate":  ps[0].String() + " a\n" + ps[0].String() + " b\n",
		"three flds": ps[0].String() + " a b\n",
	} {
		if _, err := ParseLabels(strings.NewReader(in), "labels"); !errors.Is(err, ErrLabelFile) || !strings.Contains(err.Error(), "labels:") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := LoadLabelFile(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
}

// TestRegionsOnlyName: self-declared regions name a domain, never create
// one; every unobserved mirror is in the one domain "unknown", which counts
// once.
func TestRegionsOnlyName(t *testing.T) {
	ps := peers(t, 5)
	pl := newPlacer(t, nil, nil)
	pl.SetRegion(ps[0], "eu")
	pl.SetRegion(ps[1], "us")
	pl.SetRegion(ps[2], "ap")
	pl.Observe(ps[3], netip.MustParseAddr("192.0.2.1"))
	pl.SetRegion(ps[3], "mars")
	if d := pl.Domain(ps[0]); d != Unknown || pl.Name(ps[0]) != "eu" {
		t.Errorf("declared region: domain %q, name %q", d, pl.Name(ps[0]))
	}
	if d := pl.Domain(ps[3]); d != "net:192.0.2.0/24" {
		t.Errorf("observed domain %q", d)
	}
	if d := pl.Domain(ps[4]); d != Unknown {
		t.Errorf("unknown domain %q", d)
	}
	// 1 observed + all the unobserved together.
	if got := pl.EffectiveRedundancy(ps); got != 2 {
		t.Errorf("redundancy %d, want 2", got)
	}
}

// TestReports: a mirror this node never connected to is placed from signed
// reports only when observers in two distinct observed domains agree. A
// farm in one domain, or reporters nobody observed, place nobody.
func TestReports(t *testing.T) {
	ps := peers(t, 40)
	target, honest, farm, ghosts := ps[0], ps[1:4], ps[4:34], ps[34:37]
	pl := newPlacer(t, nil, nil)
	for i, h := range honest {
		pl.Observe(h, netip.MustParseAddr(fmt.Sprintf("198.51.%d.1", i)))
	}
	for _, f := range farm {
		pl.Observe(f, netip.MustParseAddr("203.0.113.9"))
	}
	// The whole farm and the ghosts claim the target sits in 192.0.2.0/24.
	for _, r := range append(slices.Clone(farm), ghosts...) {
		pl.Report(r, target, netip.MustParseAddr("192.0.2.5"))
	}
	if d := pl.Domain(target); d != Unknown || pl.Observed(target) {
		t.Fatalf("one farm and three ghosts placed the target in %q", d)
	}
	// Ghosts vouch for each other: still unknown.
	for _, g := range ghosts {
		for _, o := range ghosts {
			pl.Report(o, g, netip.MustParseAddr(fmt.Sprintf("100.64.%d.1", len(o)%200)))
		}
	}
	for _, g := range ghosts {
		if d := pl.Domain(g); d != Unknown {
			t.Errorf("ghost placed in %q by ghosts", d)
		}
	}
	// One honest domain agrees with the farm: two domains, placed.
	pl.Report(honest[0], target, netip.MustParseAddr("192.0.2.77"))
	if d := pl.Domain(target); d != "net:192.0.2.0/24" {
		t.Errorf("two observed domains agree: %q", d)
	}
	// The farm counts once however many identities: the ghosts and the
	// farm hold two domains (unknown, net:203.0.113.0/24), not 33.
	if got := pl.EffectiveRedundancy(append(slices.Clone(farm), ghosts...)); got != 2 {
		t.Errorf("farm and ghosts: effective redundancy %d, want 2", got)
	}
	// Pure: Resolve on the same observations gives the same answer.
	if got := Resolve(pl.Observations())[target]; got != "net:192.0.2.0/24" {
		t.Errorf("Resolve: %q", got)
	}
	one := newPlacer(t, nil, nil)
	one.cfg.Quorum = 1
	one.Observe(honest[0], netip.MustParseAddr("198.51.0.1"))
	one.Report(honest[0], target, netip.MustParseAddr("192.0.2.5"))
	if d := one.Domain(target); d != "net:192.0.2.0/24" {
		t.Errorf("quorum 1: %q", d)
	}
}

func TestColocation(t *testing.T) {
	ps := peers(t, 12)
	pl := newPlacer(t, nil, nil)
	targets, vantages := ps[:4], ps[4:]
	for i, p := range targets {
		pl.Observe(p, netip.MustParseAddr(fmt.Sprintf("192.0.%d.1", i)))
	}
	for i, v := range vantages {
		pl.Observe(v, netip.MustParseAddr(fmt.Sprintf("198.18.%d.1", i)))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, v := range vantages {
		base := time.Duration(5+rng.IntN(80)) * time.Millisecond
		// targets 0 and 1 share a rack: same RTT from everywhere (±0.2 ms).
		pl.ObserveRTT(v, targets[0], base)
		pl.ObserveRTT(v, targets[1], base+200*time.Microsecond)
		pl.ObserveRTT(v, targets[2], time.Duration(5+rng.IntN(80))*time.Millisecond)
		pl.ObserveRTT(v, targets[3], time.Duration(5+rng.IntN(80))*time.Millisecond)
	}
	groups := pl.Colocated()
	if len(groups) != 1 || len(groups[0]) != 2 {
		t.Fatalf("groups %v", groups)
	}
	if pl.Domain(targets[0]) != pl.Domain(targets[1]) {
		t.Error("co-located mirrors in distinct domains")
	}
	if got := pl.EffectiveRedundancy(targets); got != 3 {
		t.Errorf("redundancy %d, want 3", got)
	}
	// Too few vantages: no verdict.
	pl2 := newPlacer(t, nil, nil)
	for i, v := range vantages {
		pl2.Observe(v, netip.MustParseAddr(fmt.Sprintf("198.18.%d.1", i)))
	}
	for _, v := range vantages[:2] {
		pl2.ObserveRTT(v, targets[0], 10*time.Millisecond)
		pl2.ObserveRTT(v, targets[1], 10*time.Millisecond)
	}
	if g := pl2.Colocated(); len(g) != 0 {
		t.Errorf("flagged from two vantages: %v", g)
	}
	// Many vantages in one domain are one vantage: a farm cannot vote an
	// honest mirror into its rack.
	pl3 := newPlacer(t, nil, nil)
	for _, v := range vantages {
		pl3.Observe(v, netip.MustParseAddr("203.0.113.9"))
		pl3.ObserveRTT(v, targets[0], 10*time.Millisecond)
		pl3.ObserveRTT(v, targets[1], 10*time.Millisecond)
	}
	if g := pl3.Colocated(); len(g) != 0 {
		t.Errorf("flagged by one domain's vantages: %v", g)
	}
}

// An operator's labels win over timing: mirrors labelled into distinct
// domains stay distinct even with identical RTTs (a labelled testnet on one
// machine).
func TestLabelsAreNotMergedByTiming(t *testing.T) {
	ps := peers(t, 10)
	targets, vantages := ps[:3], ps[3:]
	labels := map[peer.ID]string{targets[0]: "dc1", targets[1]: "dc2", targets[2]: "dc3"}
	pl := newPlacer(t, nil, labels)
	for i, v := range vantages {
		pl.Observe(v, netip.MustParseAddr(fmt.Sprintf("198.18.%d.1", i)))
		for _, tg := range targets {
			pl.Observe(tg, netip.MustParseAddr("127.0.0.1"))
			pl.ObserveRTT(v, tg, time.Millisecond)
		}
	}
	if g := pl.Colocated(); len(g) != 0 {
		t.Errorf("labelled mirrors flagged co-located: %v", g)
	}
	if got := pl.EffectiveRedundancy(targets); got != 3 {
		t.Errorf("redundancy %d, want 3", got)
	}
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	c.ColocAgreement = 0
	if _, err := New(c, nil, nil); !errors.Is(err, ErrConfig) {
		t.Errorf("%v", err)
	}
}

func FuzzParseASN(f *testing.F) {
	f.Add([]byte(asnTSV))
	f.Fuzz(func(t *testing.T, data []byte) {
		tab, err := ParseASN(strings.NewReader(string(data)), "fuzz")
		if err == nil {
			tab.Lookup(netip.MustParseAddr("1.2.3.4"))
		}
	})
}

func FuzzParseLabels(f *testing.F) {
	f.Add([]byte("12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA dc1\n# c\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		labels, err := ParseLabels(strings.NewReader(string(data)), "fuzz")
		if err == nil {
			for p, l := range labels {
				if p == "" || l == "" {
					t.Fatalf("empty entry %q %q", p, l)
				}
			}
		}
	})
}

// ResolveReports, from signed reports alone: honest observers place a farm
// of fourteen in its one /24 and six independents in theirs; the farm's
// reports about each other in made-up /24s place none of them there; a
// mirror reported from one domain only, or by one observer, stays
// unknown.
func TestResolveReports(t *testing.T) {
	ps := peers(t, 24)
	farm, solo := ps[:14], ps[14:20]
	alone, lonely := ps[20], ps[21]
	addr := map[peer.ID]netip.Addr{}
	for i, p := range farm {
		addr[p] = netip.MustParseAddr(fmt.Sprintf("203.0.113.%d", i+1))
	}
	for i, p := range solo {
		addr[p] = netip.MustParseAddr(fmt.Sprintf("198.51.%d.7", i))
	}
	addr[alone] = netip.MustParseAddr("192.0.2.9")
	addr[lonely] = netip.MustParseAddr("192.0.2.10")
	reports := map[peer.ID]map[peer.ID]netip.Addr{}
	report := func(r, t peer.ID, a netip.Addr) {
		if reports[t] == nil {
			reports[t] = map[peer.ID]netip.Addr{}
		}
		reports[t][r] = a
	}
	// Every independent observes every mirror truthfully.
	for _, r := range solo {
		for _, t := range append(append([]peer.ID{}, farm...), solo...) {
			if r != t {
				report(r, t, addr[t])
			}
		}
	}
	// The farm reports each of its members in a /24 of its own.
	for _, r := range farm {
		for j, t := range farm {
			if r != t {
				report(r, t, netip.MustParseAddr(fmt.Sprintf("10.%d.0.1", j)))
			}
		}
	}
	// alone is seen by two farm members (one domain, however they report
	// each other); lonely by one independent.
	report(farm[0], alone, addr[alone])
	report(farm[1], alone, addr[alone])
	report(solo[0], lonely, addr[lonely])

	got := ResolveReports(reports, nil, 2)
	for _, p := range farm {
		if got[p] != "net:203.0.113.0/24" {
			t.Errorf("farm member placed in %q, want net:203.0.113.0/24", got[p])
		}
	}
	for i, p := range solo {
		if want := fmt.Sprintf("net:198.51.%d.0/24", i); got[p] != want {
			t.Errorf("independent %d placed in %q, want %s", i, got[p], want)
		}
	}
	if got[alone] != Unknown || got[lonely] != Unknown {
		t.Errorf("reported from one domain: %q; by one observer: %q; want both unknown", got[alone], got[lonely])
	}
	// The same reports in another map order place the same.
	again := ResolveReports(reports, nil, 2)
	if len(again) != len(got) {
		t.Fatal("different sizes")
	}
	for p, d := range got {
		if again[p] != d {
			t.Fatalf("%s: %q then %q", p, d, again[p])
		}
	}
	// Reports from the farm alone, however many, place nobody.
	only := map[peer.ID]map[peer.ID]netip.Addr{}
	for _, t := range farm {
		for _, r := range farm {
			if r != t {
				if only[t] == nil {
					only[t] = map[peer.ID]netip.Addr{}
				}
				only[t][r] = addr[t]
			}
		}
	}
	for p, d := range ResolveReports(only, nil, 2) {
		if d != Unknown {
			t.Errorf("%s placed in %q by one network's reports", p, d)
		}
	}
}
