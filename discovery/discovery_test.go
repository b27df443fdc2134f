package discovery

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
)

func TestParseBootstrap(t *testing.T) {
	id := "12D3KooWAeEkh6zUPoPXpJcU5hiXqrvGT3ARgy5CJEtGZ7UnBiYb"
	ais, urls, err := ParseBootstrap([]string{
		"/ip4/127.0.0.1/tcp/4001/p2p/" + id,
		"/ip4/127.0.0.1/udp/4001/quic-v1/p2p/" + id,
		"http://mirror-0:8080/",
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ais) != 1 || len(ais[0].Addrs) != 2 {
		t.Errorf("two addresses of one peer should merge into one AddrInfo, got %v", ais)
	}
	if len(urls) != 1 || urls[0] != "http://mirror-0:8080" {
		t.Errorf("urls = %v", urls)
	}
	for _, bad := range []string{"/ip4/nonsense", "/ip4/127.0.0.1/tcp/4001", "http://", "not an address"} {
		_, _, err := ParseBootstrap([]string{bad})
		if !errors.Is(err, ErrBadBootstrap) || !strings.Contains(err.Error(), bad) {
			t.Errorf("%q: error %v should be ErrBadBootstrap and name the address", bad, err)
		}
	}
}

// Mirrors that know only one bootstrap peer find each other through the
// mirrornet DHT and connect directly.
func TestDHTFindsMirrorsBeyondBootstrap(t *testing.T) {
	mn, err := mocknet.WithNPeers(5)
	if err != nil {
		t.Fatal(err)
	}
	defer mn.Close()
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	hosts := mn.Hosts()
	boot := peer.AddrInfo{ID: hosts[0].ID(), Addrs: hosts[0].Addrs()}
	var ds []*Discovery
	for i, h := range hosts {
		cfg := Config{DHT: true, Retry: 100 * time.Millisecond, MinPeers: 8}
		if i > 0 {
			cfg.Bootstrap = []peer.AddrInfo{boot}
		}
		d, err := New(h, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	defer func() {
		for _, d := range ds {
			d.Close()
		}
	}()
	// A failure guard only: on a saturated machine the DHT's walks take
	// many times what they take on a quiet one.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if hosts[1].Network().Connectedness(hosts[4].ID()) == network.Connected {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("host 1 never found host 4 through the DHT; it knows %d peers", len(hosts[1].Network().Peers()))
		case <-tick.C:
		}
	}
	// The DHT speaks mirrornet's protocol, not the public IPFS DHT's.
	protos, _ := hosts[1].Peerstore().GetProtocols(hosts[0].ID())
	found := false
	for _, p := range protos {
		found = found || p == "/mirrornet/kad/1.0.0"
		if p == "/ipfs/kad/1.0.0" {
			t.Errorf("speaks the public IPFS DHT protocol")
		}
	}
	if !found {
		t.Errorf("peer does not speak /mirrornet/kad/1.0.0: %v", protos)
	}
}

func TestCloseTwice(t *testing.T) {
	mn, _ := mocknet.WithNPeers(1)
	defer mn.Close()
	d, err := New(mn.Hosts()[0], Config{DHT: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

// lineWriter hands each log line to a channel (dropping lines nobody
// waits for).
type lineWriter chan string

func (w lineWriter) Write(p []byte) (int, error) {
	select {
	case w <- string(p):
	default:
	}
	return len(p), nil
}

// A mirror found on the LAN whose first dial fails (here: no link yet)
// is dialled again until it is reached: mDNS reports it only once.
func TestLANMirrorRedialledAfterAFailedDial(t *testing.T) {
	mn, err := mocknet.WithNPeers(2)
	if err != nil {
		t.Fatal(err)
	}
	defer mn.Close()
	a, b := mn.Hosts()[0], mn.Hosts()[1]
	lines := make(lineWriter, 16)
	d, err := New(a, Config{Retry: 20 * time.Millisecond}, slog.New(slog.NewTextHandler(lines, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	notifee{d}.HandlePeerFound(peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()})
	// A failure guard only, as below.
	guard := time.After(time.Minute)
	for failed := false; !failed; {
		select {
		case l := <-lines:
			failed = strings.Contains(l, "mDNS peer unreachable")
		case <-guard:
			t.Fatal("the first dial, with no link, did not fail")
		}
	}
	if _, err := mn.LinkPeers(a.ID(), b.ID()); err != nil {
		t.Fatal(err)
	}
	for a.Network().Connectedness(b.ID()) != network.Connected {
		select {
		case <-guard:
			t.Fatal("the LAN mirror was not dialled again once reachable")
		case <-time.After(10 * time.Millisecond):
		}
	}
}
