// Package netsim is an in-memory network for benchmarks that run hundreds
// or thousands of peers in one process: every peer has an IPv4 address,
// links have a one-way latency, a fraction of packets is lost, the network
// can be cut in two (a partition) and a peer can be isolated (a crash that
// sends no FIN), and every byte a peer sends or receives is counted at the
// transport, per peer.
//
// It carries two kinds of traffic, with the same latency, loss and
// partitions:
//
//   - streams (TCP-like, reliable and ordered): go-libp2p runs on them
//     through [Network.Libp2pTransport] (security and multiplexing are
//     libp2p's own, e.g. Noise and yamux, on top), memberlist's push-pull
//     and fallback probes through [Network.MemberlistTransport];
//   - datagrams (UDP-like, best effort): memberlist's probes and gossip.
//
// How loss is modelled. Datagrams: each is dropped with probability Loss.
// Streams: every write is cut into segments of at most SegmentSize bytes
// and each segment is lost with probability Loss; as in TCP a lost segment
// is sent again after the retransmission timeout RTO (counted as sent
// twice), and everything behind it on that connection waits for it
// (head-of-line blocking). Acknowledgements and IP/TCP/UDP headers are
// not modelled: the byte counts are payload bytes handed to the transport
// (for libp2p that includes Noise and yamux framing).
//
// A partition or an isolated peer holds stream data (TCP retransmits until
// the path is back) and drops datagrams; held stream data is delivered one
// latency after the partition heals, and never for an isolated peer.
//
// Time is the wall clock: benchmarks that must fit many peers on few cores
// stretch Latency and RTO together with the protocols' own timers.
package netsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Errors.
var (
	ErrRefused = errors.New("netsim: connection refused")
	ErrClosed  = errors.New("netsim: use of closed connection")
	ErrInUse   = errors.New("netsim: address already in use")
)

// Config describes the links.
type Config struct {
	// Latency is the one-way delay of every link.
	Latency time.Duration
	// Loss is the probability that a datagram or a stream segment is lost
	// (0 to 1).
	Loss float64
	// RTO is the delay before a lost stream segment is sent again. Zero:
	// max(200 ms, 4 × Latency) (Linux's minimum RTO is 200 ms).
	RTO time.Duration
	// SegmentSize is the largest stream segment. Zero: 1448 bytes (a
	// 1500-byte MTU less IPv4, TCP and timestamp headers).
	SegmentSize int
	// Seed seeds the loss decisions.
	Seed uint64
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.Latency < 0 || c.RTO < 0 || c.SegmentSize < 0 {
		return errors.New("netsim: Latency, RTO and SegmentSize must not be negative")
	}
	if c.Loss < 0 || c.Loss >= 1 {
		return fmt.Errorf("netsim: Loss must be in [0, 1), got %v", c.Loss)
	}
	return nil
}

// Meter counts one peer's traffic at the transport.
type Meter struct {
	SentBytes, RecvBytes     atomic.Int64
	SentPackets, RecvPackets atomic.Int64 // datagrams and stream segments
	Lost                     atomic.Int64 // datagrams dropped and segments sent again
}

// Network is a simulated network. Its methods are safe for concurrent use.
type Network struct {
	cfg Config

	mu        sync.Mutex
	rng       *rand.Rand
	meters    map[netip.Addr]*Meter
	listeners map[netip.AddrPort]*listener
	packets   map[netip.AddrPort]func(p Datagram)
	side      map[netip.Addr]int // partition side; absent: side 0
	cut       bool
	healed    chan struct{} // closed when the current partition heals
	healAt    time.Time
	isolated  map[netip.Addr]bool
	nextPort  uint16
}

