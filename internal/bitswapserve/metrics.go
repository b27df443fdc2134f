package bitswapserve

import "github.com/prometheus/client_golang/prometheus"

// MaxPeerSeries bounds the peers /metrics shows one by one (those with the
// oldest open wants): a series per peer must not grow without bound.
const MaxPeerSeries = 64

// Report is the serving state for the status JSON.
type Report struct {
	// Peers are the connected peers that sent this mirror a bitswap
	// message, oldest open want first.
	Peers        []PeerStats    `json:"peers"`
	BlocksResent int            `json:"blocks_resent"`
	PeersCutOff  map[string]int `json:"peers_cut_off"`
}

// Report returns the serving state.
func (n *Network) Report() Report {
	t := n.Totals()
	return Report{Peers: n.Peers(), BlocksResent: t.BlocksResent, PeersCutOff: t.CutOff}
}

var (
	descWants = prometheus.NewDesc("mirrornet_bitswap_peer_wants_open",
		"Wants a connected peer sent this mirror and has not cancelled (at most 64 peers, oldest open want first).", []string{"peer"}, nil)
	descBytes = prometheus.NewDesc("mirrornet_bitswap_peer_bytes_outstanding",
		"Bytes of bitswap answers handed to the network for a peer and not yet taken by it.", []string{"peer"}, nil)
	descOldest = prometheus.NewDesc("mirrornet_bitswap_peer_oldest_open_want_seconds",
		"Age of a peer's oldest open want for a block this mirror serves; a large value is a stalled transfer.", []string{"peer"}, nil)
	descPeers = prometheus.NewDesc("mirrornet_bitswap_peers",
		"Connected peers with bitswap state on this mirror.", nil, nil)
	descResent = prometheus.NewDesc("mirrornet_bitswap_blocks_resent_total",
		"Blocks sent again because the peer kept the want open after receiving them.", nil, nil)
	descCut = prometheus.NewDesc("mirrornet_bitswap_peers_cut_off_total",
		"Peers disconnected by the serving side, by reason (slow_reader: took nothing for the stall timeout).", []string{"reason"}, nil)
)

// collector reads a Report at scrape time.
type collector struct{ report func() Report }

// NewCollector returns a Prometheus collector of report's state; report
// may return an empty Report (e.g. before bitswap starts).
func NewCollector(report func() Report) prometheus.Collector { return collector{report} }

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descWants, descBytes, descOldest, descPeers, descResent, descCut} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	r := c.report()
	ch <- prometheus.MustNewConstMetric(descPeers, prometheus.GaugeValue, float64(len(r.Peers)))
	ch <- prometheus.MustNewConstMetric(descResent, prometheus.CounterValue, float64(r.BlocksResent))
	cut := r.PeersCutOff
	if cut == nil {
		cut = map[string]int{}
	}
	if _, ok := cut["slow_reader"]; !ok {
		cut["slow_reader"] = 0
	}
	for reason, k := range cut {
		ch <- prometheus.MustNewConstMetric(descCut, prometheus.CounterValue, float64(k), reason)
	}
	for i, p := range r.Peers {
		if i == MaxPeerSeries {
			break
		}
		id := p.Peer.String()
		ch <- prometheus.MustNewConstMetric(descWants, prometheus.GaugeValue, float64(p.WantsOpen), id)
		ch <- prometheus.MustNewConstMetric(descBytes, prometheus.GaugeValue, float64(p.BytesOutstanding), id)
		ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, p.OldestOpenWant, id)
	}
}
