// Package replicate copies bundles between mirrors with bitswap, the IPFS
// block exchange, so a stock IPFS node can fetch from a mirror and a mirror
// from it.
//
// A Replicator owns one boxo bitswap instance on a libp2p host. Its server
// side answers other peers from the local store, showing only blocks of
// bundles the store holds (store.HeldBlock): a half-fetched bundle is never
// offered. Its client side is used by Fetch, which connects to the holders a
// HolderFinder names, walks the bundle's DAG, fetches only the blocks that
// are missing (so a restarted fetch resumes) from all holders at once, each
// with a window of requests sized to the bandwidth-delay product of the
// path to it (fetch.go, window.go), has the store verify every
// block against its CID as it is stored, and finally asks the store to mark
// the bundle held (which makes its blocks durable and re-verifies every
// block this process did not write). If that finds a block torn by an
// earlier crash (the store fsyncs only when a bundle becomes held), the
// block is deleted and Fetch fetches what is missing once more.
//
// A received block's CID is derived from its bytes, so a peer that sends
// bytes not matching the wanted CID simply never satisfies the want. The
// blocks a fetch asked for are taken off each incoming bitswap stream
// before bitswap's decoder sees them (recv.go): hashed there, once, and
// stored straight from the message's buffer through the blockstore adapter,
// opened with ipfsbs.WithBitswapDecodedPuts (no second hash); the rest of
// each message goes on to bitswap. The fetch checks that the block's
// multihash is the wanted one (ErrBadBlock otherwise). Served blocks are
// read into buffers reused once their answer is written (serve.go).
//
// Limitations: peers that asked this mirror for a block before its bundle
// became held are not notified when it does; they get it when bitswap
// re-sends its wantlist or opens a new session.
package replicate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/ipfs/boxo/bitswap"
	"github.com/ipfs/boxo/bitswap/client"
	"github.com/ipfs/boxo/bitswap/server"
	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/internal/bitswapserve"
	"github.com/mirrornet/mirrornet/internal/store"
	"github.com/mirrornet/mirrornet/internal/store/ipfsbs"
)

var (
	// ErrNoHolders means no holder of the bundle could be reached and the
	// bundle is not complete locally.
	ErrNoHolders = errors.New("replicate: no holder of the bundle is reachable")
	// ErrClosed means the Replicator was closed.
	ErrClosed = errors.New("replicate: closed")
	// ErrBadBlock means a fetched block failed verification (bitswap should
	// make this impossible; it is checked anyway).
	ErrBadBlock = errors.New("replicate: fetched block does not match its CID")
)

// Config tunes replication.
type Config struct {
	// Parallel is the number of blocks asked for at once through the
	// fallback bitswap session (blocks no known holder has; see fetch.go).
	Parallel int

	// WindowMin and WindowMax bound the bytes of blocks asked of one
	// holder and not yet received. Between them the window follows the
	// bandwidth-delay product measured on the path to the holder (see
	// window). 8 MiB keeps a loopback or LAN link busy before anything is
	// measured; 64 MiB covers 1 Gbit/s at 250 ms twice over.
	WindowMin int
	WindowMax int

	// ServeOutstandingBytes caps the bytes the bitswap server queues for one
	// peer at a time (0: boxo's default of 1 MiB, i.e. one 1 MiB chunk, which
	// stalls on every round trip). 16 MiB keeps a loopback or LAN link busy.
	ServeOutstandingBytes int

	// Serve guards the serving side (see package bitswapserve and serve.go).
	Serve bitswapserve.Config
}

// DefaultConfig returns the default configuration.
func DefaultConfig() Config {
	return Config{Parallel: 32, WindowMin: 8 << 20, WindowMax: 64 << 20, ServeOutstandingBytes: 16 << 20, Serve: bitswapserve.DefaultConfig()}
}