// New returns an empty network.
func New(cfg Config) (*Network, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.RTO == 0 {
		cfg.RTO = max(200*time.Millisecond, 4*cfg.Latency)
	}
	if cfg.SegmentSize == 0 {
		cfg.SegmentSize = 1448
	}
	return &Network{
		cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 0x6e657473696d)),
		meters: map[netip.Addr]*Meter{}, listeners: map[netip.AddrPort]*listener{},
		packets: map[netip.AddrPort]func(Datagram){}, side: map[netip.Addr]int{},
		isolated: map[netip.Addr]bool{}, healed: make(chan struct{}), nextPort: 40000,
	}, nil
}

// Config returns the network's configuration, defaults filled in.
func (n *Network) Config() Config { return n.cfg }

// Meter returns ip's traffic counters (created on first use).
func (n *Network) Meter(ip netip.Addr) *Meter {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.meterLocked(ip)
}

func (n *Network) meterLocked(ip netip.Addr) *Meter {
	m := n.meters[ip]
	if m == nil {
		m = &Meter{}
		n.meters[ip] = m
	}
	return m
}

// Totals sums the counters of every peer.
func (n *Network) Totals() (sent, recv int64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, m := range n.meters {
		sent += m.SentBytes.Load()
		recv += m.RecvBytes.Load()
	}
	return sent, recv
}

// Partition cuts the network between the peers for which inA returns true
// and all others, until Heal.
func (n *Network) Partition(inA func(ip netip.Addr) bool, ips []netip.Addr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, ip := range ips {
		if inA(ip) {
			n.side[ip] = 1
		} else {
			n.side[ip] = 0
		}
	}
	if !n.cut {
		n.cut = true
		n.healed = make(chan struct{})
	}
}

// Heal ends the partition: held stream data is delivered one latency later.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cut {
		n.cut = false
		n.healAt = time.Now()
		close(n.healed)
	}
	clear(n.side)
}

// Isolate cuts ip off from everyone, for good: a crash that sends nothing
// more (no FIN, no RST); what it had in flight is held forever.
func (n *Network) Isolate(ip netip.Addr) {
	n.mu.Lock()
	n.isolated[ip] = true
	n.mu.Unlock()
}

// blocked reports whether a and b cannot reach each other now, and if so a
// channel closed when they can again (nil: never). n.mu must be held.
func (n *Network) blockedLocked(a, b netip.Addr) (bool, <-chan struct{}) {
	if n.isolated[a] || n.isolated[b] {
		return true, nil
	}
	if n.cut && n.side[a] != n.side[b] {
		return true, n.healed
	}
	return false, nil
}

// lost draws one loss decision.
func (n *Network) lostLocked() bool {
	return n.cfg.Loss > 0 && n.rng.Float64() < n.cfg.Loss
}

// Datagram is one UDP-like packet as delivered.
type Datagram struct {
	From, To netip.AddrPort
	Data     []byte
	At       time.Time // delivery time
}

// ListenPacket registers recv for datagrams sent to addr. recv runs on a
// timer goroutine and must not block. The returned func unregisters it.
func (n *Network) ListenPacket(addr netip.AddrPort, recv func(Datagram)) (func(), error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.packets[addr]; ok {
		return nil, fmt.Errorf("%w: udp %s", ErrInUse, addr)
	}
	n.packets[addr] = recv
	return func() {
		n.mu.Lock()
		delete(n.packets, addr)
		n.mu.Unlock()
	}, nil
}

// SendPacket sends a datagram (the data is copied). It is counted as sent
// whether or not it arrives.
func (n *Network) SendPacket(from, to netip.AddrPort, data []byte) {
	buf := append([]byte(nil), data...)
	n.mu.Lock()
	sm := n.meterLocked(from.Addr())
	sm.SentBytes.Add(int64(len(buf)))
	sm.SentPackets.Add(1)
	blocked, _ := n.blockedLocked(from.Addr(), to.Addr())
	lost := n.lostLocked()
	n.mu.Unlock()
	if blocked || lost {
		sm.Lost.Add(1)
		return
	}
	time.AfterFunc(n.cfg.Latency, func() {
		n.mu.Lock()
		recv := n.packets[to]
		blocked, _ := n.blockedLocked(from.Addr(), to.Addr())
		rm := n.meterLocked(to.Addr())
		n.mu.Unlock()
		if recv == nil || blocked {
			return
		}
		rm.RecvBytes.Add(int64(len(buf)))
		rm.RecvPackets.Add(1)
		recv(Datagram{From: from, To: to, Data: buf, At: time.Now()})
	})
}

