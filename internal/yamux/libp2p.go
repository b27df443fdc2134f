package yamux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
)

// ID is yamux's protocol ID: this package speaks the same wire protocol as
// go-libp2p's yamux, so peers running stock go-libp2p, kubo or js-libp2p
// talk to it unchanged.
const ID = "/yamux/1.0.0"

// Transport is a network.Multiplexer over this package's sessions: the
// counterpart of go-libp2p's p2p/muxer/yamux.Transport (v0.51.0), with the
// same stream and connection semantics.
type Transport Config

var _ network.Multiplexer = (*Transport)(nil)

// DefaultTransport has go-libp2p's yamux settings (16 MiB maximum stream
// window, no read buffer, no limit on incoming streams of its own: the
// resource manager limits them) and a FastStreamWindowSize of 8 MiB: a
// stream that carries bulk data over a long path starts at its bandwidth-
// delay product after one window update instead of after five doublings.
// 8 MiB is half the maximum, so two such streams to one peer fit in the
// share of a peer's memory that window growth may take (half of
// p2plimits' 64 MiB per peer), and covers 300 Mbit/s at 200 ms.
var DefaultTransport = func() *Transport {
	c := DefaultConfig()
	c.MaxStreamWindowSize = 16 << 20
	c.FastStreamWindowSize = 8 << 20
	c.LogOutput = io.Discard
	c.ReadBufSize = 0
	c.MaxIncomingStreams = math.MaxUint32
	c.KeepAliveInterval = KeepAliveInterval
	return (*Transport)(c)
}()

// KeepAliveInterval is how long a connection of DefaultTransport may be
// silent before it pings the other side (go-libp2p: 30 s). A mirror keeps
// connections to a few dozen peers it probes, syncs with or once helped,
// many of them silent for long stretches, and a silent connection's only
// traffic is this keepalive (the round trip time is measured only while
// data flows). Dead peers are found by the failure detector's probes, not
// by keepalives, and two minutes stays inside the idle timeouts of NATs and
// load balancers (RFC 5382 asks for at least two hours; cloud NATs and
// balancers allow four minutes or more).
const KeepAliveInterval = 2 * time.Minute

// Option is the libp2p option that makes a host use t for yamux (replacing
// go-libp2p's own yamux; no other muxer is offered, as by default).
func Option(t *Transport) libp2p.Option { return libp2p.Muxer(ID, t) }

// NewConn wraps nc in a yamux session whose streams reserve their receive
// windows in scope (a span per stream), as go-libp2p's yamux does.
func (t *Transport) NewConn(nc net.Conn, isServer bool, scope network.PeerScope) (network.MuxedConn, error) {
	var newSpan func() (MemoryManager, error)
	if scope != nil {
		newSpan = func() (MemoryManager, error) { return scope.BeginSpan() }
	}
	var s *Session
	var err error
	if isServer {
		s, err = Server(nc, (*Config)(t), newSpan)
	} else {
		s, err = Client(nc, (*Config)(t), newSpan)
	}
	if err != nil {
		return nil, err
	}
	return (*muxedConn)(s), nil
}

// muxedConn is a Session as a network.MuxedConn.
type muxedConn Session

var _ network.MuxedConn = (*muxedConn)(nil)

func (c *muxedConn) session() *Session { return (*Session)(c) }

// As gives the underlying *Session.
func (c *muxedConn) As(target any) bool {
	if t, ok := target.(**Session); ok {
		*t = c.session()
		return true
	}
	return false
}

func (c *muxedConn) Close() error { return c.session().Close() }
func (c *muxedConn) CloseWithError(code network.ConnErrorCode) error {
	return c.session().CloseWithError(uint32(code))
}
func (c *muxedConn) IsClosed() bool { return c.session().IsClosed() }

func (c *muxedConn) OpenStream(ctx context.Context) (network.MuxedStream, error) {
	s, err := c.session().OpenStream(ctx)
	if err != nil {
		return nil, libp2pError(err)
	}
	return (*muxedStream)(s), nil
}

func (c *muxedConn) AcceptStream() (network.MuxedStream, error) {
	s, err := c.session().AcceptStream()
	return (*muxedStream)(s), libp2pError(err)
}

// muxedStream is a Stream as a network.MuxedStream.
type muxedStream Stream

var _ network.MuxedStream = (*muxedStream)(nil)

func (s *muxedStream) stream() *Stream { return (*Stream)(s) }

func (s *muxedStream) Read(b []byte) (int, error) {
	n, err := s.stream().Read(b)
	return n, libp2pError(err)
}

func (s *muxedStream) Write(b []byte) (int, error) {
	n, err := s.stream().Write(b)
	return n, libp2pError(err)
}

func (s *muxedStream) Close() error      { return s.stream().Close() }
func (s *muxedStream) Reset() error      { return s.stream().Reset() }
func (s *muxedStream) CloseRead() error  { return s.stream().CloseRead() }
func (s *muxedStream) CloseWrite() error { return s.stream().CloseWrite() }
func (s *muxedStream) ResetWithError(code network.StreamErrorCode) error {
	return s.stream().ResetWithError(uint32(code))
}
func (s *muxedStream) SetDeadline(t time.Time) error      { return s.stream().SetDeadline(t) }
func (s *muxedStream) SetReadDeadline(t time.Time) error  { return s.stream().SetReadDeadline(t) }
func (s *muxedStream) SetWriteDeadline(t time.Time) error { return s.stream().SetWriteDeadline(t) }

// libp2pError maps this package's errors to libp2p's, as go-libp2p's yamux
// does.
func libp2pError(err error) error {
	if err == nil {
		return nil
	}
	se := &StreamError{}
	if errors.As(err, &se) {
		return &network.StreamError{Remote: se.Remote, ErrorCode: network.StreamErrorCode(se.ErrorCode), TransportError: err}
	}
	ce := &GoAwayError{}
	if errors.As(err, &ce) {
		return &network.ConnError{Remote: ce.Remote, ErrorCode: network.ConnErrorCode(ce.ErrorCode), TransportError: err}
	}
	if errors.Is(err, ErrStreamReset) {
		return fmt.Errorf("%w: %w", network.ErrReset, err)
	}
	return err
}
