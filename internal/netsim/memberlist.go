package netsim

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// MemberlistTransport is a memberlist.Transport on this network for the
// member at addr: datagrams for probes and gossip, streams for push-pull
// and fallback probes, with the same latency, loss and partitions as
// everything else, counted in the same Meter.
func (n *Network) MemberlistTransport(addr netip.AddrPort) (*MLTransport, error) {
	t := &MLTransport{n: n, addr: addr, packets: make(chan *memberlist.Packet, 1024), streams: make(chan net.Conn, 64), done: make(chan struct{})}
	stop, err := n.ListenPacket(addr, t.recv)
	if err != nil {
		return nil, err
	}
	l, err := n.Listen(addr)
	if err != nil {
		stop()
		return nil, err
	}
	t.stopPackets, t.l = stop, l
	t.wg.Add(1)
	go t.accept()
	return t, nil
}

// MLTransport is a memberlist transport over a simulated network.
type MLTransport struct {
	n           *Network
	addr        netip.AddrPort
	packets     chan *memberlist.Packet
	streams     chan net.Conn
	l           *Listener
	stopPackets func()
	done        chan struct{}
	once        sync.Once
	wg          sync.WaitGroup
}

var _ memberlist.Transport = (*MLTransport)(nil)

func (t *MLTransport) recv(d Datagram) {
	select {
	case t.packets <- &memberlist.Packet{Buf: d.Data, From: net.UDPAddrFromAddrPort(d.From), Timestamp: d.At}:
	case <-t.done:
	default: // a full socket buffer drops the packet
	}
}

func (t *MLTransport) accept() {
	defer t.wg.Done()
	for {
		c, err := t.l.AcceptConn()
		if err != nil {
			return
		}
		select {
		case t.streams <- c:
		case <-t.done:
			c.Close()
			return
		}
	}
}

// FinalAdvertiseAddr is the member's address.
func (t *MLTransport) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	return t.addr.Addr().AsSlice(), int(t.addr.Port()), nil
}

// WriteTo sends a datagram.
func (t *MLTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	to, err := netip.ParseAddrPort(addr)
	if err != nil {
		return time.Time{}, fmt.Errorf("netsim: %w", err)
	}
	t.n.SendPacket(t.addr, to, b)
	return time.Now(), nil
}

// PacketCh delivers received datagrams.
func (t *MLTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }

// DialTimeout opens a stream.
func (t *MLTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	to, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("netsim: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return t.n.Dial(ctx, t.addr.Addr(), to)
}

// StreamCh delivers accepted streams.
func (t *MLTransport) StreamCh() <-chan net.Conn { return t.streams }

// Shutdown stops receiving. Safe to call twice.
func (t *MLTransport) Shutdown() error {
	t.once.Do(func() {
		close(t.done)
		t.stopPackets()
		t.l.Close()
		t.wg.Wait()
	})
	return nil
}
