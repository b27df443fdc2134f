package replicate

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/mirrornet/mirrornet/internal/bundle"
	"github.com/mirrornet/mirrornet/internal/bundle/verify"
	"github.com/mirrornet/mirrornet/internal/p2plimits"
	"github.com/mirrornet/mirrornet/internal/store"
	mnyamux "github.com/mirrornet/mirrornet/internal/yamux"
)

// envInt reads a positive integer from the environment, or returns def.
func envInt(name string, def int) int {
	n := def
	if s := os.Getenv(name); s != "" {
		if _, err := fmt.Sscan(s, &n); err != nil || n <= 0 {
			n = def
		}
	}
	return n
}

// benchSize is the bundle BenchmarkReplicate copies over real loopback (one
// file of 1 MiB chunks): the 256 MiB. Override with
// MIRRORNET_BENCH_MIB.
func benchSize() int { return envInt("MIRRORNET_BENCH_MIB", 256) << 20 }

// simSize is the bundle BenchmarkReplicateSimLink copies over simulated
// links: the 256 MiB (7.2 s from one holder at 300 Mbit/s). Override with
// MIRRORNET_BENCH_SIM_MIB.
func simSize() int { return envInt("MIRRORNET_BENCH_SIM_MIB", 256) << 20 }

// simLink is each holder's simulated link: MIRRORNET_BENCH_LINK_MS of
// one-way latency (default 10) and MIRRORNET_BENCH_LINK_MBIT of bandwidth
// (default 300).
func simLink() mocknet.LinkOptions {
	return mocknet.LinkOptions{
		Latency:   time.Duration(envInt("MIRRORNET_BENCH_LINK_MS", 10)) * time.Millisecond,
		Bandwidth: float64(envInt("MIRRORNET_BENCH_LINK_MBIT", 300)) * 1e6 / 8,
	}
}

// benchConfig is the fetcher's configuration: DefaultConfig, with
// MIRRORNET_BENCH_PARALLEL overriding Parallel and
// MIRRORNET_BENCH_WINDOW_MIN_KIB WindowMin (and the holders'
// ServeOutstandingBytes from MIRRORNET_BENCH_SERVE_MIB).
func benchConfig() Config {
	cfg := DefaultConfig()
	cfg.Parallel = envInt("MIRRORNET_BENCH_PARALLEL", cfg.Parallel)
	cfg.WindowMin = envInt("MIRRORNET_BENCH_WINDOW_MIN_KIB", cfg.WindowMin>>10) << 10
	cfg.WindowMax = max(cfg.WindowMax, cfg.WindowMin)
	return cfg
}

// benchQUIC reports whether the real-transport benchmarks run over QUIC
// (MIRRORNET_BENCH_TRANSPORT=quic) instead of TCP + Noise + yamux.
func benchQUIC() bool { return os.Getenv("MIRRORNET_BENCH_TRANSPORT") == "quic" }

// tcpHost is a real loopback libp2p host: TCP + Noise + yamux, or QUIC
// (TLS 1.3 and QUIC's own streams) if benchQUIC. It has a mirror's
// resource and connection managers (p2plimits' defaults, as node builds
// them): yamux reserves every stream's receive window, and each time it
// grows it, in the peer's scope, so a window grows only as far as the
// mirror's memory limits allow. MIRRORNET_BENCH_NULL_RCMGR=1 uses no
// limits instead (what this benchmark did before).
func tcpHost(b *testing.B) host.Host {
	b.Helper()
	limits := []libp2p.Option{libp2p.ResourceManager(&network.NullResourceManager{})}
	if os.Getenv("MIRRORNET_BENCH_NULL_RCMGR") == "" {
		var err error
		if limits, err = p2plimits.Options(p2plimits.DefaultConfig()); err != nil {
			b.Fatal(err)
		}
	}
	opts := []libp2p.Option{
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.DisableRelay(),
	}
	if benchQUIC() {
		opts = []libp2p.Option{
			libp2p.ListenAddrStrings("/ip4/127.0.0.1/udp/0/quic-v1"),
			libp2p.Transport(quic.NewTransport),
			libp2p.DisableRelay(),
		}
	}
	opts = append(opts, limits...)
	// yamux as a mirror has it (internal/yamux: windows of streams whose
	// reader keeps up jump to 8 MiB), or go-libp2p's own with
	// MIRRORNET_BENCH_STOCK_YAMUX=1 (what mirrors had before).
	mux := *mnyamux.DefaultTransport
	stock := os.Getenv("MIRRORNET_BENCH_STOCK_YAMUX") != ""
	if stock {
		mux.FastStreamWindowSize = 0
	}
	if kib := envInt("MIRRORNET_BENCH_YAMUX_WINDOW_KIB", 0); kib > 0 {
		// An experiment: yamux's initial per-stream receive window (256
		// KiB by default), for every stream and beyond what is reserved
		// (yamux reserves the first 256 KiB of it).
		mux.InitialStreamWindowSize = uint32(kib) << 10
		mux.MaxStreamWindowSize = max(mux.MaxStreamWindowSize, mux.InitialStreamWindowSize)
		mux.FastStreamWindowSize = min(max(mux.FastStreamWindowSize, mux.InitialStreamWindowSize), mux.MaxStreamWindowSize)
		if stock {
			mux.FastStreamWindowSize = 0
		}
	}
	if stock {
		cfg := *yamux.DefaultTransport
		cfg.InitialStreamWindowSize = mux.InitialStreamWindowSize
		cfg.MaxStreamWindowSize = mux.MaxStreamWindowSize
		opts = append(opts, libp2p.Muxer(yamux.ID, &cfg))
	} else {
		opts = append(opts, mnyamux.Option(&mux))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close() })
	return h
}

