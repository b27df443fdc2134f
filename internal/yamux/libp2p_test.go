package yamux

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

func newHost(t *testing.T) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), Option(DefaultTransport))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// Two hosts with Option talk over this package's sessions: a stream
// carries 4 MiB both ways, and a reset reaches the other side as libp2p's
// network.ErrReset.
func TestLibp2pHostsUseThisMuxer(t *testing.T) {
	a, b := newHost(t), newHost(t)
	b.SetStreamHandler("/echo", func(s network.Stream) {
		defer s.Close()
		_, _ = io.Copy(s, s)
	})
	reset := make(chan error, 1)
	b.SetStreamHandler("/reset", func(s network.Stream) {
		for {
			_, err := s.Read(make([]byte, 1))
			select {
			case reset <- err:
			case <-t.Context().Done():
				return
			}
			if err != nil {
				return
			}
		}
	})
	if err := a.Connect(t.Context(), peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		t.Fatal(err)
	}
	s, err := a.NewStream(t.Context(), b.ID(), "/echo")
	if err != nil {
		t.Fatal(err)
	}
	var sess *Session
	if !s.Conn().As(&sess) || sess == nil {
		t.Fatal("the connection is not a session of this package")
	}
	data := bytes.Repeat([]byte("mirrornet"), 4<<20/9)
	go func() {
		_, _ = s.Write(data)
		_ = s.CloseWrite()
	}()
	got, err := io.ReadAll(s)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("echo: %d of %d bytes, %v", len(got), len(data), err)
	}

	r, err := a.NewStream(t.Context(), b.ID(), "/reset")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	// the handler has read the byte: it waits for the next
	if err := <-reset; err != nil {
		t.Fatal(err)
	}
	if err := r.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := <-reset; !errors.Is(err, network.ErrReset) {
		t.Fatalf("the handler read %v, want network.ErrReset", err)
	}
}