// listener accepts stream connections on one address.
type listener struct {
	n      *Network
	addr   netip.AddrPort
	ch     chan *Conn
	closed chan struct{}
	once   sync.Once
}

// Listen accepts stream connections on addr.
func (n *Network) Listen(addr netip.AddrPort) (*Listener, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.listeners[addr]; ok {
		return nil, fmt.Errorf("%w: tcp %s", ErrInUse, addr)
	}
	l := &listener{n: n, addr: addr, ch: make(chan *Conn, 64), closed: make(chan struct{})}
	n.listeners[addr] = l
	return &Listener{l}, nil
}

// Listener is a stream listener (a net.Listener).
type Listener struct{ l *listener }

var _ net.Listener = (*Listener)(nil)

// Accept waits for the next connection.
func (l *Listener) Accept() (net.Conn, error) { return l.AcceptConn() }

// AcceptConn is Accept with the concrete type.
func (l *Listener) AcceptConn() (*Conn, error) {
	select {
	case c := <-l.l.ch:
		return c, nil
	case <-l.l.closed:
		return nil, net.ErrClosed
	}
}

// Close stops accepting.
func (l *Listener) Close() error {
	l.l.once.Do(func() {
		l.l.n.mu.Lock()
		if l.l.n.listeners[l.l.addr] == l.l {
			delete(l.l.n.listeners, l.l.addr)
		}
		l.l.n.mu.Unlock()
		close(l.l.closed)
	})
	return nil
}

// Addr is the listening address.
func (l *Listener) Addr() net.Addr { return net.TCPAddrFromAddrPort(l.l.addr) }

// AddrPort is the listening address.
func (l *Listener) AddrPort() netip.AddrPort { return l.l.addr }

