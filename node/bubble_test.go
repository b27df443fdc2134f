package node

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
)

// inBubble runs f in a synctest bubble: time is virtual, so heartbeats,
// suspicion and death timeouts, bitswap's timers and waitFor's deadlines
// move only when every goroutine of the cluster is idle. However busy the
// machine, a mirror is then never late for its own heartbeat, and a test
// asserts what the protocol does rather than how fast a starved process
// does it. Clusters made by newCluster inside f serve their admin sockets
// in memory (a goroutine blocked in a real Accept would keep virtual time
// from moving); publish and adminClient reach them there.
func inBubble(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	defer oneProcUnderRace()()
	synctest.Test(t, func(t *testing.T) {
		bubbles.Store(t, true)
		t.Cleanup(func() { bubbles.Delete(t) })
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

// bubbles holds the *testing.T of every test running in inBubble.
var bubbles sync.Map

func inABubble(t testing.TB) bool {
	_, ok := bubbles.Load(t)
	return ok
}

// memListener is an in-memory net.Listener: an admin socket (listenMem)
// or a TCP address on memHTTP.
type memListener struct {
	addr    net.Addr
	conns   chan net.Conn
	done    chan struct{}
	once    sync.Once
	onClose func()
}

func listenMem(path string) (net.Listener, error) {
	return &memListener{addr: &net.UnixAddr{Name: path, Net: "unix"}, conns: make(chan net.Conn), done: make(chan struct{})}, nil
}

func (l *memListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *memListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		if l.onClose != nil {
			l.onClose()
		}
	})
	return nil
}

func (l *memListener) Addr() net.Addr { return l.addr }

// dial connects to l: client is the dialling side's conn, server the one
// Accept returns (each reporting its own and the other's address when
// they are given).
func (l *memListener) dial(ctx context.Context, from net.Addr) (net.Conn, error) {
	c, s := net.Pipe()
	var client, server net.Conn = c, s
	if from != nil {
		client, server = addrConn{c, from, l.addr}, addrConn{s, l.addr, from}
	}
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, fmt.Errorf("dial %s: %w", l.addr, net.ErrClosed)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// addrConn is a net.Pipe end with TCP addresses, so that what a node
// reads from a connection's addresses (failure domains, rate limits per
// client) works as on a real socket.
type addrConn struct {
	net.Conn
	local, remote net.Addr
}

func (c addrConn) LocalAddr() net.Addr  { return c.local }
func (c addrConn) RemoteAddr() net.Addr { return c.remote }

// memHTTP is an in-memory TCP network for the HTTP sides of nodes in a
// synctest bubble (newProbeCluster uses it there): a node listens with
// memHTTP.listen, reaches other nodes with memHTTP.transport(), and tests
// reach it with transportFor. Ports are unique in the test binary, so
// URLs from different tests never meet.
var memHTTP = &memNet{ls: map[string]*memListener{}}

type memNet struct {
	mu   sync.Mutex
	ls   map[string]*memListener // "127.0.0.1:port" → listener
	next int                     // last port handed out
}

func (m *memNet) listen(network, addr string) (net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return nil, fmt.Errorf("memnet: listen %s: want an IP address", addr)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, err
	}
	if p == 0 {
		m.next++
		p = 20000 + m.next
	}
	a := &net.TCPAddr{IP: ip, Port: p}
	key := a.String()
	if _, taken := m.ls[key]; taken {
		return nil, &net.OpError{Op: "listen", Net: network, Addr: a, Err: syscall.EADDRINUSE}
	}
	l := &memListener{addr: a, conns: make(chan net.Conn), done: make(chan struct{})}
	l.onClose = func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.ls[key] == l {
			delete(m.ls, key)
		}
	}
	m.ls[key] = l
	return l, nil
}

func (m *memNet) listener(addr string) *memListener {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ls[addr]
}

func (m *memNet) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	l := m.listener(addr)
	if l == nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
	}
	m.mu.Lock()
	m.next++
	from := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000 + m.next%20000}
	m.mu.Unlock()
	return l.dial(ctx, from)
}

// transport returns a new HTTP transport over m. Whoever makes one closes
// its idle connections when done (a bubble ends only when every goroutine
// has).
func (m *memNet) transport() *http.Transport {
	return &http.Transport{DialContext: m.dial}
}

// transportFor returns a transport that reaches addr ("host:port") and the
// function to call when done with it: memHTTP's when a node in a bubble
// listens there, otherwise the default transport.
func transportFor(addr string) (http.RoundTripper, func()) {
	if memHTTP.listener(addr) != nil {
		tr := memHTTP.transport()
		return tr, tr.CloseIdleConnections
	}
	return http.DefaultTransport, func() {}
}

// adminClient talks to n's admin socket, in memory or not.
func adminClient(t testing.TB, n *Node) *AdminClient {
	t.Helper()
	if ml, ok := n.adminLn.(*memListener); ok {
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return ml.dial(ctx, nil) }}
		t.Cleanup(tr.CloseIdleConnections)
		return &AdminClient{hc: &http.Client{Transport: tr}, path: ml.addr.String()}
	}
	ac, err := DialAdmin(n.cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	return ac
}
