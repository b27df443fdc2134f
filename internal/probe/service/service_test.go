package service

import (
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"
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
		if ip, ok := connIP(a); ok {
			got = ip.String()
		}
		if got != tc.want {
			t.Errorf("%s: IP %q, want %q", tc.addr, got, tc.want)
		}
	}
}
