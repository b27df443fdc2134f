package replicate

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// relay is a TCP proxy that shapes each direction of every connection it
// carries like a network link: chunks leave at most at rate bytes/second
// (one queue per direction, shared by all its connections, as a link's
// bandwidth is) and arrive delay after they left. It holds at most
// relayBuffer bytes per direction (a router's queue), so TCP's flow control
// sees the link's real bandwidth-delay product.
type relay struct {
	ln     net.Listener
	target string
	delay  time.Duration
	rate   float64 // bytes/second; 0: unlimited
	up     *linkClock
	down   *linkClock
	wg     sync.WaitGroup
}

const relayBuffer = 2 << 20

// linkClock schedules one direction of a link: when the next chunk can
// leave.
type linkClock struct {
	mu   sync.Mutex
	free time.Time
}

// depart returns when n bytes that arrived at now have left the link.
func (l *linkClock) depart(now time.Time, n int, rate float64) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if rate <= 0 {
		return now
	}
	start := l.free
	if start.Before(now) {
		start = now
	}
	l.free = start.Add(time.Duration(float64(n) / rate * float64(time.Second)))
	return l.free
}

func newRelay(b *testing.B, target string, delay time.Duration, mbit int) *relay {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	r := &relay{ln: ln, target: target, delay: delay, rate: float64(mbit) * 1e6 / 8, up: &linkClock{}, down: &linkClock{}}
	r.wg.Add(1)
	go r.serve()
	b.Cleanup(func() { ln.Close(); r.wg.Wait() })
	return r
}

func (r *relay) addr() string { return r.ln.Addr().String() }

func (r *relay) serve() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		t, err := net.Dial("tcp", r.target)
		if err != nil {
			c.Close()
			continue
		}
		r.wg.Add(2)
		go func() { defer r.wg.Done(); r.pipe(t, c, r.up) }()
		go func() { defer r.wg.Done(); r.pipe(c, t, r.down) }()
	}
}

type chunk struct {
	data []byte
	at   time.Time // delivery time
}