// Dial opens a stream connection from the peer at local (an IP; the port
// is chosen) to remote. It takes one round trip; across a partition it
// waits until the partition heals or ctx ends, to an isolated peer until
// ctx ends.
func (n *Network) Dial(ctx context.Context, local netip.Addr, remote netip.AddrPort) (*Conn, error) {
	for {
		n.mu.Lock()
		blocked, wait := n.blockedLocked(local, remote.Addr())
		n.mu.Unlock()
		if !blocked {
			break
		}
		select {
		case <-wait: // nil: never
		case <-ctx.Done():
			return nil, fmt.Errorf("netsim: dial %s: %w", remote, ctx.Err())
		}
	}
	if err := sleepCtx(ctx, n.cfg.Latency); err != nil { // SYN
		return nil, fmt.Errorf("netsim: dial %s: %w", remote, err)
	}
	n.mu.Lock()
	l := n.listeners[remote]
	n.nextPort++
	if n.nextPort < 40000 {
		n.nextPort = 40000
	}
	laddr := netip.AddrPortFrom(local, n.nextPort)
	n.mu.Unlock()
	if l == nil {
		_ = sleepCtx(ctx, n.cfg.Latency) // RST
		return nil, fmt.Errorf("%w: %s", ErrRefused, remote)
	}
	a, b := n.pipe(laddr, remote)
	select {
	case l.ch <- b:
	case <-l.closed:
		return nil, fmt.Errorf("%w: %s", ErrRefused, remote)
	case <-ctx.Done():
		return nil, fmt.Errorf("netsim: dial %s: %w", remote, ctx.Err())
	}
	if err := sleepCtx(ctx, n.cfg.Latency); err != nil { // SYN-ACK
		a.Close()
		return nil, fmt.Errorf("netsim: dial %s: %w", remote, err)
	}
	return a, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pipe makes the two ends of a connection between a and b.
func (n *Network) pipe(a, b netip.AddrPort) (*Conn, *Conn) {
	ab := newHalf(n, a.Addr(), b.Addr())
	ba := newHalf(n, b.Addr(), a.Addr())
	ca := &Conn{n: n, local: a, remote: b, in: ba, out: ab}
	cb := &Conn{n: n, local: b, remote: a, in: ab, out: ba}
	ca.peer, cb.peer = cb, ca
	return ca, cb
}

// chunk is a piece of a write with its delivery time.
type chunk struct {
	data []byte
	at   time.Time
	// held: written while the path was blocked; deliverable one latency
	// after heal (never if heal is nil).
	held bool
	heal <-chan struct{}
	// fin: the writer closed; the reader gets EOF here.
	fin bool
}

// half is one direction of a connection.
type half struct {
	n        *Network
	from, to netip.Addr
	sm, rm   *Meter

	mu     sync.Mutex
	q      []chunk
	last   time.Time // delivery time of the last chunk (order is kept)
	eof    bool      // the writer closed (a fin chunk is queued)
	rst    bool      // the reader closed
	notify chan struct{}
}

func newHalf(n *Network, from, to netip.Addr) *half {
	return &half{n: n, from: from, to: to, sm: n.Meter(from), rm: n.Meter(to), notify: make(chan struct{}, 1)}
}

func (h *half) wake() {
	select {
	case h.notify <- struct{}{}:
	default:
	}
}

// write queues p for delivery, segment by segment.
func (h *half) write(p []byte) (int, error) {
	n := h.n
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.eof {
		return 0, ErrClosed
	}
	if h.rst {
		// The other side is gone: the bytes go nowhere (a real stack would
		// answer with RST).
		return len(p), nil
	}
	n.mu.Lock()
	blocked, heal := n.blockedLocked(h.from, h.to)
	var delay time.Duration
	segs := 0
	for off := 0; off < len(p); off += n.cfg.SegmentSize {
		seg := min(n.cfg.SegmentSize, len(p)-off)
		segs++
		h.sm.SentBytes.Add(int64(seg))
		if n.lostLocked() {
			// Sent again after the RTO; everything behind waits.
			delay += n.cfg.RTO
			h.sm.SentBytes.Add(int64(seg))
			h.sm.Lost.Add(1)
			segs++
		}
	}
	n.mu.Unlock()
	h.sm.SentPackets.Add(int64(segs))
	h.enqueueLocked(chunk{data: append([]byte(nil), p...), held: blocked, heal: heal}, now, delay)
	return len(p), nil
}

// enqueueLocked queues c for delivery one latency (plus extra) after now,
// never before the chunk ahead of it. h.mu must be held.
func (h *half) enqueueLocked(c chunk, now time.Time, extra time.Duration) {
	if !c.held {
		c.at = now.Add(h.n.cfg.Latency + extra)
		if c.at.Before(h.last) {
			c.at = h.last
		}
		h.last = c.at
	}
	h.q = append(h.q, c)
	h.wake()
}

// closeWrite queues the FIN (held like data across a partition).
func (h *half) closeWrite() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.eof {
		return
	}
	h.eof = true
	h.n.mu.Lock()
	blocked, heal := h.n.blockedLocked(h.from, h.to)
	h.n.mu.Unlock()
	h.enqueueLocked(chunk{fin: true, held: blocked, heal: heal}, time.Now(), 0)
}