// Validate reports a configuration error naming the field.
func (c Config) Validate() error {
	if c.Parallel < 1 || c.Parallel > 1024 {
		return fmt.Errorf("replicate: Config.Parallel must be in 1..1024, got %d", c.Parallel)
	}
	if c.WindowMin < 1<<10 || c.WindowMax < c.WindowMin {
		return fmt.Errorf("replicate: Config.WindowMin must be >= 1 KiB and WindowMax >= WindowMin, got %d and %d", c.WindowMin, c.WindowMax)
	}
	if c.ServeOutstandingBytes < 0 {
		return fmt.Errorf("replicate: Config.ServeOutstandingBytes must be >= 0, got %d", c.ServeOutstandingBytes)
	}
	if err := c.Serve.Validate(); err != nil {
		return fmt.Errorf("replicate: Config.Serve: %w", err)
	}
	return nil
}

// HolderFinder names peers believed to hold a bundle. The node supplies it
// from the health view and DHT provider records. Holders must not block for
// long; the returned slice is the caller's.
type HolderFinder interface {
	Holders(root cid.Cid) []peer.AddrInfo
}

// Progress reports a fetch in progress.
type Progress struct {
	Blocks  int   // blocks of the DAG verified so far (present or fetched)
	Bytes   int64 // bytes of those blocks
	Fetched int   // of those, blocks that came over the network
}

type options struct {
	log *slog.Logger
}

// Option sets an optional dependency.
type Option func(*options)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// Replicator fetches and serves bundles over bitswap.
type Replicator struct {
	h    host.Host
	st   *store.Store
	find HolderFinder
	cfg  Config
	log  *slog.Logger

	bs *bitswap.Bitswap
	// serve is the bitswap network, wrapped to guard the serving side;
	// hn wraps it again to hand received blocks to fetches (fetch.go).
	serve *bitswapserve.Network
	hn    *hookNet
	// bstore is the adapter handed to bitswap: reads show held bundles
	// only; Puts trust the CIDs bitswap derived from the bytes.
	bstore *ipfsbs.Blockstore
	// served holds the buffers served blocks are read into (servedReads)
	served *bufList
	ctx    context.Context
	cancel context.CancelFunc

	closeOnce sync.Once

	fmu     sync.Mutex
	fetches map[*walk]struct{} // walks in progress
	last    FetchStats         // of the last walk completed
	dups    atomic.Int64       // blocks received twice (hedged requests)
}