// cpuTime is the CPU time (user and system) this process has used so far,
// and its minor page faults: holders and fetcher alike, as every host of a
// benchmark runs in it.
func cpuTime() (time.Duration, int64) {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ru.Minflt
}

// cpuMeter adds up the CPU time and page faults of the timed parts of a
// benchmark and reports them per MiB copied (cpu-ms/MiB, faults/MiB). On
// this kind of VM a page fault on memory the process has not touched
// before (or gave back) is among the dearest things a data path does.
type cpuMeter struct {
	cpu    time.Duration
	faults int64
	bytes  int64
	t0     time.Duration
	f0     int64
}

func (m *cpuMeter) start() { m.t0, m.f0 = cpuTime() }
func (m *cpuMeter) stop(n int) {
	t, f := cpuTime()
	m.cpu += t - m.t0
	m.faults += f - m.f0
	m.bytes += int64(n)
}

func (m *cpuMeter) report(b *testing.B) {
	if m.bytes > 0 {
		mib := float64(m.bytes) / (1 << 20)
		b.ReportMetric(m.cpu.Seconds()*1e3/mib, "cpu-ms/MiB")
		b.ReportMetric(float64(m.faults)/mib, "faults/MiB")
	}
}

type staticFinder []peer.AddrInfo

func (s staticFinder) Holders(_ cid.Cid) []peer.AddrInfo { return s }

const rawProto = "/mirrornet-bench/raw/1"