// pipe copies src to dst through the link's schedule.
func (r *relay) pipe(dst, src net.Conn, clock *linkClock) {
	const size = 32 << 10
	q := make(chan chunk, relayBuffer/size)
	free := make(chan []byte, relayBuffer/size+1)
	for range cap(free) {
		free <- make([]byte, size)
	}
	go func() {
		defer close(q)
		for {
			buf := <-free
			n, err := src.Read(buf)
			if n > 0 {
				q <- chunk{buf[:n], clock.depart(time.Now(), n, r.rate).Add(r.delay)}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		if d := time.Until(c.at); d > 0 {
			time.Sleep(d) // a link's schedule, not synchronisation
		}
		if _, err := dst.Write(c.data); err != nil {
			break
		}
		free <- c.data[:cap(c.data)]
	}
	dst.Close()
	src.Close()
	for c := range q { // let the reader finish
		free <- c.data[:cap(c.data)]
	}
}

// rawServer writes size bytes to every connection.
func rawServer(b *testing.B, payload []byte) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for off := 0; off < len(payload); off += 1 << 20 {
					if _, err := c.Write(payload[off:min(off+1<<20, len(payload))]); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// viaRelay is infos with every holder reached through its own relay.
func viaRelay(b *testing.B, holders []*Replicator, delay time.Duration, mbit int) []peer.AddrInfo {
	b.Helper()
	var out []peer.AddrInfo
	for _, h := range holders {
		var target string
		for _, a := range h.h.Addrs() {
			if na, err := manet.ToNetAddr(a); err == nil {
				if _, ok := na.(*net.TCPAddr); ok {
					target = na.String()
					break
				}
			}
		}
		r := newRelay(b, target, delay, mbit)
		tcpAddr := r.ln.Addr().(*net.TCPAddr)
		a, _ := ma.NewMultiaddr(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", tcpAddr.Port))
		out = append(out, peer.AddrInfo{ID: h.h.ID(), Addrs: []ma.Multiaddr{a}})
	}
	return out
}

// BenchmarkReplicateRelay replicates over the real transport stack (TCP,
// Noise, yamux) with every holder behind its own relay that delays
// (MIRRORNET_BENCH_RELAY_MS one way, default 20) and rate-limits
// (MIRRORNET_BENCH_RELAY_MBIT, default 300; 0 for no limit) its link, as
// holders on separate machines would be. Each iteration copies the bundle
// (MIRRORNET_BENCH_RELAY_MIB, default 128) three ways, one after the
// other: raw-tcp, the same bytes as one plain TCP copy through a relay
// shaped the same way (the baseline); bitswap-1, Fetch from one holder;
// bitswap-3, Fetch from three. Reported: MB/s of each, x-raw =
// bitswap-1 / raw-tcp and 3-vs-1 = bitswap-3 / bitswap-1.
func BenchmarkReplicateRelay(b *testing.B) {
	size := envInt("MIRRORNET_BENCH_RELAY_MIB", 128) << 20
	delay := time.Duration(envIntOrZero("MIRRORNET_BENCH_RELAY_MS", 20)) * time.Millisecond
	mbit := envIntOrZero("MIRRORNET_BENCH_RELAY_MBIT", 300)
	newHost := func() host.Host { return tcpHost(b) }
	holders, _, root := benchHolders(b, size, newHost)
	var infos []peer.AddrInfo
	if benchQUIC() {
		infos = viaUDPRelay(b, holders, delay, mbit)
	} else {
		infos = viaRelay(b, holders, delay, mbit)
	}
	srv := rawServer(b, seeded(7, size))
	var raws []string
	for range 3 {
		raws = append(raws, newRelay(b, srv, delay, mbit).addr())
	}
	st := fetcherStore(b)

	var tRaw, tRaw3, tStream time.Duration
	var one, three []fetchRun
	var m1, m3 cpuMeter // CPU and page faults of the fetches (relays included)
	for b.Loop() {
		tRaw += rawTCP(b, raws[:1], size)
		tRaw3 += rawTCP(b, raws, size)
		if benchQUIC() {
			// the transport's own ceiling through the same relay: the
			// bytes as one libp2p stream from holder 0, on a new connection
			b.StopTimer()
			h := newHost()
			b.StartTimer()
			start := time.Now()
			if err := h.Connect(b.Context(), infos[0]); err != nil {
				b.Fatal(err)
			}
			rawCopy(b, h, infos[0].ID, io.Discard, size)
			tStream += time.Since(start)
			b.StopTimer()
			h.Close()
			b.StartTimer()
		}
		one = append(one, fetchOnce(b, newHost, st, holders, infos[:1], root, nil, &m1))
		three = append(three, fetchOnce(b, newHost, st, holders, infos[:3], root, nil, &m3))
	}
	b.ReportMetric(m1.cpu.Seconds()*1e3/(float64(m1.bytes)/(1<<20)), "1-cpu-ms/MiB")
	b.ReportMetric(m3.cpu.Seconds()*1e3/(float64(m3.bytes)/(1<<20)), "3-cpu-ms/MiB")
	b.ReportMetric(float64(m3.faults)/(float64(m3.bytes)/(1<<20)), "3-faults/MiB")
	reportRelay(b, size, tRaw, one, three)
	// the ceiling of 3-vs-1 on this machine: three raw copies at once,
	// each through its own relay, against one (each copies size/3 bytes)
	b.ReportMetric(tRaw.Seconds()/tRaw3.Seconds(), "raw-3-vs-1")
	if tStream > 0 {
		b.ReportMetric(float64(size)*float64(len(one))/tStream.Seconds()/1e6, "raw-stream-MB/s")
	}
}

// rawTCP copies size bytes through the relays at addrs, an equal part
// through each at the same time (the raw server sends the first part of its
// payload), and returns the time until the last part is in.
func rawTCP(b *testing.B, addrs []string, size int) time.Duration {
	b.Helper()
	part := size / len(addrs)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(addrs))
	for _, a := range addrs {
		wg.Go(func() {
			c, err := net.Dial("tcp", a)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			n, err := io.CopyBuffer(io.Discard, io.LimitReader(c, int64(part)), make([]byte, 1<<20))
			if err == nil && n != int64(part) {
				err = fmt.Errorf("%d of %d bytes", n, part)
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatalf("raw copy: %v", err)
	}
	return took
}

// reportRelay reports a relay benchmark's figures: MB/s of the raw copy
// and of the fetches from one and from three holders, x-raw = bitswap-1 /
// raw-tcp, 3-vs-1 = bitswap-3 / bitswap-1, and where the three-holder
// fetch's time went (see relayBreakdown).
func reportRelay(b *testing.B, size int, tRaw time.Duration, one, three []fetchRun) {
	var t1, t3 time.Duration
	for i := range one {
		t1 += one[i].took
		t3 += three[i].took
	}
	mbs := func(d time.Duration) float64 { return float64(size) * float64(len(one)) / d.Seconds() / 1e6 }
	if tRaw > 0 {
		b.ReportMetric(mbs(tRaw), "raw-tcp-MB/s")
		b.ReportMetric(tRaw.Seconds()/t1.Seconds(), "x-raw")
	}
	b.ReportMetric(mbs(t1), "bitswap-1-MB/s")
	b.ReportMetric(mbs(t3), "bitswap-3-MB/s")
	b.ReportMetric(t1.Seconds()/t3.Seconds(), "3-vs-1")
	relayBreakdown(b, "1-", one)
	relayBreakdown(b, "3-", three)
}

// relayBreakdown reports, averaged over runs, where a fetch's time went:
// start-ms from calling Fetch to the first block (connecting: TCP, Noise
// and yamux handshakes, identify, the first request's round trip), tail-ms
// from the first holder's last block to the end of the walk (holders
// draining their windows unevenly), last-start-ms from calling Fetch to
// the first block of the holder that started last (its connection, the
// root's round trip through another holder, and its answer streams'
// windows growing from yamux's initial 256 KiB), and holder-MB/s, each holder's
// delivery rate from its first block to its last (mean over holders;
// holder-min-MB/s the slowest). MIRRORNET_BENCH_VERBOSE=1 logs each run's
// holders.
func relayBreakdown(b *testing.B, prefix string, runs []fetchRun) {
	var startT, lastStart, tail time.Duration
	var rates, minRates float64
	n := 0
	for _, r := range runs {
		first, last := r.stats.End, r.start
		lo, sum, k := 0.0, 0.0, 0
		for _, h := range r.stats.Holders {
			if h.Blocks == 0 {
				continue
			}
			if h.First.Before(first) {
				first = h.First
			}
			if h.First.After(last) {
				last = h.First
			}
			rate := 0.0
			if h.Span() > 0 {
				rate = float64(h.Bytes) / h.Span().Seconds() / 1e6
			}
			if k == 0 || rate < lo {
				lo = rate
			}
			sum += rate
			k++
			if os.Getenv("MIRRORNET_BENCH_VERBOSE") != "" {
				b.Logf("%sholders: %s %d blocks, %.1f MB/s over %s, window %d KiB, rtt %s, from %s to %s of %s",
					prefix, h.Peer.ShortString(), h.Blocks, rate, h.Span().Round(time.Millisecond), h.Window>>10, h.RTT.Round(time.Millisecond),
					h.First.Sub(r.start).Round(time.Millisecond), h.Last.Sub(r.start).Round(time.Millisecond), r.took.Round(time.Millisecond))
			}
		}
		if k == 0 {
			continue
		}
		n++
		startT += first.Sub(r.start)
		lastStart += last.Sub(r.start)
		tail += r.stats.Tail()
		rates += sum / float64(k)
		minRates += lo
	}
	if n == 0 {
		return
	}
	b.ReportMetric(float64(startT.Milliseconds())/float64(n), prefix+"start-ms")
	b.ReportMetric(float64(lastStart.Milliseconds())/float64(n), prefix+"last-start-ms")
	b.ReportMetric(float64(tail.Milliseconds())/float64(n), prefix+"tail-ms")
	b.ReportMetric(rates/float64(n), prefix+"holder-MB/s")
	b.ReportMetric(minRates/float64(n), prefix+"holder-min-MB/s")
}

// envIntOrZero is envInt that also accepts 0.
func envIntOrZero(name string, def int) int {
	if os.Getenv(name) == "0" {
		return 0
	}
	return envInt(name, def)
}

// udpRelay is relay's counterpart for QUIC: a UDP proxy that forwards
// every datagram from a client to the target (from a socket of its own per
// client) and back, each direction shaped like a link (one departure
// schedule shared by all its clients, then the delay). A datagram that
// would wait behind more than relayBuffer bytes is dropped, as a router's
// full queue drops it; QUIC's congestion control sees the link through
// those losses and the delay.
type udpRelay struct {
	pc     *net.UDPConn
	target *net.UDPAddr
	delay  time.Duration
	rate   float64
	up     *linkClock
	down   *linkClock

	mu      sync.Mutex
	clients map[string]*udpFlow
	ctx     chan struct{} // closed when the relay stops
	wg      sync.WaitGroup
}

// udpFlow is one client's pair of queues.
type udpFlow struct {
	upstream *net.UDPConn  // connected to the target
	client   *net.UDPAddr  // where answers go
	toTarget chan datagram // scheduled datagrams, in departure order
	toClient chan datagram
}

// udpSocketBuffer is the kernel buffer asked for each relay socket.
const udpSocketBuffer = 8 << 20

type datagram struct {
	data []byte
	at   time.Time
}

func newUDPRelay(b *testing.B, target *net.UDPAddr, delay time.Duration, mbit int) *udpRelay {
	b.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	// a relay starved of CPU must not drop what the link would carry:
	// buffer bursts in the kernel (up to net.core.rmem_max)
	_ = pc.SetReadBuffer(udpSocketBuffer)
	_ = pc.SetWriteBuffer(udpSocketBuffer)
	r := &udpRelay{pc: pc, target: target, delay: delay, rate: float64(mbit) * 1e6 / 8,
		up: &linkClock{}, down: &linkClock{}, clients: map[string]*udpFlow{}, ctx: make(chan struct{})}
	r.wg.Add(1)
	go r.serve()
	b.Cleanup(func() {
		close(r.ctx)
		pc.Close()
		r.mu.Lock()
		for _, f := range r.clients {
			f.upstream.Close()
		}
		r.mu.Unlock()
		r.wg.Wait()
	})
	return r
}

// schedule returns when a datagram of n bytes arriving now reaches the
// other end, or false if the link's queue is full (dropped).
func (r *udpRelay) schedule(clock *linkClock, n int) (time.Time, bool) {
	now := time.Now()
	if r.rate > 0 {
		clock.mu.Lock()
		queued := clock.free.Sub(now).Seconds() * r.rate
		clock.mu.Unlock()
		if queued > relayBuffer {
			return time.Time{}, false
		}
	}
	return clock.depart(now, n, r.rate).Add(r.delay), true
}

func (r *udpRelay) serve() {
	defer r.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := r.pc.ReadFromUDP(buf)
		if err != nil {
			return
		}
		f := r.flow(from)
		if f == nil {
			continue
		}
		if at, ok := r.schedule(r.up, n); ok {
			select {
			case f.toTarget <- datagram{append([]byte(nil), buf[:n]...), at}:
			default: // the relay itself cannot keep up: drop
			}
		}
	}
}

// flow returns the client's flow, starting it on first sight.
func (r *udpRelay) flow(client *net.UDPAddr) *udpFlow {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f, ok := r.clients[client.String()]; ok {
		return f
	}
	up, err := net.DialUDP("udp", nil, r.target)
	if err != nil {
		return nil
	}
	_ = up.SetReadBuffer(udpSocketBuffer)
	_ = up.SetWriteBuffer(udpSocketBuffer)
	q := relayBuffer/1200 + 64
	f := &udpFlow{upstream: up, client: client, toTarget: make(chan datagram, q), toClient: make(chan datagram, q)}
	r.clients[client.String()] = f
	r.wg.Add(3)
	go func() { // answers from the target
		defer r.wg.Done()
		buf := make([]byte, 64<<10)
		for {
			n, err := up.Read(buf)
			if err != nil {
				return
			}
			if at, ok := r.schedule(r.down, n); ok {
				select {
				case f.toClient <- datagram{append([]byte(nil), buf[:n]...), at}:
				default:
				}
			}
		}
	}()
	send := func(q chan datagram, write func([]byte) error) {
		defer r.wg.Done()
		for {
			select {
			case d := <-q:
				if w := time.Until(d.at); w > 0 {
					time.Sleep(w) // a link's schedule, not synchronisation
				}
				_ = write(d.data)
			case <-r.ctx:
				return
			}
		}
	}
	go send(f.toTarget, func(p []byte) error { _, err := up.Write(p); return err })
	go send(f.toClient, func(p []byte) error { _, err := r.pc.WriteToUDP(p, client); return err })
	return f
}

// viaUDPRelay is infos with every holder (a QUIC host) reached through its
// own udpRelay.
func viaUDPRelay(b *testing.B, holders []*Replicator, delay time.Duration, mbit int) []peer.AddrInfo {
	b.Helper()
	var out []peer.AddrInfo
	for _, h := range holders {
		var target *net.UDPAddr
		for _, a := range h.h.Addrs() {
			ip, err1 := a.ValueForProtocol(ma.P_IP4)
			port, err2 := a.ValueForProtocol(ma.P_UDP)
			if err1 == nil && err2 == nil {
				target, _ = net.ResolveUDPAddr("udp", net.JoinHostPort(ip, port))
				break
			}
		}
		if target == nil {
			b.Fatalf("holder %s has no UDP address: %v", h.h.ID(), h.h.Addrs())
		}
		r := newUDPRelay(b, target, delay, mbit)
		a, _ := ma.NewMultiaddr(fmt.Sprintf("/ip4/127.0.0.1/udp/%d/quic-v1", r.pc.LocalAddr().(*net.UDPAddr).Port))
		out = append(out, peer.AddrInfo{ID: h.h.ID(), Addrs: []ma.Multiaddr{a}})
	}
	return out
}