// New starts bitswap on h, serving the held bundles of st. The caller keeps
// ownership of h and st; Close stops bitswap only.
func New(h host.Host, st *store.Store, find HolderFinder, cfg Config, opts ...Option) (*Replicator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if h == nil || st == nil || find == nil {
		return nil, errors.New("replicate: New needs a host, a store and a HolderFinder")
	}
	o := options{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, opt := range opts {
		opt(&o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Replicator{
		h: h, st: st, find: find, cfg: cfg,
		log:     o.log.With("component", "replicate"),
		ctx:     ctx,
		cancel:  cancel,
		fetches: map[*walk]struct{}{},
	}
	r.bstore = ipfsbs.New(st, ipfsbs.WithFilter(st.HeldBlock), ipfsbs.WithBitswapDecodedPuts())
	bsOpts := []bitswap.Option{
		// With many 1 MiB blocks queued, a healthy holder answers later than
		// bitswap's latency-based timeout (50 ms minimum on a LAN); the
		// simulated DONT_HAVE then stalls the session until the next
		// rebroadcast. Current peers send real DONT_HAVEs, so rely on those.
		bitswap.WithClientOption(client.SetSimulateDontHavesOnTimeout(false)),
	}
	// Counting duplicate blocks costs a goroutine and a store lookup per
	// received block; the fetcher already skips blocks it has.
	bsOpts = append(bsOpts, bitswap.WithClientOption(client.WithoutDuplicatedBlockStats()))
	if cfg.ServeOutstandingBytes > 0 {
		bsOpts = append(bsOpts, bitswap.WithServerOption(server.MaxOutstandingBytesPerPeer(cfg.ServeOutstandingBytes)))
	}
	r.served = newBufList(servedBufs)
	serve, err := newServe(recvHost{Host: h, c: r, bufs: newBufList(maxFree)}, r.bstore, st.HeldBlock, cfg.Serve, o.log, r.served)
	if err != nil {
		cancel()
		return nil, err
	}
	r.serve = serve
	r.hn = &hookNet{Network: serve, r: r}
	bsOpts = append(bsOpts, serve.ServerOptions()...)
	r.bs = bitswap.New(ctx, r.hn, nil, servedReads{nonZeroSizes: nonZeroSizes{r.bstore}, bs: r.bstore, bufs: r.served}, bsOpts...)
	return r, nil
}

// Close stops bitswap and cancels fetches in progress. It is idempotent.
func (r *Replicator) Close() error {
	r.closeOnce.Do(func() {
		r.cancel()
		_ = r.bs.Close()
		_ = r.serve.Close()
	})
	return nil
}

// connect dials the holders of root in parallel and returns those
// connected and how many peers are connected in all.
func (r *Replicator) connect(ctx context.Context, root cid.Cid) ([]peer.ID, int) {
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		ids []peer.ID
	)
	seen := map[peer.ID]bool{}
	for _, ai := range r.find.Holders(root) {
		if ai.ID == r.h.ID() || seen[ai.ID] {
			continue
		}
		seen[ai.ID] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.h.Connect(ctx, ai); err != nil {
				r.log.Debug("holder unreachable", "peer", ai.ID, "err", err)
				return
			}
			mu.Lock()
			ids = append(ids, ai.ID)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return ids, len(r.h.Network().Peers())
}

// Fetch follows root, fetches every missing block of its DAG from the
// holders, verifies and stores each, and marks the bundle held. It blocks
// until done or ctx ends; a later Fetch resumes where it stopped. progress,
// if not nil, is called from Fetch's goroutine after every block.
func (r *Replicator) Fetch(ctx context.Context, root cid.Cid, progress func(Progress)) error {
	if r.ctx.Err() != nil {
		return ErrClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(r.ctx, cancel)
	defer stop()

	if err := r.st.Follow(root); err != nil {
		return fmt.Errorf("replicate: %w", err)
	}
	if r.st.Held(root) {
		return nil
	}
	holders, connected := r.connect(ctx, root)
	if connected == 0 {
		// nobody to ask: succeed only if everything is already here
		if _, err := r.st.MarkHeld(root); err != nil {
			return fmt.Errorf("%w: %s", ErrNoHolders, root)
		}
		return nil
	}
	p, err := r.fetchDAG(ctx, holders, root, Progress{}, progress)
	if err != nil {
		return err
	}
	_, err = r.st.MarkHeld(root)
	if errors.Is(err, store.ErrIncomplete) && ctx.Err() == nil {
		// The walk found a block torn by an earlier crash (present, never
		// made durable) and deleted it: fetch what is missing once more.
		r.log.Info("bundle incomplete after fetch; fetching again", "root", root, "err", err)
		if p, err = r.fetchDAG(ctx, holders, root, p, progress); err != nil {
			return err
		}
		_, err = r.st.MarkHeld(root)
	}
	if err != nil {
		return fmt.Errorf("replicate: %w", err)
	}
	r.log.Info("bundle held", "root", root, "blocks", p.Blocks, "fetched", p.Fetched, "bytes", p.Bytes)
	return nil
}

// nonZeroSizes reports a zero-length block's size as 1 to bitswap's server:
// boxo v0.43.0's decision engine (engine.go, "isWantBlock := blockSize != 0
// && ...") takes size 0 to mean "presence known, size not read" and answers
// every want-block for an empty block with HAVE, forever.
type nonZeroSizes struct{ blockstore.Blockstore }

func (b nonZeroSizes) GetSize(ctx context.Context, c cid.Cid) (int, error) {
	n, err := b.Blockstore.GetSize(ctx, c)
	if err == nil && n == 0 {
		n = 1
	}
	return n, err
}
