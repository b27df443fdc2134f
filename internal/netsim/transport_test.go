package netsim

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
)

func TestLibp2pHostsPing(t *testing.T) {
	n, _ := New(Config{Latency: 5 * time.Millisecond})
	ka, _, _ := crypto.GenerateEd25519Key(nil)
	kb, _, _ := crypto.GenerateEd25519Key(nil)
	a, err := n.NewHost(ipA, ka)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := n.NewHost(ipB, kb)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		t.Fatal(err)
	}
	res := <-ping.Ping(ctx, a, b.ID())
	if res.Error != nil {
		t.Fatal(res.Error)
	}
	if res.RTT < 10*time.Millisecond {
		t.Fatalf("ping RTT %v below the simulated 10 ms", res.RTT)
	}
	if n.Meter(ipA).SentBytes.Load() == 0 || n.Meter(ipB).RecvBytes.Load() == 0 {
		t.Fatal("traffic not counted")
	}
}

func TestMemberlistJoinsAndDetects(t *testing.T) {
	n, _ := New(Config{Latency: 2 * time.Millisecond})
	dead := make(chan string, 16)
	var ms []*memberlist.Memberlist
	for i := range 4 {
		ap := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, 0, byte(i + 1)}), 7946)
		tr, err := n.MemberlistTransport(ap)
		if err != nil {
			t.Fatal(err)
		}
		cfg := memberlist.DefaultLocalConfig()
		cfg.Name = fmt.Sprint("m", i)
		cfg.Transport = tr
		cfg.LogOutput = io.Discard
		if i == 0 {
			cfg.Events = &memberlist.ChannelEventDelegate{Ch: evCh(dead)}
		}
		m, err := memberlist.Create(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Shutdown()
		if i > 0 {
			if _, err := m.Join([]string{ms[0].LocalNode().FullAddress().Addr}); err != nil {
				t.Fatal(err)
			}
		}
		ms = append(ms, m)
	}
	n.Isolate(netip.AddrFrom4([4]byte{10, 1, 0, 4}))
	ms[3].Shutdown()
	select {
	case name := <-dead:
		if name != "m3" {
			t.Fatalf("%s declared dead, want m3", name)
		}
	case <-time.After(time.Minute): // failure guard only
		t.Fatal("crash not detected")
	}
}

// evCh forwards leave events' names to out.
func evCh(out chan<- string) chan memberlist.NodeEvent {
	ch := make(chan memberlist.NodeEvent, 64)
	go func() {
		for ev := range ch {
			if ev.Event == memberlist.NodeLeave {
				out <- ev.Node.Name
			}
		}
	}()
	return ch
}
