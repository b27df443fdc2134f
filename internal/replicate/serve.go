package replicate

import (
	"context"
	"log/slog"

	bsmsg "github.com/ipfs/boxo/bitswap/message"
	bsnet "github.com/ipfs/boxo/bitswap/network/bsnet"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"

	"github.com/mirrornet/mirrornet/internal/bitswapserve"
	"github.com/mirrornet/mirrornet/internal/store/ipfsbs"
)

// The serving side: every bitswap answer of this mirror goes through a
// bitswapserve.Network, which cuts off peers that stop reading and re-sends
// delivered blocks whose want the peer keeps open (a stock IPFS client,
// kubo v0.43.1 with boxo v0.43.0, can otherwise wait forever for a block
// it asked for earlier; see wants.Tracker.Due in internal/bitswapserve/wants).

func newServe(h host.Host, blks bitswapserve.Blocks, held func(cid.Cid) bool, cfg bitswapserve.Config, log *slog.Logger, sent *bufList) (*bitswapserve.Network, error) {
	return bitswapserve.New(bsnet.NewFromIpfsHost(h), blks, held, cfg, bitswapserve.WithLogger(log),
		bitswapserve.WithSent(func(m bsmsg.BitSwapMessage) {
			for _, b := range m.Blocks() {
				sent.put(b.RawData())
			}
		}))
}

// servedReads is the blockstore bitswap's server reads the blocks it
// serves from: each block is read into a buffer from bufs, which the
// serving network gives back once the message that carried it is written
// (newServe). A mirror serving 1 MiB leaves otherwise reads every one into
// fresh memory, and on this kind of VM the page faults of fresh memory
// cost more than the read. The buffers of blocks read for anything else
// (bitswap's client) are simply not given back.
type servedReads struct {
	nonZeroSizes
	bs   *ipfsbs.Blockstore
	bufs *bufList
}

func (s servedReads) Get(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	n, err := s.bs.GetSize(ctx, c)
	if err != nil {
		return nil, err
	}
	data, err := s.bs.GetInto(ctx, c, s.bufs.get(n))
	if err != nil {
		return nil, err
	}
	return blocks.NewBlockWithCid(data, c)
}

// ServeStats reports each connected peer's serving state: wants open,
// bytes outstanding, oldest open want. Oldest open want first.
func (r *Replicator) ServeStats() []bitswapserve.PeerStats { return r.serve.Peers() }

// ServeTotals reports blocks re-sent and peers cut off.
func (r *Replicator) ServeTotals() bitswapserve.Totals { return r.serve.Totals() }

// ServeReport is the serving state for the status JSON and /metrics.
func (r *Replicator) ServeReport() bitswapserve.Report { return r.serve.Report() }
