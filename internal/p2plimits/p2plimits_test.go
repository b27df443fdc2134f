package p2plimits_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/internal/p2plimits"
)

func TestValidate(t *testing.T) {
	if err := p2plimits.DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	c := p2plimits.DefaultConfig()
	c.ConnsLow, c.ConnsHigh = 10, 5
	if err := c.Validate(); !errors.Is(err, p2plimits.ErrConfig) {
		t.Fatalf("low > high: %v", err)
	}
}

// A peer cannot open more inbound streams than StreamsPerPeer/2 on a
// mirror, however many it asks for; the limit is the resource manager's
// (a real loopback host, not a mock).
func TestStreamsPerPeerIsEnforced(t *testing.T) {
	c := p2plimits.DefaultConfig()
	c.StreamsPerPeer = 8 // 4 inbound
	opts, err := p2plimits.Options(c)
	if err != nil {
		t.Fatal(err)
	}
	server, err := libp2p.New(append(opts, libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))...)
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	release := make(chan struct{})
	defer close(release)
	server.SetStreamHandler("/test/hold", func(s network.Stream) {
		s.Write([]byte{1})
		<-release
		s.Reset()
	})
	client, err := libp2p.New(libp2p.NoListenAddrs)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := client.Connect(ctx, peer.AddrInfo{ID: server.ID(), Addrs: server.Addrs()}); err != nil {
		t.Fatal(err)
	}
	open := 0
	for range 12 {
		s, err := client.NewStream(ctx, server.ID(), "/test/hold")
		if err != nil {
			continue
		}
		b := make([]byte, 1)
		if _, err := s.Read(b); err == nil {
			open++
		}
	}
	if open != 4 {
		t.Fatalf("%d streams held open by one peer, want 4 (StreamsPerPeer/2)", open)
	}
}
