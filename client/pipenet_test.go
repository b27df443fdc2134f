package client

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
)

// inBubble runs f in a synctest bubble: time is virtual, and fake mirrors
// made with newFakeMirror(t, ...) and options made with testOptions(t, ...)
// talk over an in-memory network (net.Pipe) instead of loopback sockets.
//
// The client's timing decisions (hedge after HedgeDelay, drop a mirror that
// stalls for StallTimeout, probe grace) then depend only on what the fake
// mirrors do, never on how busy the machine is: virtual time stands still
// while any goroutine of the bubble can run, so hashing under the race
// detector on a saturated machine takes no time at all, and a trickling
// mirror still sends one byte per (virtual) second.
func inBubble(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	defer oneProcUnderRace()()
	synctest.Test(t, func(t *testing.T) {
		n := &pipeNet{lns: map[string]*pipeListener{}}
		bubbleNets.Store(t, n)
		t.Cleanup(func() { bubbleNets.Delete(t) })
		f(t)
	})
}

// oneProcUnderRace runs bubbles on one P when the race detector is on, and
// returns the function that restores GOMAXPROCS. Go 1.26's race runtime can
// abort ("ThreadSanitizer: CHECK failed: tsan_rtl.cpp:346 ...") when a
// bubble with many timers runs on several Ps (golang/go#78156); with one P
// the suite passes. Virtual time makes the bubble's outcome independent of
// how many cores run it, so this costs only wall-clock time.
func oneProcUnderRace() (restore func()) {
	if !raceEnabled {
		return func() {}
	}
	prev := runtime.GOMAXPROCS(1)
	return func() { runtime.GOMAXPROCS(prev) }
}

// bubbleNets maps the *testing.T of a bubble to its network.
var bubbleNets sync.Map

// netOf returns t's in-memory network, or nil outside inBubble.
func netOf(t testing.TB) *pipeNet {
	if n, ok := bubbleNets.Load(t); ok {
		return n.(*pipeNet)
	}
	return nil
}

// pipeNet is an in-memory network: listeners on made-up loopback
// addresses, connections made of net.Pipe.
type pipeNet struct {
	mu   sync.Mutex
	lns  map[string]*pipeListener
	port int
}

// listen returns a listener on a fresh 127.0.0.1 address.
func (n *pipeNet) listen() *pipeListener {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.port++
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 20000 + n.port}
	l := &pipeListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
	n.lns[addr.String()] = l
	return l
}

// dial connects to a listener of n; a closed or unknown address refuses
// the connection, as a dead mirror's port does.
func (n *pipeNet) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	n.mu.Lock()
	l := n.lns[addr]
	n.mu.Unlock()
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	if l == nil {
		return nil, refused
	}
	c, s := net.Pipe()
	select {
	case l.conns <- s:
		return c, nil
	case <-l.done:
	case <-ctx.Done():
		refused.Err = ctx.Err()
	}
	c.Close()
	s.Close()
	return nil, refused
}

// client returns an HTTP client that dials over n; its idle connections are
// closed when t ends (before the bubble checks that every goroutine ended).
func (n *pipeNet) client(t testing.TB) *http.Client {
	tr := &http.Transport{DialContext: n.dial, MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// pipeListener is a net.Listener of a pipeNet.
type pipeListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

var _ net.Listener = (*pipeListener)(nil)

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, fmt.Errorf("accept %s: %w", l.addr, net.ErrClosed)
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return l.addr }

// newServer is httptest.NewServer on the bubble's in-memory network when
// t runs in one (on loopback otherwise), closed when t ends.
func newServer(t testing.TB, h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	if n := netOf(t); n != nil {
		srv.Listener.Close()
		srv.Listener = n.listen()
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}
