package node

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mirrornet/mirrornet/internal/bitswapserve"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/health"
)

// metrics are the node's Prometheus metrics, on its own registry so that
// several nodes can run in one process.
type metrics struct {
	n            *Node
	statements   *prometheus.CounterVec
	mirrors      viewCollector
	heartbeatLag prometheus.Gauge
	corrupt      *prometheus.CounterVec
	refused      *prometheus.CounterVec
}

func newMetrics(n *Node) *metrics {
	m := &metrics{
		n: n,
		statements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mirrornet_statements_total",
			Help: "Signed statements received, by kind, verdict (accept, reject, ignore) and reason.",
		}, []string{"kind", "verdict", "reason"}),
		mirrors: viewCollector{n: n, desc: prometheus.NewDesc("mirrornet_mirrors",
			"Mirrors in this node's health view, by state.", []string{"state"}, nil)},
		heartbeatLag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mirrornet_heartbeat_lag_seconds",
			Help: "How late this node's own heartbeat timer fires (smoothed); a starved node stretches its failure detection by this much.",
		}),
		corrupt: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mirrornet_store_corrupt_blocks_total",
			Help: "Stored blocks found corrupt on disk and deleted (then re-fetched), by what found them: read (serving or fetching), walk (marking a bundle held, startup check) or scrub.",
		}, []string{"found_by"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mirrornet_follow_refused_total",
			Help: "Follows refused instead of fetched, by reason: too_large (the bundle alone is larger than --max-storage), storage_full (no room beside the other bundles). Each refusal is counted once; it is retried only when storage is freed or the bundle is followed again.",
		}, []string{"reason"}),
	}
	peers := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mirrornet_peers_connected",
		Help: "libp2p peers currently connected.",
	}, func() float64 { return float64(len(n.host.Network().Peers())) })
	held := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mirrornet_bundles_held",
		Help: "Bundles this mirror holds complete and verified.",
	}, func() float64 {
		if n.store == nil {
			return 0
		}
		k := 0
		for _, b := range n.store.Bundles() {
			if b.State == "held" {
				k++
			}
		}
		return float64(k)
	})
	n.registry.MustRegister(m.statements, m.mirrors, m.heartbeatLag, m.corrupt, m.refused, peers, held, bitswapserve.NewCollector(n.bitswapReport))
	n.gossipBytes.register(n.registry)
	return m
}

// statement counts one received statement.
func (m *metrics) statement(st *attest.Statement, err error) {
	kind := "unknown"
	if st != nil {
		kind = string(st.Kind)
	}
	m.statements.WithLabelValues(kind, verdict(err).String(), reason(err)).Inc()
}

// viewCollector reports the mirrors in the view by state when scraped.
// The states follow from the view and the time, and counting them reads
// every entry: done per scrape (every 15 s or so, if anyone scrapes), not
// per heartbeat, so a mirror among thousands spends nothing on it unasked.
type viewCollector struct {
	n    *Node
	desc *prometheus.Desc
}

func (c viewCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c viewCollector) Collect(ch chan<- prometheus.Metric) {
	counts := c.n.view.Counts(c.n.clock())
	for _, s := range health.States() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
}

// bitswapReport is the bitswap serving state (empty before replication
// starts).
func (n *Node) bitswapReport() bitswapserve.Report {
	if n.repl == nil {
		return bitswapserve.Report{Peers: []bitswapserve.PeerStats{}, PeersCutOff: map[string]int{}}
	}
	return n.repl.ServeReport()
}
