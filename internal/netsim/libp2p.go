package netsim

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/transport"
	"github.com/libp2p/go-libp2p/p2p/security/noise"

	"github.com/mirrornet/mirrornet/internal/yamux"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Libp2pTransport returns a constructor for libp2p.Transport: a TCP-like
// transport whose connections are this network's streams, dialled from
// ip. Give the host listen addresses /ip4/<ip>/tcp/<port> and no other
// transport; libp2p's upgrader adds security and multiplexing.
func (n *Network) Libp2pTransport(ip netip.Addr) func(u transport.Upgrader, rcmgr network.ResourceManager) (*Transport, error) {
	return func(u transport.Upgrader, rcmgr network.ResourceManager) (*Transport, error) {
		if rcmgr == nil {
			rcmgr = &network.NullResourceManager{}
		}
		return &Transport{n: n, ip: ip, up: u, rcmgr: rcmgr}, nil
	}
}

// Transport is a libp2p transport over a simulated network.
type Transport struct {
	n     *Network
	ip    netip.Addr
	up    transport.Upgrader
	rcmgr network.ResourceManager
}

var _ transport.Transport = (*Transport)(nil)

// CanDial accepts /ip4/.../tcp/... addresses.
func (t *Transport) CanDial(a ma.Multiaddr) bool {
	_, err := addrPort(a)
	return err == nil
}

// Dial opens an upgraded connection to p at raddr.
func (t *Transport) Dial(ctx context.Context, raddr ma.Multiaddr, p peer.ID) (transport.CapableConn, error) {
	ap, err := addrPort(raddr)
	if err != nil {
		return nil, err
	}
	scope, err := t.rcmgr.OpenConnection(network.DirOutbound, true, raddr)
	if err != nil {
		return nil, err
	}
	if err := scope.SetPeer(p); err != nil {
		scope.Done()
		return nil, err
	}
	c, err := t.n.Dial(ctx, t.ip, ap)
	if err != nil {
		scope.Done()
		return nil, err
	}
	cc, err := t.up.Upgrade(ctx, t, maConn{c}, network.DirOutbound, p, scope)
	if err != nil {
		c.Close()
		return nil, err
	}
	return cc, nil
}

// Listen listens on laddr, which must carry this transport's IP.
func (t *Transport) Listen(laddr ma.Multiaddr) (transport.Listener, error) {
	ap, err := addrPort(laddr)
	if err != nil {
		return nil, err
	}
	if ap.Addr() != t.ip {
		return nil, fmt.Errorf("netsim: listen on %s from a transport for %s", ap, t.ip)
	}
	l, err := t.n.Listen(ap)
	if err != nil {
		return nil, err
	}
	return t.up.UpgradeGatedMaListener(t, t.up.GateMaListener(maListener{l})), nil
}

// Protocols is TCP.
func (t *Transport) Protocols() []int { return []int{ma.P_TCP} }

// Proxy is false.
func (t *Transport) Proxy() bool { return false }

func (t *Transport) String() string { return "netsim" }

func addrPort(a ma.Multiaddr) (netip.AddrPort, error) {
	na, err := manet.ToNetAddr(a)
	if err != nil {
		return netip.AddrPort{}, err
	}
	tcp, ok := na.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("netsim: not a TCP address: %s", a)
	}
	ap := tcp.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// maConn adds multiaddrs to a Conn.
type maConn struct{ *Conn }

func (c maConn) LocalMultiaddr() ma.Multiaddr {
	a, _ := manet.FromNetAddr(c.LocalAddr())
	return a
}

func (c maConn) RemoteMultiaddr() ma.Multiaddr {
	a, _ := manet.FromNetAddr(c.RemoteAddr())
	return a
}

// maListener is a manet.Listener.
type maListener struct{ l *Listener }

func (l maListener) Accept() (manet.Conn, error) {
	c, err := l.l.AcceptConn()
	if err != nil {
		return nil, err
	}
	return maConn{c}, nil
}
func (l maListener) Close() error   { return l.l.Close() }
func (l maListener) Addr() net.Addr { return l.l.Addr() }
func (l maListener) Multiaddr() ma.Multiaddr {
	a, _ := manet.FromNetAddr(l.l.Addr())
	return a
}

// HostPort is the port NewHost listens on.
const HostPort = 4001

// NewHost starts a libp2p host at ip with key, listening on
// /ip4/<ip>/tcp/4001 over this network only, with Noise and yamux (as
// mirrornet's real hosts: this repository's yamux, internal/yamux), no resource limits, no relay and no metrics.
// The caller closes it.
func (n *Network) NewHost(ip netip.Addr, key crypto.PrivKey) (host.Host, error) {
	return libp2p.New(
		libp2p.Identity(key),
		libp2p.NoTransports,
		libp2p.Transport(n.Libp2pTransport(ip)),
		libp2p.Security(noise.ID, noise.New),
		yamux.Option(yamux.DefaultTransport),
		libp2p.ListenAddrStrings(fmt.Sprintf("/ip4/%s/tcp/%d", ip, HostPort)),
		libp2p.ResourceManager(&network.NullResourceManager{}),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
	)
}
