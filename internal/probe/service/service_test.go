package service

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/domain"
	"github.com/mirrornet/mirrornet/internal/health"
	"github.com/mirrornet/mirrornet/internal/probe"
	"github.com/mirrornet/mirrornet/internal/probe/probetest"
	"github.com/mirrornet/mirrornet/internal/probe/runner"
	"github.com/mirrornet/mirrornet/protocol"
)

func TestProbeConfigProfiles(t *testing.T) {
	for _, tc := range []struct {
		prof              string
		probeK            int
		k, observers      int
		interval, timeout time.Duration
	}{
		{"local", 0, 1, 3, time.Second, time.Second},
		{"lan", 0, 3, 6, 30 * time.Second, 5 * time.Second},
		{"wan", 0, 3, 6, time.Minute, 15 * time.Second},
		{"lan", 5, 5, 10, 30 * time.Second, 5 * time.Second},
		{"local", 2, 2, 4, time.Second, time.Second},
	} {
		sc, err := ProfileConfig(tc.prof, tc.probeK)
		rc := sc.Runner
		if err != nil {
			t.Fatal(err)
		}
		if rc.K != tc.k || rc.Observers != tc.observers || rc.Interval != tc.interval || rc.Timeout != tc.timeout {
			t.Errorf("%s k=%d: got K=%d observers=%d interval=%s timeout=%s", tc.prof, tc.probeK, rc.K, rc.Observers, rc.Interval, rc.Timeout)
		}
	}
}

func TestProbeConnIP(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want string // "" = no IP
	}{
		{"/ip4/203.0.113.7/tcp/4001", "203.0.113.7"},
		{"/ip4/127.0.0.1/udp/4001/quic-v1", "127.0.0.1"},
		{"/ip6/2001:db8::1/tcp/4001", "2001:db8::1"},
		{"/ip6/::ffff:198.51.100.1/tcp/4001", "198.51.100.1"},
		{"/ip4/203.0.113.7/tcp/4001/p2p/12D3KooWGEdfCPLjgH5T3L23FGQCKSexEbpLPJFJDSzPXTSJgHnb/p2p-circuit", ""},
		{"/dns4/example.org/tcp/4001", ""},
	} {
		a, err := ma.NewMultiaddr(tc.addr)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		if ip, ok := ConnIP(a); ok {
			got = ip.String()
		}
		if got != tc.want {
			t.Errorf("%s: IP %q, want %q", tc.addr, got, tc.want)
		}
	}
}

type fakeView struct{ alive []peer.ID }

func (v fakeView) Mirrors(time.Time) []runner.Mirror {
	var out []runner.Mirror
	for _, p := range v.alive {
		out = append(out, runner.Mirror{ID: p, Bundles: []string{testBundle}})
	}
	return out
}
func (v fakeView) Alive(time.Time) []peer.ID                   { return v.alive }
func (v fakeView) Holds(_ peer.ID, b string, _ time.Time) bool { return b == testBundle }
func (v fakeView) HolderIDs(string, time.Time) []peer.ID       { return v.alive }
func (v fakeView) Known(p peer.ID, _ time.Time) bool           { return slices.Contains(v.alive, p) }
func (v fakeView) All(time.Time) []health.Mirror               { return nil }

type fakeNet struct{}

func (fakeNet) Addrs() []ma.Multiaddr  { return nil }
func (fakeNet) Connected(peer.ID) bool { return false }

type fakeStore struct{}

func (fakeStore) Followed() []string   { return nil }
func (fakeStore) Usage() int64         { return 0 }
func (fakeStore) Follow(cid.Cid) error { return nil }

const testBundle = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"

// TestRefusalsAreCountedAndLogged: an observation report from a peer this
// node never observed places nobody; it is one debug line with the reason
// and a count in mirrornet_domain_reports_total{result="unobserved"}. A
// forged pass is one debug line and mirrornet_probe_results_total with
// reason "receipt".
func TestRefusalsAreCountedAndLogged(t *testing.T) {
	skey, self := probetest.Key(t, 1)
	gkey, ghost := probetest.Key(t, 2)
	_, target := probetest.Key(t, 3)
	cfg, err := ProfileConfig(probe.ProfileLocal, 0)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	pub := runner.PublisherFunc(func(context.Context, []byte) error { return nil })
	svc, err := New(cfg, skey, fakeView{[]peer.ID{self, ghost, target}}, fakeNet{}, fakeStore{}, pub,
		func() time.Time { return now }, reg, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()

	p := probetest.Result(t, ghost, probetest.Spec{Target: target, Bundle: testBundle, Outcome: protocol.OutcomeFail,
		At: now, EpochLength: cfg.Runner.EpochLength, Addr: "192.0.2.7"})
	raw := probetest.Sign(t, gkey, p)
	st, verr := attest.Verify(raw, now)
	if v, reason := svc.Apply(st, verr, now); v != attest.Accept {
		t.Fatalf("genuine result from an assigned observer: %v %s", v, reason)
	}
	if d := svc.Domain(target); d != domain.Unknown {
		t.Errorf("an unobserved reporter placed the target in %q", d)
	}
	p.Outcome = protocol.OutcomePass
	p.Seq++
	st, verr = attest.Verify(probetest.Forge(t, gkey, p), now)
	if v, reason := svc.Apply(st, verr, now); v != attest.Reject || reason != "payload" {
		t.Errorf("pass without a receipt: %v %s", v, reason)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			counts[key] = m.GetCounter().GetValue()
		}
	}
	if counts["mirrornet_domain_reports_total,result=unobserved"] != 1 {
		t.Errorf("unobserved reports counted %v (metrics %v)", counts["mirrornet_domain_reports_total,result=unobserved"], counts)
	}
	if counts["mirrornet_probe_results_total,reason=payload,verdict=reject"] != 1 {
		t.Errorf("forged pass not counted: %v", counts)
	}
	out := logs.String()
	for _, want := range []string{"observation report refused", "reason=unobserved", "probe result refused", "verdict=reject"} {
		if !strings.Contains(out, want) {
			t.Errorf("debug log lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "observation report refused"); n != 1 {
		t.Errorf("%d log lines for one refused report", n)
	}
}