// read delivers queued bytes whose time has come, waiting for them until
// the deadline.
func (h *half) read(p []byte, deadline func() (time.Time, <-chan struct{})) (int, error) {
	for {
		h.mu.Lock()
		if h.rst {
			h.mu.Unlock()
			return 0, ErrClosed
		}
		var wait time.Duration
		var heal <-chan struct{}
		blockedForever := false
		if len(h.q) > 0 {
			c := &h.q[0]
			if c.held {
				if c.heal == nil {
					blockedForever = true
				} else {
					select {
					case <-c.heal:
						// Healed: deliver one latency after the heal, in order.
						h.n.mu.Lock()
						at := h.n.healAt.Add(h.n.cfg.Latency)
						h.n.mu.Unlock()
						for i := range h.q {
							if h.q[i].held && h.q[i].heal == c.heal {
								h.q[i].held = false
								if at.Before(h.last) {
									at = h.last
								}
								h.q[i].at = at
								h.last = at
							}
						}
						h.mu.Unlock()
						continue
					default:
						heal = c.heal
					}
				}
			} else if wait = time.Until(c.at); wait <= 0 {
				if c.fin {
					h.mu.Unlock()
					return 0, io.EOF
				}
				k := copy(p, c.data)
				if k == len(c.data) {
					h.q[0] = chunk{}
					h.q = h.q[1:]
					segs := (k + h.n.cfg.SegmentSize - 1) / h.n.cfg.SegmentSize
					h.rm.RecvPackets.Add(int64(segs))
				} else {
					c.data = c.data[k:]
				}
				h.rm.RecvBytes.Add(int64(k))
				h.mu.Unlock()
				return k, nil
			}
		}
		h.mu.Unlock()

		dl, dlChanged := deadline()
		var dlT, waitT *time.Timer
		var dlC, waitC <-chan time.Time
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			dlT = time.NewTimer(d)
			dlC = dlT.C
		}
		if wait > 0 && !blockedForever && heal == nil {
			waitT = time.NewTimer(wait)
			waitC = waitT.C
		}
		expired := false
		select {
		case <-h.notify:
		case <-waitC:
		case <-heal:
		case <-dlC:
			expired = true
		case <-dlChanged:
		}
		if dlT != nil {
			dlT.Stop()
		}
		if waitT != nil {
			waitT.Stop()
		}
		if expired {
			return 0, os.ErrDeadlineExceeded
		}
	}
}

// Conn is one end of a stream connection (a net.Conn).
type Conn struct {
	n             *Network
	local, remote netip.AddrPort
	in, out       *half
	peer          *Conn

	dmu      sync.Mutex
	readDL   time.Time
	dlChange chan struct{}
	closed   atomic.Bool
}

var _ net.Conn = (*Conn)(nil)

// Read reads what has arrived, in order.
func (c *Conn) Read(p []byte) (int, error) {
	if c.closed.Load() {
		return 0, ErrClosed
	}
	if len(p) == 0 {
		return 0, nil
	}
	return c.in.read(p, c.deadline)
}

func (c *Conn) deadline() (time.Time, <-chan struct{}) {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if c.dlChange == nil {
		c.dlChange = make(chan struct{})
	}
	return c.readDL, c.dlChange
}

// Write queues p; it never blocks (the simulated links have no bandwidth
// limit).
func (c *Conn) Write(p []byte) (int, error) {
	if c.closed.Load() {
		return 0, ErrClosed
	}
	return c.out.write(p)
}

// Close closes both directions: the other side reads what was sent and
// then EOF.
func (c *Conn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.out.closeWrite()
	c.in.mu.Lock()
	c.in.rst = true
	c.in.q = nil
	c.in.mu.Unlock()
	c.in.wake()
	return nil
}

// CloseWrite half-closes the connection.
func (c *Conn) CloseWrite() error {
	c.out.closeWrite()
	return nil
}

// LocalAddr is this end's address.
func (c *Conn) LocalAddr() net.Addr { return net.TCPAddrFromAddrPort(c.local) }

// RemoteAddr is the other end's address.
func (c *Conn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(c.remote) }

// SetDeadline sets the read deadline (writes never block).
func (c *Conn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

// SetReadDeadline sets the read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.dmu.Lock()
	c.readDL = t
	if c.dlChange != nil {
		close(c.dlChange)
	}
	c.dlChange = make(chan struct{})
	c.dmu.Unlock()
	return nil
}

// SetWriteDeadline is a no-op: writes never block.
func (c *Conn) SetWriteDeadline(time.Time) error { return nil }
