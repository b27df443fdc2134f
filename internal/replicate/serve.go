package replicate

import (
	"log/slog"

	bsnet "github.com/ipfs/boxo/bitswap/network/bsnet"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"

	"github.com/mirrornet/mirrornet/internal/bitswapserve"
)

// The serving side: every bitswap answer of this mirror goes through a
// bitswapserve.Network, which cuts off peers that stop reading and re-sends
// delivered blocks whose want the peer keeps open (a stock IPFS client,
// kubo v0.43.1 with boxo v0.43.0, can otherwise wait forever for a block
// it asked for earlier; see wants.Tracker.Due in internal/bitswapserve/wants).

func newServe(h host.Host, blks bitswapserve.Blocks, held func(cid.Cid) bool, cfg bitswapserve.Config, log *slog.Logger) (*bitswapserve.Network, error) {
	return bitswapserve.New(bsnet.NewFromIpfsHost(h), blks, held, cfg, bitswapserve.WithLogger(log))
}

// ServeStats reports each connected peer's serving state: wants open,
// bytes outstanding, oldest open want. Oldest open want first.
func (r *Replicator) ServeStats() []bitswapserve.PeerStats { return r.serve.Peers() }

// ServeTotals reports blocks re-sent and peers cut off.
func (r *Replicator) ServeTotals() bitswapserve.Totals { return r.serve.Totals() }

// ServeReport is the serving state for the status JSON and /metrics.
func (r *Replicator) ServeReport() bitswapserve.Report { return r.serve.Report() }
