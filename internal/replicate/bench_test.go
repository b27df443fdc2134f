package replicate

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/mirrornet/mirrornet/internal/bundle"
	"github.com/mirrornet/mirrornet/internal/store"
)

// benchSize is the bundle replicated by the benchmarks (one file of 1 MiB
// chunks). Override with MIRRORNET_BENCH_MIB.
func benchSize() int {
	n := 128
	if s := os.Getenv("MIRRORNET_BENCH_MIB"); s != "" {
		fmt.Sscan(s, &n)
	}
	return n << 20
}

// tcpHost is a real loopback libp2p host: TCP + Noise + yamux.
func tcpHost(b *testing.B) host.Host {
	b.Helper()
	h, err := libp2p.New(
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.DisableRelay(),
		libp2p.ResourceManager(&network.NullResourceManager{}),
	)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close() })
	return h
}

type staticFinder []peer.AddrInfo

func (s staticFinder) Holders(_ cid.Cid) []peer.AddrInfo { return s }

// BenchmarkReplicate copies one bundle from holders to a fresh mirror over
// real loopback libp2p (TCP+Noise+yamux): "raw-stream" is a plain libp2p
// stream copy of the same number of bytes (the ceiling), "bitswap-1" and
// "bitswap-3" fetch with bitswap from one and from three holders, verifying
// every block into a new store and marking the bundle held (which fsyncs
// it). bitswap-3 reports the share of blocks the busiest holder sent.
func BenchmarkReplicate(b *testing.B) {
	size := benchSize()
	dir := b.TempDir()
	file := filepath.Join(dir, "app.wasm")
	if err := os.WriteFile(file, seeded(7, size), 0o644); err != nil {
		b.Fatal(err)
	}
	var holders []*Replicator
	var infos []peer.AddrInfo
	var root bundle.Result
	for i := range 3 {
		h := tcpHost(b)
		st, err := store.Open(filepath.Join(dir, fmt.Sprintf("holder%d", i)), store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		root, err = bundle.Import(context.Background(), file, func(blk blocks.Block) error { return st.Put(blk.Cid(), blk.RawData()) }, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := st.MarkHeld(root.Root); err != nil {
			b.Fatal(err)
		}
		r, err := New(h, st, staticFinder{}, DefaultConfig())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { r.Close() })
		holders = append(holders, r)
		infos = append(infos, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})
	}

	b.Run("raw-stream", func(b *testing.B) {
		const proto = "/mirrornet-bench/raw/1"
		payload := seeded(7, size)
		src := holders[0].h
		src.SetStreamHandler(proto, func(s network.Stream) {
			defer s.Close()
			_, _ = s.Write(payload)
		})
		dst := tcpHost(b)
		if err := dst.Connect(b.Context(), infos[0]); err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 1<<20)
		b.SetBytes(int64(size))
		for b.Loop() {
			s, err := dst.NewStream(b.Context(), src.ID(), proto)
			if err != nil {
				b.Fatal(err)
			}
			n, err := io.CopyBuffer(io.Discard, s, buf)
			if err != nil || n != int64(size) {
				b.Fatalf("copied %d: %v", n, err)
			}
			s.Close()
		}
	})
	// The same stream copy, but every 1 MiB chunk is hashed and Put like a
	// replicated block (no fsync: Put leaves that to MarkHeld, which needs
	// a DAG): near the ceiling for replication onto this disk.
	b.Run("raw-stream+store", func(b *testing.B) {
		const proto = "/mirrornet-bench/raw/1"
		dst := tcpHost(b)
		if err := dst.Connect(b.Context(), infos[0]); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(size))
		for b.Loop() {
			b.StopTimer()
			st, err := store.Open(filepath.Join(b.TempDir(), "fetcher"), store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			s, err := dst.NewStream(b.Context(), holders[0].h.ID(), proto)
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
			st.Close()
			b.StartTimer()
		}
	})
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("bitswap-%d", n), func(b *testing.B) {
			b.SetBytes(int64(size))
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				h := tcpHost(b)
				st, err := store.Open(filepath.Join(b.TempDir(), "fetcher"), store.Options{})
				if err != nil {
					b.Fatal(err)
				}
				r, err := New(h, st, staticFinder(infos[:n]), DefaultConfig())
				if err != nil {
					b.Fatal(err)
				}
				before := make([]uint64, n)
				for j, hr := range holders[:n] {
					st, _ := hr.bs.Stat()
					before[j] = st.BlocksSent
				}
				b.StartTimer()
				if err := r.Fetch(b.Context(), root.Root, nil); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				// How the holders shared the work, and what came twice.
				var sent, most uint64
				for j, hr := range holders[:n] {
					st, _ := hr.bs.Stat()
					d := st.BlocksSent - before[j]
					sent += d
					most = max(most, d)
				}
				fs, _ := r.bs.Stat()
				if sent > 0 {
					b.ReportMetric(float64(most)/float64(sent), "top-holder-share")
				}
				b.ReportMetric(float64(fs.DupBlksReceived), "dup-blocks")
				r.Close()
				h.Close()
				st.Close()
				b.StartTimer()
			}
		})
	}
}
