package node

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"sync"
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

// memListener is an in-memory net.Listener for an admin socket.
type memListener struct {
	path  string
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func listenMem(path string) (net.Listener, error) {
	return &memListener{path: path, conns: make(chan net.Conn), done: make(chan struct{})}, nil
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
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *memListener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

func (l *memListener) dial(ctx context.Context) (net.Conn, error) {
	c, s := net.Pipe()
	select {
	case l.conns <- s:
		return c, nil
	case <-l.done:
		return nil, fmt.Errorf("dial %s: %w", l.path, net.ErrClosed)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// adminClient talks to n's admin socket, in memory or not.
func adminClient(t testing.TB, n *Node) *AdminClient {
	t.Helper()
	if ml, ok := n.adminLn.(*memListener); ok {
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return ml.dial(ctx) }}
		t.Cleanup(tr.CloseIdleConnections)
		return &AdminClient{hc: &http.Client{Transport: tr}, path: ml.path}
	}
	ac, err := DialAdmin(n.cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	return ac
}