// benchHolders imports a seeded file of size bytes into three holders on
// hosts made by newHost, marks it held and starts a Replicator on each.
// Holder 0 also serves the same bytes as one raw stream (rawProto),
// written in 1 MiB writes.
func benchHolders(b *testing.B, size int, newHost func() host.Host) ([]*Replicator, []peer.AddrInfo, cid.Cid) {
	b.Helper()
	dir := b.TempDir()
	payload := seeded(7, size)
	file := filepath.Join(dir, "app.wasm")
	if err := os.WriteFile(file, payload, 0o644); err != nil {
		b.Fatal(err)
	}
	var holders []*Replicator
	var infos []peer.AddrInfo
	var root bundle.Result
	for i := range 3 {
		h := newHost()
		st, err := store.Open(filepath.Join(dir, fmt.Sprintf("holder%d", i)), store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		root, err = bundle.Import(context.Background(), file, func(blk blocks.Block) error { return st.Put(blk.Cid(), blk.RawData()) }, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := st.MarkHeld(root.Root); err != nil {
			b.Fatal(err)
		}
		cfg := DefaultConfig()
		cfg.ServeOutstandingBytes = envInt("MIRRORNET_BENCH_SERVE_MIB", cfg.ServeOutstandingBytes>>20) << 20
		r, err := New(h, st, staticFinder{}, cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { r.Close() })
		holders = append(holders, r)
		infos = append(infos, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})
	}
	warmHolders(b, holders, root.Root)
	holders[0].h.SetStreamHandler(rawProto, func(s network.Stream) {
		defer s.Close()
		for off := 0; off < len(payload); off += 1 << 20 {
			if _, err := s.Write(payload[off:min(off+1<<20, len(payload))]); err != nil {
				return
			}
		}
	})
	return holders, infos, root.Root
}

// warmHolders reads every block of root once on each holder, so that their
// stores' caches of verified blocks vouch for them, as on a mirror that has
// served the bundle before: the store hashes a block on its first read in
// a process's life (a block just written is not cached: see the store's
// racyWindow), which would otherwise charge each holder's first serving of
// every block (about 0.8 ms of CPU per MiB) to the shared CPU of the
// fetch being measured.
func warmHolders(b *testing.B, holders []*Replicator, root cid.Cid) {
	b.Helper()
	// let the packs' timestamps age past the store's racy window (100 ms),
	// or blocks read now are hashed and still not cached
	time.Sleep(150 * time.Millisecond)
	for _, h := range holders {
		if err := bundle.Walk(b.Context(), root, h.st.Get, func(cid.Cid, []byte) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}

// rawCopy reads holder's raw stream into w and checks its length.
func rawCopy(b *testing.B, dst host.Host, holder peer.ID, w io.Writer, size int) {
	b.Helper()
	s, err := dst.NewStream(b.Context(), holder, rawProto)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	n, err := io.CopyBuffer(w, s, make([]byte, 1<<20))
	if err != nil || n != int64(size) {
		b.Fatalf("copied %d of %d: %v", n, size, err)
	}
}

// fetcherStore opens the fetcher's store for one sub-benchmark. Every run
// empties it again (emptyStore), so each Fetch starts with no blocks but
// with the store's block directories in place, as on a mirror that has
// been running: on this machine's ext4, creating a block directory (up to
// 1024 per store, once in its life) costs 0.3 - 1 ms, and the first file in
// each about 0.5 ms more, which a fresh store per run would charge to
// every run (about 0.1 s of CPU for 64 MiB).
func fetcherStore(b *testing.B) *store.Store {
	b.Helper()
	st, err := store.Open(filepath.Join(b.TempDir(), "fetcher"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return st
}

// emptyStore unfollows root and deletes every block (untimed), which also
// returns their page cache to the kernel; see freshMemory.
func emptyStore(b *testing.B, st *store.Store, root cid.Cid) {
	b.Helper()
	if root.Defined() {
		if err := st.Unfollow(root); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := st.GC(); err != nil {
		b.Fatal(err)
	}
	if u := st.Usage(); u != 0 {
		b.Fatalf("fetcher store still holds %d bytes", u)
	}
}

// fetchOnce runs one timed Fetch of root into st (empty) on a fresh host
// from the holders named by infos and reports how they shared the work.
// link, if set, is called (untimed) once the host exists, to link it to the
// holders.
// It returns the time Fetch took and the fetch's statistics.
// fetchRun is what fetchOnce measured.
type fetchRun struct {
	start time.Time     // Fetch called
	took  time.Duration // Fetch's time
	stats FetchStats    // the fetcher's LastFetchStats
}

func fetchOnce(b *testing.B, newHost func() host.Host, st *store.Store, holders []*Replicator, infos []peer.AddrInfo, root cid.Cid, link func(host.Host), m *cpuMeter) fetchRun {
	b.StopTimer()
	n := len(infos)
	h := newHost()
	var opts []Option
	if os.Getenv("MIRRORNET_BENCH_VERBOSE") != "" {
		// the fetch's per-holder summary (window, delay, rate)
		opts = append(opts, WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	}
	r, err := New(h, st, staticFinder(infos), benchConfig(), opts...)
	if err != nil {
		b.Fatal(err)
	}
	before := make([]uint64, n)
	for j, hr := range holders[:n] {
		s, _ := hr.bs.Stat()
		before[j] = s.BlocksSent
	}
	if link != nil {
		link(h)
	}
	// The time from the last block stored to Fetch's return is MarkHeld:
	// the DAG walk, fsyncs and bundles.json.
	var lastBlock time.Time
	var bytes int64
	b.StartTimer()
	if m != nil {
		m.start()
	}
	start := time.Now()
	if err := r.Fetch(b.Context(), root, func(p Progress) { lastBlock, bytes = time.Now(), p.Bytes }); err != nil {
		b.Fatal(err)
	}
	took := time.Since(start)
	if m != nil {
		m.stop(int(bytes))
	}
	b.StopTimer()
	b.ReportMetric(float64(time.Since(lastBlock).Microseconds())/1000, "markheld-ms")
	var sent, most uint64
	per := make([]uint64, n)
	for j, hr := range holders[:n] {
		s, _ := hr.bs.Stat()
		d := s.BlocksSent - before[j]
		per[j] = d
		sent += d
		most = max(most, d)
	}
	fs, _ := r.bs.Stat()
	if sent > 0 {
		b.ReportMetric(float64(most)/float64(sent), "top-holder-share")
		if os.Getenv("MIRRORNET_BENCH_VERBOSE") != "" {
			b.Logf("top-holder-share %.2f, blocks sent per holder %v", float64(most)/float64(sent), per)
		}
	}
	b.ReportMetric(float64(fs.DupBlksReceived+uint64(r.dups.Load())), "dup-blocks")
	run := fetchRun{start: start, took: took, stats: r.LastFetchStats()}
	r.Close()
	h.Close()
	emptyStore(b, st, root)
	b.StartTimer()
	return run
}

// freshMemory: every variant that writes deletes what it wrote after each
// run (untimed). On this kind of VM (Firecracker), the first touch of guest memory the
// host has not backed yet costs a host page fault: writing 256 MiB of new
// files into never-used page cache measured 2.35 ms/MiB, against 0.18 ms/MiB
// into page cache freed by a deleted file. Keeping every run's store until
// the end made the bitswap variants pay that and raw-stream+file not.

// BenchmarkReplicate copies one bundle (benchSize, default 256 MiB) from
// holders to a fresh mirror over real loopback libp2p (TCP+Noise+yamux),
// every host in this process and on the same 2 cores:
//
//   - raw-stream: a plain libp2p stream copy of the same bytes into
//     io.Discard (the transport's ceiling);
//   - raw-stream+file: the same stream copied into one file on the same
//     disk, closed without fsync (what scp does);
//   - raw-stream+store: every 1 MiB chunk of the stream hashed and Put like
//     a replicated block (no fsync: Put leaves that to MarkHeld);
//   - bitswap-1, bitswap-3: Fetch from one and from three holders with
//     bitswap, every block stored verified, the bundle marked held (which
//     fsyncs it). top-holder-share is the share of blocks the busiest holder
//     sent.
//
// The holders' stores' caches of verified blocks are warm (warmHolders), as
// on a mirror that has served a while. cpu-ms/MiB is the whole process's
// CPU time (holders, fetcher, and for the relay benchmark the relays) per
// MiB copied, faults/MiB its page faults.
func BenchmarkReplicate(b *testing.B) {
	size := benchSize()
	newHost := func() host.Host { return tcpHost(b) }
	holders, infos, root := benchHolders(b, size, newHost)

	b.Run("raw-stream", func(b *testing.B) {
		dst := tcpHost(b)
		if err := dst.Connect(b.Context(), infos[0]); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(size))
		var m cpuMeter
		for b.Loop() {
			m.start()
			rawCopy(b, dst, infos[0].ID, io.Discard, size)
			m.stop(size)
		}
		m.report(b)
	})
	b.Run("raw-stream+file", func(b *testing.B) {
		dst := tcpHost(b)
		if err := dst.Connect(b.Context(), infos[0]); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(size))
		for b.Loop() {
			b.StopTimer()
			p := filepath.Join(b.TempDir(), "copy")
			b.StartTimer()
			f, err := os.Create(p)
			if err != nil {
				b.Fatal(err)
			}
			rawCopy(b, dst, infos[0].ID, f, size)
			if err := f.Close(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			os.Remove(p)
			b.StartTimer()
		}
	})
	b.Run("raw-stream+store", func(b *testing.B) {
		dst := tcpHost(b)
		if err := dst.Connect(b.Context(), infos[0]); err != nil {
			b.Fatal(err)
		}
		st := fetcherStore(b)
		b.SetBytes(int64(size))
		for b.Loop() {
			s, err := dst.NewStream(b.Context(), infos[0].ID, rawProto)
			if err != nil {
				b.Fatal(err)
			}
			for {
				chunk := make([]byte, 1<<20)
				n, err := io.ReadFull(s, chunk)
				if n > 0 {
					c, _ := bundle.Profile.CidBuilder().WithCodec(cid.Raw).Sum(chunk[:n])
					if perr := st.Put(c, chunk[:n]); perr != nil {
						b.Fatal(perr)
					}
				}
				if err != nil {
					break
				}
			}
			s.Close()
			b.StopTimer()
			emptyStore(b, st, cid.Undef)
			b.StartTimer()
		}
	})
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("bitswap-%d", n), func(b *testing.B) {
			st := fetcherStore(b)
			b.SetBytes(int64(size))
			var m cpuMeter
			for b.Loop() {
				fetchOnce(b, newHost, st, holders, infos[:n], root, nil, &m)
			}
			m.report(b)
		})
	}
	// Where bitswap-1's time goes: the leaves fetched by Parallel workers
	// of one session and dropped (the transfer alone), or stored as Fetch
	// stores them (no DAG walk, no MarkHeld).
	for _, put := range []bool{false, true} {
		name := "bitswap-1-leaves"
		if put {
			name += "+put"
		}
		b.Run(name, func(b *testing.B) {
			leaves := leavesOf(b, holders[0].st, root)
			st := fetcherStore(b)
			b.SetBytes(int64(size))
			for b.Loop() {
				b.StopTimer()
				h := newHost()
				r, err := New(h, st, staticFinder(infos[:1]), benchConfig())
				if err != nil {
					b.Fatal(err)
				}
				if err := h.Connect(b.Context(), infos[0]); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				getAll(b, r, leaves, put)
				b.StopTimer()
				r.Close()
				h.Close()
				emptyStore(b, st, cid.Undef)
				b.StartTimer()
			}
		})
	}
}

// leavesOf lists the links of root (a single-level file node).
func leavesOf(b *testing.B, st *store.Store, root cid.Cid) []cid.Cid {
	b.Helper()
	data, err := st.Get(root)
	if err != nil {
		b.Fatal(err)
	}
	links, err := verify.Links(root, data)
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range links {
		if l.Type() != cid.Raw {
			b.Fatalf("bundle is not one level deep: %s", l)
		}
	}
	return links
}

// getAll fetches cids with r's bitswap, cfg.Parallel at a time in one
// session, and stores them as Fetch does if put.
func getAll(b *testing.B, r *Replicator, cids []cid.Cid, put bool) {
	sess := r.bs.NewSession(b.Context())
	work := make(chan cid.Cid)
	var wg sync.WaitGroup
	for range r.cfg.Parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				blk, err := sess.GetBlock(b.Context(), c)
				if err != nil {
					b.Error(err)
					return
				}
				if put {
					if err := r.bstore.Put(b.Context(), blk); err != nil {
						b.Error(err)
						return
					}
				}
			}
		}()
	}
	for _, c := range cids {
		work <- c
	}
	close(work)
	wg.Wait()
}

// BenchmarkReplicateSimLink is replication as deployed, where holders are
// separate machines: each holder reaches the fetcher over its own simulated
// link (mocknet, simLink: default 10 ms one-way latency, 300 Mbit/s), so the
// links, not the shared CPU, are the bottleneck. mocknet's bandwidth limit
// is one token bucket per link shared by both directions (go-libp2p
// v0.51.0 p2p/net/mock/mock_link.go, ratelimiter.go); it is reset before
// every timed run so no idle allowance (up to one second's worth) counts.
// mocknet streams carry no encryption or multiplexer.
//
//   - raw-stream: holder 0's bytes over one link into io.Discard;
//   - bitswap-1: Fetch from holder 0 over one link;
//   - bitswap-3: Fetch from three holders, each over its own link (the
//     ideal is 3x raw-stream).
func BenchmarkReplicateSimLink(b *testing.B) {
	size := simSize()
	opts := simLink()
	mn := mocknet.New()
	b.Cleanup(func() { mn.Close() })
	newHost := func() host.Host {
		h, err := mn.GenPeer()
		if err != nil {
			b.Fatal(err)
		}
		return h
	}
	holders, infos, root := benchHolders(b, size, newHost)
	// linkTo links h to the first n holders, each link fresh (no idle
	// allowance) and with opts.
	linkTo := func(h host.Host, n int) {
		for _, ai := range infos[:n] {
			l, err := mn.LinkPeers(h.ID(), ai.ID)
			if err != nil {
				b.Fatal(err)
			}
			l.SetOptions(opts)
		}
	}
	b.Run("raw-stream", func(b *testing.B) {
		dst := newHost()
		linkTo(dst, 1)
		if err := dst.Connect(b.Context(), infos[0]); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(size))
		for b.Loop() {
			b.StopTimer()
			for _, l := range mn.LinksBetweenPeers(dst.ID(), infos[0].ID) {
				l.SetOptions(opts) // resets the token bucket
			}
			b.StartTimer()
			rawCopy(b, dst, infos[0].ID, io.Discard, size)
		}
	})
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("bitswap-%d", n), func(b *testing.B) {
			st := fetcherStore(b)
			b.SetBytes(int64(size))
			for b.Loop() {
				fetchOnce(b, newHost, st, holders, infos[:n], root, func(h host.Host) { linkTo(h, n) }, nil)
			}
		})
	}
}
